"""The ``kf-plugin`` command: check, route and push (against a real HTTP server), and ``flask kf``."""
from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Callable, Dict, List

import pytest
import xmltodict
from click.testing import CliRunner
from flask import Flask
from flask.cli import FlaskGroup
from werkzeug.serving import make_server

from kf_plugin import MessageRouter
from kf_plugin.cli import cli
from tests.conftest import AES_KEY, APPID, TOKEN, sample

RULES = """\
version: 1
fallback_text: "客服暂时不在线，请留言"
rules:
  - name: ask-for-human
    keywords: ["人工", "客服", "转人工"]
  - name: vip-menu
    event: CLICK
    event_key: CONTACT_VIP
    kf_account: "vip1@gh_example"
  - name: paused
    enabled: false
    regex: "你好"
  - name: sample-click
    event: click
    event_key: EVENTKEY
  - name: qr-follow
    event: subscribe
    event_key: "123123"
    kf_account: "qr@gh_example"
  - name: hours
    keywords: 几点
    match: prefix
    reply: "9:00-18:00"
"""

SUMMARY = """\
{path}: valid, 6 rules (5 enabled)
  ask-for-human: Keyword('人工', '客服', '转人工') → transfer to customer service
  vip-menu: Event('CLICK') & EventKey('CONTACT_VIP') → transfer to vip1@gh_example
  paused: Regex('你好') → transfer to customer service  [disabled]
  sample-click: Event('click') & EventKey('EVENTKEY') → transfer to customer service
  qr-follow: Event('subscribe') & EventKey('123123') → transfer to qr@gh_example
  hours: Keyword('几点', match='prefix') → reply '9:00-18:00'
  fallback text: '客服暂时不在线，请留言'
  while queued: quiet, the bot's own handlers do not answer
  queue notice: none
  cancel keywords: none
  queue timeout: none
"""

QUEUE_RULES = """\
version: 1
queue:
  while_queued: bot
  notice: "您前面还有 {ahead} 位"
  notice_fallback: "请稍候"
  notice_every: 90s
  cancel: ["取消", "Quit"]
  cancel_text: "已取消"
  timeout: 2h
context: "{rule}：{message}\\n最近：{recent}"
rules:
  - name: human
    keywords: 人工
  - name: stuck
    after_unanswered: 3
  - name: hint
    after_unanswered: 1
    reply: "输入人工联系客服"
  - name: old
    after_unanswered: 2
    enabled: false
"""

QUEUE_SUMMARY = """\
{path}: valid, 4 rules (3 enabled)
  human: Keyword('人工') → transfer to customer service
  stuck: after 3 unanswered messages in a row → transfer to customer service
  hint: after 1 unanswered message in a row → reply '输入人工联系客服'
  old: after 2 unanswered messages in a row → transfer to customer service  [disabled]
  while queued: the bot's own handlers answer
  queue notice: '您前面还有 {{ahead}} 位' else '请稍候', at most every 90s
  cancel keywords: '取消', 'quit' → '已取消'
  queue timeout: after 2h (no text)
  context for the agent: '{{rule}}：{{message}}\\n最近：{{recent}}'
  unanswered messages in a row, counted after the bot's handlers: hint at 1, stuck at 3
"""

INVALID = """\
version: 1
rules:
  - name: a
    regex: "("
  - name: a
    keyword: x
  - name: c
    event: CLICK
    event_key: 123
"""
INVALID_LINES = [
    "{path}:4: rule 'a': regex: invalid regular expression: missing ), unterminated subpattern at position 0",
    "{path}:5: rule 'a': duplicate rule name (first used at line 3)",
    "{path}:6: rule 'a': unknown key 'keyword' (did you mean 'keywords'?)",
    "{path}:9: rule 'c': event_key must be a string, not the number 123 — quote it, YAML reads it unquoted as a number",
]


@pytest.fixture
def runner() -> CliRunner:
    """A runner that ignores any KF_* variables of the environment the tests run in."""
    return CliRunner(env={"KF_RULES": None, "KF_TOKEN": None, "KF_ENCODING_AES_KEY": None, "KF_APPID": None})


@pytest.fixture
def rules_path(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES, encoding="utf-8")
    return path


@pytest.fixture
def invalid_path(tmp_path: Path) -> Path:
    path = tmp_path / "invalid.yaml"
    path.write_text(INVALID, encoding="utf-8")
    return path


def xml_fields(xml: str) -> Dict[str, object]:
    return dict(xmltodict.parse(xml)["xml"])


# --------------------------------------------------------------------------
# check
# --------------------------------------------------------------------------

def test_check_summarises_a_valid_file(runner, rules_path):
    result = runner.invoke(cli, ["check", str(rules_path)])
    assert result.exit_code == 0, result.output
    assert result.stdout == SUMMARY.format(path=rules_path)
    assert result.stderr == ""


def test_check_summarises_the_queue_the_context_and_the_triggers(runner, tmp_path):
    path = tmp_path / "queue.yaml"
    path.write_text(QUEUE_RULES, encoding="utf-8")
    result = runner.invoke(cli, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout == QUEUE_SUMMARY.format(path=path)


@pytest.mark.parametrize("queue_yaml, lines", [
    ("queue:\n  notice: 请稍候\n", ["queue notice: '请稍候', at most every 1m"]),
    ("queue:\n  notice_fallback: 请稍候\n  notice_every: 45s\n", ["queue notice: '请稍候', at most every 45s"]),
    ("queue:\n  cancel: 取消\n", ["cancel keywords: '取消' (no text)"]),
    ("queue:\n  timeout: 90m\n  timeout_text: 忙\n", ["queue timeout: after 90m → '忙'"]),
    ("queue:\n  timeout: 1d\n", ["queue timeout: after 1d (no text)"]),
])
def test_check_prints_each_queue_setting(runner, tmp_path, queue_yaml, lines):
    path = tmp_path / "queue.yaml"
    path.write_text(f"version: 1\n{queue_yaml}rules: []\n", encoding="utf-8")
    result = runner.invoke(cli, ["check", str(path)])
    assert result.exit_code == 0, result.output
    printed = result.stdout.splitlines()
    for line in lines:
        assert f"  {line}" in printed


@pytest.mark.parametrize("wecom_yaml, lines", [
    ("wecom:\n  welcome_text: 欢迎\n  end_text: 再见\n", ["微信客服 welcome: '欢迎'", "微信客服 end: '再见'"]),
    ("wecom:\n  welcome_text: {default: 您好, menu: 菜单}\n  queue_text: 请稍候\n  taken_text: 接入\n",
     ["微信客服 welcome (default): '您好'", "微信客服 welcome (menu): '菜单'", "微信客服 queue: '请稍候'",
      "微信客服 taken: '接入'"]),
    ("", []),
])
def test_check_prints_the_wecom_texts(runner, tmp_path, wecom_yaml, lines):
    path = tmp_path / "wecom.yaml"
    path.write_text(f"version: 1\n{wecom_yaml}rules: []\n", encoding="utf-8")
    result = runner.invoke(cli, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert [line.strip() for line in result.stdout.splitlines() if "微信客服" in line] == lines


def test_check_reports_every_problem_of_an_invalid_file(runner, invalid_path):
    result = runner.invoke(cli, ["check", str(invalid_path)])
    assert result.exit_code == 2
    assert result.stdout == ""
    expected = [line.format(path=invalid_path) for line in INVALID_LINES]
    assert result.stderr.splitlines() == ["4 problems in rule file:"] + [f"  {line}" for line in expected]


def test_check_a_missing_file(runner, tmp_path):
    path = tmp_path / "missing.yaml"
    result = runner.invoke(cli, ["check", str(path)])
    assert result.exit_code == 2
    assert f"{path}: cannot read the file: No such file or directory" in result.stderr


def test_check_uses_KF_RULES_when_no_file_is_given(runner, rules_path):
    result = runner.invoke(cli, ["check"], env={"KF_RULES": str(rules_path)})
    assert result.exit_code == 0, result.output
    assert result.stdout == SUMMARY.format(path=rules_path)


def test_check_an_invalid_file_named_by_KF_RULES(runner, invalid_path):
    result = runner.invoke(cli, ["check"], env={"KF_RULES": str(invalid_path)})
    assert result.exit_code == 2
    assert INVALID_LINES[0].format(path=invalid_path) in result.stderr


@pytest.mark.parametrize("env", [{"KF_RULES": None}, {"KF_RULES": ""}])
def test_check_without_file_or_KF_RULES_is_a_usage_error(runner, env):
    result = runner.invoke(cli, ["check"], env=env)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Usage:" in result.stderr
    assert "no rule file given: pass FILE or set KF_RULES" in result.stderr


# --------------------------------------------------------------------------
# route
# --------------------------------------------------------------------------

def _route_output(stdout: str):
    """(header lines, reply XML) of route's output; the line showing a text message's folded text is left out
    (``test_route_shows_the_folded_text`` reads it)."""
    head, _, xml = stdout.partition("reply:\n")
    lines = head.splitlines()
    return (lines[1:] if lines and lines[0].startswith("text ") else lines), xml.strip()


@pytest.fixture
def push_file(tmp_path: Path) -> Callable[[str], str]:
    def write(xml: str) -> str:
        path = tmp_path / f"push{len(list(tmp_path.glob('push*.xml')))}.xml"
        path.write_text(xml, encoding="utf-8")
        return str(path)
    return write


@pytest.mark.parametrize("args, rule, line, because, action, kf_account", [
    (["--text", "我要转人工"], "ask-for-human", 4, "Keyword('人工', '客服', '转人工')",
     "transfer to customer service", None),
    (["--event", "CLICK", "--key", "CONTACT_VIP"], "vip-menu", 6, "Event('CLICK') & EventKey('CONTACT_VIP')",
     "transfer to vip1@gh_example", "vip1@gh_example"),
    (["--event", "subscribe", "--key", "qrscene_123123"], "qr-follow", 16, "Event('subscribe') & EventKey('123123')",
     "transfer to qr@gh_example", "qr@gh_example"),
])
def test_route_a_transfer(runner, rules_path, args, rule, line, because, action, kf_account):
    result = runner.invoke(cli, ["route", str(rules_path), *args, "--from", "oSomeone"])
    assert result.exit_code == 0, result.output
    head, xml = _route_output(result.stdout)
    assert head == [
        f"rule {rule!r} takes it ({rules_path}:{line})",
        f"  because: {because}",
        f"  action:  {action}",
    ]
    fields = xml_fields(xml)
    assert fields["MsgType"] == "transfer_customer_service"
    assert (fields["ToUserName"], fields["FromUserName"]) == ("oSomeone", "gh_account")
    if kf_account is None:
        assert "TransInfo" not in fields
    else:
        assert fields["TransInfo"] == {"KfAccount": kf_account}


def test_route_a_text_reply(runner, rules_path):
    result = runner.invoke(cli, ["route", str(rules_path), "--text", "几点下班"])
    assert result.exit_code == 0, result.output
    head, xml = _route_output(result.stdout)
    assert head == [f"rule 'hours' takes it ({rules_path}:20)",
                    "  because: Keyword('几点', match='prefix')",
                    "  action:  reply '9:00-18:00'"]
    fields = xml_fields(xml)
    assert (fields["MsgType"], fields["Content"]) == ("text", "9:00-18:00")


@pytest.mark.parametrize("sample_name, rule, kf_account", [
    ("event_click.xml", "sample-click", None),
    ("event_subscribe.xml", None, None),
    ("text.xml", None, None),
])
def test_route_a_push_from_a_file(runner, rules_path, push_file, sample_name, rule, kf_account):
    path = push_file(sample(sample_name))
    result = runner.invoke(cli, ["route", str(rules_path), "--xml", path])
    if rule is None:
        assert result.exit_code == 1
        assert "no rule takes this message" in result.stdout
        return
    assert result.exit_code == 0, result.output
    head, xml = _route_output(result.stdout)
    assert head[0].startswith(f"rule {rule!r} takes it ({rules_path}:")
    fields = xml_fields(xml)
    assert fields["MsgType"] == "transfer_customer_service"
    # the reply goes back to the sender of the sample push
    assert (fields["ToUserName"], fields["FromUserName"]) == ("FromUser", "toUser")


def test_route_a_written_push_with_a_designated_agent(runner, rules_path, push_file):
    xml = ("<xml><ToUserName><![CDATA[gh_x]]></ToUserName><FromUserName><![CDATA[oFan]]></FromUserName>"
           "<CreateTime>1700000000</CreateTime><MsgType><![CDATA[event]]></MsgType>"
           "<Event><![CDATA[CLICK]]></Event><EventKey><![CDATA[CONTACT_VIP]]></EventKey></xml>")
    result = runner.invoke(cli, ["route", str(rules_path), "--xml", push_file(xml)])
    assert result.exit_code == 0, result.output
    head, reply = _route_output(result.stdout)
    assert head[0] == f"rule 'vip-menu' takes it ({rules_path}:6)"
    fields = xml_fields(reply)
    assert fields["MsgType"] == "transfer_customer_service"
    assert fields["TransInfo"] == {"KfAccount": "vip1@gh_example"}
    assert (fields["ToUserName"], fields["FromUserName"]) == ("oFan", "gh_x")


@pytest.mark.parametrize("args, said", [
    (["--text", "你好"], "text '你好', folded for keywords (width, case, traditional): '你好'\n"),  # a disabled rule's
    (["--event", "CLICK", "--key", "SOMETHING_ELSE"], ""),
    (["--event", "unsubscribe"], ""),
])
def test_route_without_a_match_exits_1(runner, rules_path, args, said):
    result = runner.invoke(cli, ["route", str(rules_path), *args])
    assert result.exit_code == 1
    assert result.stdout == (said + "no rule takes this message; the webhook would pass it to the bot's own handlers "
                             "and answer 'success' if none answers\n")


def test_route_says_the_triggers_act_after_the_bots_handlers(runner, tmp_path):
    path = tmp_path / "queue.yaml"
    path.write_text(QUEUE_RULES, encoding="utf-8")
    result = runner.invoke(cli, ["route", str(path), "--text", "你好"])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "text '你好', folded for keywords (width, case, traditional): '你好'",
        ("no rule takes this message; the webhook would pass it to the bot's own handlers "
         "and answer 'success' if none answers"),
        f"  after the bot's handlers: rule 'hint' acts on the 1st unanswered message in a row ({path}:16)",
        f"  after the bot's handlers: rule 'stuck' acts on the 3rd unanswered message in a row ({path}:14)",
    ]
    taken = runner.invoke(cli, ["route", str(path), "--text", "人工"])
    assert taken.exit_code == 0 and _route_output(taken.stdout)[0][0] == f"rule 'human' takes it ({path}:12)"
    assert "after the bot's handlers" not in taken.stdout


@pytest.mark.parametrize("args, message", [
    (["--text", "人工", "--event", "CLICK"], "give exactly one of --text, --event or --xml"),
    ([], "give exactly one of --text, --event or --xml"),
    (["--text", "人工", "--key", "K"], "--key goes with --event"),
    (["--key", "K"], None),
])
def test_route_usage_errors(runner, rules_path, args, message):
    result = runner.invoke(cli, ["route", str(rules_path), *args])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Usage:" in result.stderr
    if message is not None:
        assert f"Error: {message}" in result.stderr


def test_route_a_push_that_cannot_be_parsed_is_a_usage_error(runner, rules_path, push_file):
    result = runner.invoke(cli, ["route", str(rules_path), "--xml", push_file("<xml><MsgType>text</MsgType></xml>")])
    assert result.exit_code == 2
    assert "the push cannot be parsed: not a WeChat push" in result.stderr


def test_route_with_an_invalid_rule_file_exits_2(runner, invalid_path):
    result = runner.invoke(cli, ["route", str(invalid_path), "--text", "人工"])
    assert result.exit_code == 2
    assert result.stdout == ""
    for line in INVALID_LINES:
        assert line.format(path=invalid_path) in result.stderr


@pytest.mark.parametrize("folding, said, shown, rule", [
    ("", "轉人工", "text '轉人工', folded for keywords (width, case, traditional): '转人工'", "ask-for-human"),
    ("", "找ＶＩＰ客服人員", "text '找ＶＩＰ客服人員', folded for keywords (width, case, traditional): '找vip客服人员'",
     "ask-for-human"),
    ("folding: [width, case]\n", "轉人工", "text '轉人工', folded for keywords (width, case): '轉人工'", None),
])
def test_route_shows_the_folded_text(runner, tmp_path, folding, said, shown, rule):
    path = tmp_path / "rules.yaml"
    path.write_text(f"version: 1\n{folding}rules:\n  - name: ask-for-human\n    keywords: [转人工, 客服人员]\n",
                    encoding="utf-8")
    result = runner.invoke(cli, ["route", str(path), "--text", said])
    lines = result.stdout.splitlines()
    assert lines[0] == shown
    if rule is None:
        assert result.exit_code == 1 and lines[1].startswith("no rule takes this message")
    else:
        assert result.exit_code == 0
        assert lines[1:3] == [f"rule {rule!r} takes it ({path}:3)", "  because: Keyword('转人工', '客服人员')"]


def test_check_names_a_files_foldings_when_not_all(runner, tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("version: 1\nfolding: [width, case]\nrules:\n  - name: r\n    keywords: 转人工\n", encoding="utf-8")
    result = runner.invoke(cli, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1:3] == [
        "  r: Keyword('转人工', folding=['width', 'case']) → transfer to customer service",
        "  keywords folded: width, case",
    ]


def test_route_uses_KF_RULES(runner, rules_path):
    result = runner.invoke(cli, ["route", "--text", "人工"], env={"KF_RULES": str(rules_path)})
    assert result.exit_code == 0, result.output
    assert _route_output(result.stdout)[0][0] == f"rule 'ask-for-human' takes it ({rules_path}:4)"


# --------------------------------------------------------------------------
# push, against a real HTTP server
# --------------------------------------------------------------------------

@pytest.fixture
def serve() -> Callable[[Flask], str]:
    """``serve(app)`` → the webhook URL of ``app`` served over HTTP on a free loopback port."""
    servers = []

    def start(app: Flask) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}{app.config.get('KF_URL', '/wechat')}"

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _lines(stdout: str) -> List[str]:
    return stdout.splitlines()


def test_push_plain_mode(runner, make_app, serve):
    url = serve(make_app())
    result = runner.invoke(cli, ["push", url, "--text", "转人工", "--token", TOKEN, "--from", "oFan"])
    assert result.exit_code == 0, result.output
    status, xml = _lines(result.stdout)
    assert status == "HTTP 200"
    fields = xml_fields(xml)
    assert fields["MsgType"] == "transfer_customer_service"
    assert (fields["ToUserName"], fields["FromUserName"]) == ("oFan", "gh_account")


def test_push_plain_mode_event_with_designated_agent(runner, make_app, serve):
    url = serve(make_app())
    result = runner.invoke(cli, ["push", url, "--event", "CLICK", "--key", "CONTACT_VIP", "--token", TOKEN])
    assert result.exit_code == 0, result.output
    status, xml = _lines(result.stdout)
    assert status == "HTTP 200"
    assert xml_fields(xml)["TransInfo"] == {"KfAccount": "vip1@gh_example"}


def test_push_safe_mode_prints_the_decrypted_reply(runner, make_app, serve):
    url = serve(make_app(KF_ENCODING_AES_KEY=AES_KEY))
    result = runner.invoke(cli, ["push", url, "--event", "CLICK", "--key", "CONTACT_VIP",
                                 "--token", TOKEN, "--aes-key", AES_KEY, "--appid", APPID])
    assert result.exit_code == 0, result.output
    status, xml = _lines(result.stdout)
    assert status == "HTTP 200"
    assert "<Encrypt>" not in xml
    fields = xml_fields(xml)
    assert fields["MsgType"] == "transfer_customer_service"
    assert fields["TransInfo"] == {"KfAccount": "vip1@gh_example"}


def test_push_deliveries_answers_every_retry_and_runs_the_handler_once(runner, make_app, serve):
    calls = []
    router = MessageRouter("bot")

    @router.on()
    def count(message):
        calls.append(message.id)
        return f"handled {len(calls)}"

    url = serve(make_app(router=router))
    result = runner.invoke(cli, ["push", url, "--text", "hello bot", "--token", TOKEN, "--deliveries", "3"])
    assert result.exit_code == 0, result.output
    lines = _lines(result.stdout)
    assert lines[0::2] == ["[delivery 1] HTTP 200", "[delivery 2] HTTP 200", "[delivery 3] HTTP 200"]
    replies = lines[1::2]
    assert len(replies) == 3
    assert replies[0] == replies[1] == replies[2]
    assert xml_fields(replies[0])["Content"] == "handled 1"
    assert len(calls) == 1


def test_push_with_a_wrong_token_prints_403_and_exits_1(runner, make_app, serve):
    url = serve(make_app())
    result = runner.invoke(cli, ["push", url, "--text", "人工", "--token", "not-the-token"])
    assert result.exit_code == 1
    assert _lines(result.stdout) == ["HTTP 403", "signature does not match"]


def test_push_with_a_wrong_aes_key_is_refused(runner, make_app, serve):
    url = serve(make_app(KF_ENCODING_AES_KEY=AES_KEY))
    other_key = AES_KEY[::-1]
    result = runner.invoke(cli, ["push", url, "--text", "人工", "--token", TOKEN, "--aes-key", other_key,
                                 "--appid", APPID])
    assert result.exit_code == 1
    assert _lines(result.stdout) == ["HTTP 400", "cannot decrypt the push with the configured EncodingAESKey"]


@pytest.fixture
def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_push_to_an_unreachable_url(runner, closed_port):
    url = f"http://127.0.0.1:{closed_port}/wechat"
    result = runner.invoke(cli, ["push", url, "--text", "人工", "--token", TOKEN, "--timeout", "5"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert f"Error: cannot reach {url}" in result.stderr


def test_push_reads_token_key_and_appid_from_the_environment(runner, make_app, serve):
    url = serve(make_app(KF_ENCODING_AES_KEY=AES_KEY))
    env = {"KF_TOKEN": TOKEN, "KF_ENCODING_AES_KEY": AES_KEY, "KF_APPID": APPID}
    result = runner.invoke(cli, ["push", url, "--event", "CLICK", "--key", "CONTACT_VIP"], env=env)
    assert result.exit_code == 0, result.output
    status, xml = _lines(result.stdout)
    assert status == "HTTP 200"
    assert xml_fields(xml)["TransInfo"] == {"KfAccount": "vip1@gh_example"}


def test_push_env_token_is_used_and_checked(runner, make_app, serve):
    url = serve(make_app())
    result = runner.invoke(cli, ["push", url, "--text", "人工"], env={"KF_TOKEN": "wrong"})
    assert result.exit_code == 1
    assert _lines(result.stdout)[0] == "HTTP 403"


@pytest.mark.parametrize("args, env, message", [
    ([], {"KF_TOKEN": None}, "Missing option '--token'"),
    (["--token", TOKEN, "--aes-key", AES_KEY], {"KF_APPID": None}, "KF_APPID is required in safe mode"),
    (["--token", TOKEN, "--aes-key", "short", "--appid", APPID], {}, "KF_ENCODING_AES_KEY must be the 43"),
    (["--token", TOKEN, "--deliveries", "0"], {}, "--deliveries"),
])
def test_push_usage_errors(runner, args, env, message):
    # Nothing listens on port 9: a usage error must come before any request.
    result = runner.invoke(cli, ["push", "http://127.0.0.1:9/wechat", "--text", "人工", *args], env=env)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "cannot reach" not in result.stderr


# --------------------------------------------------------------------------
# flask kf ...
# --------------------------------------------------------------------------

def test_flask_kf_check_uses_the_apps_KF_RULES(make_app, rules_file, monkeypatch):
    monkeypatch.delenv("KF_RULES", raising=False)
    app = make_app()
    result = app.test_cli_runner().invoke(args=["kf", "check"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"{rules_file}: valid, 3 rules (3 enabled)"
    assert "  vip-menu: Event('CLICK') & EventKey('CONTACT_VIP') → transfer to vip1@gh_example" in result.output


def test_flask_command_kf_check_uses_the_apps_KF_RULES(make_app, rules_file, monkeypatch, runner):
    """The same through the ``flask`` command's own group (FlaskGroup), which pushes an app context."""
    monkeypatch.delenv("KF_RULES", raising=False)
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "")  # FlaskGroup sets it; restored after the test
    app = make_app()
    group = FlaskGroup(create_app=lambda: app, load_dotenv=False)
    result = runner.invoke(group, ["kf", "check"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == f"{rules_file}: valid, 3 rules (3 enabled)"


def test_flask_kf_route_uses_the_apps_KF_RULES(make_app, rules_file, monkeypatch):
    monkeypatch.delenv("KF_RULES", raising=False)
    app = make_app()
    result = app.test_cli_runner().invoke(args=["kf", "route", "--text", "我要投诉"])
    assert result.exit_code == 0, result.output
    assert _route_output(result.output)[0][0] == f"rule 'complaint' takes it ({rules_file}:10)"


def test_flask_kf_push_signs_with_the_apps_token_and_key(make_app, serve, monkeypatch):
    for name in ("KF_TOKEN", "KF_ENCODING_AES_KEY", "KF_APPID"):
        monkeypatch.delenv(name, raising=False)
    app = make_app(KF_ENCODING_AES_KEY=AES_KEY)
    url = serve(app)
    result = app.test_cli_runner().invoke(args=["kf", "push", url, "--event", "CLICK", "--key", "CONTACT_VIP"])
    assert result.exit_code == 0, result.output
    status, xml = _lines(result.output)
    assert status == "HTTP 200" and xml_fields(xml)["TransInfo"] == {"KfAccount": "vip1@gh_example"}


def test_flask_kf_push_a_token_typed_on_the_command_line_wins(make_app, serve, monkeypatch):
    monkeypatch.delenv("KF_TOKEN", raising=False)
    app = make_app()
    result = app.test_cli_runner().invoke(args=["kf", "push", serve(app), "--text", "人工", "--token", "typed"])
    assert result.exit_code == 1 and _lines(result.output)[0] == "HTTP 403"


# --------------------------------------------------------------------------
# route: business hours; check: rules that need the WeChat API
# --------------------------------------------------------------------------

HOURS_RULES = """version: 1
fallback_text: "客服暂时不在线，请留言"
business_hours:
  timezone: Asia/Shanghai
  weekdays: mon-fri
  open: "09:00"
  close: "18:00"
  closed_text: "客服工作时间：工作日 9:00–18:00"
rules:
  - name: ask-for-human
    keywords: 人工
"""


@pytest.mark.parametrize("at, hours, reply", [
    ("2026-11-27 10:00", "  hours:   open at 2026-11-27 10:00 CST", "transfer_customer_service"),     # a Friday
    ("2026-11-28 10:00", "  hours:   closed at 2026-11-28 10:00 CST: the closed text answers",  # a Saturday
     "客服工作时间：工作日 9:00–18:00"),
    ("2026-11-27T12:00:00+00:00", "  hours:   closed at 2026-11-27 20:00 CST: the closed text answers",
     "客服工作时间"),
])
def test_route_honours_business_hours_at_a_given_time(runner, tmp_path, at, hours, reply):
    path = tmp_path / "hours.yaml"
    path.write_text(HOURS_RULES, encoding="utf-8")
    result = runner.invoke(cli, ["route", str(path), "--text", "人工", "--at", at])
    assert result.exit_code == 0, result.output
    head, xml = _route_output(result.stdout)
    assert hours in head and reply in xml


def test_route_refuses_a_time_it_cannot_read(runner, tmp_path):
    path = tmp_path / "hours.yaml"
    path.write_text(HOURS_RULES, encoding="utf-8")
    result = runner.invoke(cli, ["route", str(path), "--text", "人工", "--at", "tomorrow"])
    assert result.exit_code == 2 and "'tomorrow' is not a time like 2026-11-28 10:00" in result.stderr


NEEDS_API = """version: 1
rules:
  - name: online-only
    keywords: 人工
    require_online: true
"""


@pytest.mark.parametrize("env, warned", [
    ({"KF_APPID": None, "KF_SECRET": None}, "KF_APPID and KF_SECRET are not set"),
    ({"KF_APPID": APPID, "KF_SECRET": None}, "KF_SECRET is not set: set KF_SECRET in the environment"),
    ({"KF_APPID": APPID, "KF_SECRET": "s"}, None),
])
def test_check_warns_of_rules_that_need_the_api_it_has_no_credentials_for(runner, tmp_path, env, warned):
    path = tmp_path / "needs.yaml"
    path.write_text(NEEDS_API, encoding="utf-8")
    result = runner.invoke(cli, ["check", str(path)], env=env)
    assert result.exit_code == 0
    if warned is None:
        assert result.stderr == ""
    else:
        assert result.stderr.startswith("warning: rule 'online-only' uses require_online, which needs the WeChat API")
        assert warned in result.stderr
