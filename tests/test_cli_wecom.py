"""``kf-plugin wecom …`` (and ``flask kf wecom …``) against the sandbox's WeCom over real HTTP.

Each test checks what the command printed (plain and ``--json``), its exit code (0 success, 1 an API error with
errcode and meaning on one line of stderr, 2 bad input or missing configuration) and what WeCom received.
"""
from __future__ import annotations

import json
from typing import Any, Dict, Optional

import pytest
from click.testing import CliRunner

from kf_plugin.cli import cli
from kf_plugin.wecom.api import WeComKf
from kf_plugin.wecom.client import WeComClient
from tests.conftest import AES_KEY

CUSTOMER = "wmCustomer"
KF_PATHS = "/cgi-bin/kf/"


@pytest.fixture
def wecom(api):
    """The sandbox's WeCom with an account, two servicers (lisi not receiving) and a customer who wrote."""
    kfid = api.sandbox.wecom.add_account("售后客服")
    api.sandbox.wecom.add_servicer(kfid, "zhangsan")
    api.sandbox.wecom.add_servicer(kfid, "lisi", receiving=False)
    api.sandbox.wecom.customer_says(kfid, CUSTOMER, "你好")
    api.kfid = kfid
    return api


@pytest.fixture
def kf(api):
    """``kf(*args, env=None)``: run ``kf-plugin`` with the sandbox's WeCom credentials in the environment."""
    runner = CliRunner(env={"KF_WECOM_CORPID": api.sandbox.wecom.corpid, "KF_WECOM_SECRET": api.sandbox.wecom.secret,
                            "KF_WECOM_API_BASE_URL": api.url, "KF_API_TIMEOUT": "5"})

    def invoke(*args: str, env: Optional[Dict[str, Any]] = None):
        return runner.invoke(cli, list(args), env=env)
    return invoke


def kf_calls(api) -> list:
    """(path, body or query without the token) of every 微信客服 call."""
    return [(c.path, c.body if c.body is not None else {k: v for k, v in c.query.items() if k != "access_token"})
            for c in api.sandbox.calls if c.path.startswith(KF_PATHS)]


def assert_api_error(result: Any, errcode: int, meaning: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"Error: WeCom API error {errcode} on /cgi-bin/kf/")
    assert meaning in result.stderr


# -- accounts and links ----------------------------------------------------------------------

def test_accounts_lists_open_kfid_and_name(kf, wecom):
    second = wecom.sandbox.wecom.add_account("客服")
    result = kf("wecom", "accounts")
    assert result.exit_code == 0, result.output
    width = len(wecom.kfid)
    assert result.stdout == (f"{'OPEN_KFID'.ljust(width)}  NAME\n"
                             f"{wecom.kfid}  售后客服\n"
                             f"{second.ljust(width)}  客服\n")
    assert wecom.sandbox.calls[0].path == "/cgi-bin/gettoken"
    assert kf_calls(wecom) == [("/cgi-bin/kf/account/list", {"offset": 0, "limit": 100})]


def test_accounts_json(kf, wecom):
    result = kf("wecom", "accounts", "--json")
    assert result.exit_code == 0, result.output
    [account] = json.loads(result.stdout)
    assert account.pop("avatar").startswith("https://")
    assert account == {"open_kfid": wecom.kfid, "name": "售后客服", "manage_privilege": True}


def test_accounts_pages_through_more_than_100(kf, api):
    kfids = [api.sandbox.wecom.add_account(f"客服{n}") for n in range(101)]
    result = kf("wecom", "accounts", "--json")
    assert result.exit_code == 0, result.output
    assert [a["open_kfid"] for a in json.loads(result.stdout)] == kfids
    assert kf_calls(api) == [("/cgi-bin/kf/account/list", {"offset": 0, "limit": 100}),
                             ("/cgi-bin/kf/account/list", {"offset": 100, "limit": 100})]


def test_accounts_when_there_are_none(kf, api):
    result = kf("wecom", "accounts")
    assert (result.exit_code, result.stdout) == (0, "no kf accounts\n")


@pytest.mark.parametrize("args, body", [
    ((), {}),
    (("--scene", "menu_1"), {"scene": "menu_1"}),
])
def test_link_prints_the_contact_way_url(kf, wecom, args, body):
    result = kf("wecom", "link", wecom.kfid, *args)
    assert result.exit_code == 0, result.output
    url = result.stdout.strip()
    assert result.stdout == url + "\n" and url.startswith("https://")
    assert kf_calls(wecom) == [("/cgi-bin/kf/add_contact_way", {"open_kfid": wecom.kfid, **body})]


def test_a_bad_scene_is_bad_input_before_any_call(kf, wecom):
    result = kf("wecom", "link", wecom.kfid, "--scene", "菜单")
    assert result.exit_code == 2
    assert result.stderr == "Error: a scene is at most 32 characters of 0-9 A-Z a-z _ -, not '菜单'\n"
    assert kf_calls(wecom) == []


# -- servicers ---------------------------------------------------------------------------------

def test_servicers_lists_userid_and_status(kf, wecom):
    result = kf("wecom", "servicers", wecom.kfid)
    assert result.exit_code == 0, result.output
    assert result.stdout == ("USERID    STATUS\n"
                             "zhangsan  receiving\n"
                             "lisi      stopped\n")
    assert kf_calls(wecom) == [("/cgi-bin/kf/servicer/list", {"open_kfid": wecom.kfid})]


def test_servicers_json(kf, wecom):
    result = kf("wecom", "servicers", wecom.kfid, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"userid": "zhangsan", "status": 0}, {"userid": "lisi", "status": 1}]


def test_an_account_without_servicers(kf, api):
    kfid = api.sandbox.wecom.add_account("客服")
    result = kf("wecom", "servicers", kfid)
    assert (result.exit_code, result.stdout) == (0, f"{kfid} has no servicers\n")


# -- the service state ---------------------------------------------------------------------------

def move(api, state: int, servicer: Optional[str] = None) -> None:
    kf = WeComKf(WeComClient(api.sandbox.wecom.corpid, api.sandbox.wecom.secret, api_base_url=api.url))
    kf.trans(api.kfid, CUSTOMER, state, servicer)


@pytest.mark.parametrize("moves, line, as_json", [
    ([], "state 0 new (not handled yet)", {"state": 0, "name": "new", "servicer_userid": None}),
    ([(1, None)], "state 1 bot (with the bot)", {"state": 1, "name": "bot", "servicer_userid": None}),
    ([(2, None)], "state 2 pool (waiting in the pool for a servicer)",
     {"state": 2, "name": "pool", "servicer_userid": None}),
    ([(3, "zhangsan")], "state 3 human (with a servicer), servicer zhangsan",
     {"state": 3, "name": "human", "servicer_userid": "zhangsan"}),
    ([(3, "zhangsan"), (4, None)], "state 4 ended (ended; the customer's next message starts a new session)",
     {"state": 4, "name": "ended", "servicer_userid": None}),
])
def test_state_by_name_and_number_with_the_servicer(kf, wecom, moves, line, as_json):
    for state, servicer in moves:
        move(wecom, state, servicer)
    result = kf("wecom", "state", wecom.kfid, CUSTOMER)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{CUSTOMER}: {line}\n"
    result = kf("wecom", "state", wecom.kfid, CUSTOMER, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"open_kfid": wecom.kfid, "external_userid": CUSTOMER, **as_json}


def test_state_of_an_unknown_customer_is_an_api_error(kf, wecom):
    assert_api_error(kf("wecom", "state", wecom.kfid, "wmNobody"), 40096, "invalid external_userid")


# -- sending -----------------------------------------------------------------------------------

def test_send_prints_the_msgid(kf, wecom):
    result = kf("wecom", "send", wecom.kfid, CUSTOMER, "您好，有什么可以帮您？")
    assert result.exit_code == 0, result.output
    sent = wecom.sandbox.wecom.sent
    assert len(sent) == 1
    assert result.stdout == f"{sent[0]['msgid']}\n"
    assert (sent[0]["touser"], sent[0]["open_kfid"], sent[0]["text"]) == (
        CUSTOMER, wecom.kfid, {"content": "您好，有什么可以帮您？"})


def test_send_in_the_pool_is_refused_with_95018(kf, wecom):
    move(wecom, 2)
    assert_api_error(kf("wecom", "send", wecom.kfid, CUSTOMER, "hi"), 95018,
                     "the session's state does not allow sending")
    assert wecom.sandbox.wecom.sent == []


@pytest.mark.parametrize("args", [
    ("link", "wkUnknown"),
    ("servicers", "wkUnknown"),
    ("state", "wkUnknown", CUSTOMER),
    ("send", "wkUnknown", CUSTOMER, "hi"),
])
def test_an_unknown_open_kfid_is_an_api_error(kf, wecom, args):
    result = kf("wecom", *args)
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "WeCom API error 95000" in result.stderr and "invalid open_kfid" in result.stderr


def test_a_wrong_secret_is_an_api_error(kf, wecom):
    result = kf("wecom", "accounts", env={"KF_WECOM_SECRET": "wrong"})
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: WeCom API error 40001 on /cgi-bin/gettoken: invalid secret")
    assert len(result.stderr.splitlines()) == 1
    assert "wrong" not in result.stderr  # the secret never appears


def test_an_unreachable_api_is_exit_1(kf, wecom):
    result = kf("wecom", "accounts", env={"KF_WECOM_API_BASE_URL": "http://127.0.0.1:9", "KF_API_TIMEOUT": "1"})
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: cannot reach the WeCom API on /cgi-bin/gettoken")


# -- configuration ---------------------------------------------------------------------------

@pytest.mark.parametrize("env, missing", [
    ({"KF_WECOM_CORPID": None}, "KF_WECOM_CORPID"),
    ({"KF_WECOM_SECRET": ""}, "KF_WECOM_SECRET"),
    ({"KF_WECOM_CORPID": "", "KF_WECOM_SECRET": None}, "KF_WECOM_CORPID and KF_WECOM_SECRET"),
])
@pytest.mark.parametrize("args", [("accounts",), ("link", "wk"), ("servicers", "wk"), ("state", "wk", "wm"),
                                  ("send", "wk", "wm", "hi")])
def test_missing_settings_exit_2_before_any_call(kf, api, env, missing, args):
    result = kf("wecom", *args, env=env)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (f"Error: missing settings: set {missing} in the environment (the corp ID and the "
                             "secret of the WeCom app with 微信客服 API permission)\n")
    assert api.sandbox.calls == []


def test_a_bad_timeout_is_bad_configuration(kf, api):
    result = kf("wecom", "accounts", env={"KF_API_TIMEOUT": "soon"})
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: KF_API_TIMEOUT ")
    assert api.sandbox.calls == []


# -- flask kf wecom … ---------------------------------------------------------------------------

def test_flask_kf_wecom_uses_the_apps_channel(make_app, wecom):
    app = make_app(KF_TOKEN=None, KF_WECOM_CORPID=wecom.sandbox.wecom.corpid,
                   KF_WECOM_SECRET=wecom.sandbox.wecom.secret, KF_WECOM_TOKEN="wecom-token",
                   KF_WECOM_AES_KEY=AES_KEY, KF_WECOM_API_BASE_URL=wecom.url)
    channel = app.extensions["kf_plugin"].wecom
    try:
        assert channel.api.client.tokens.info(False).expires_at is None  # no token yet
        result = app.test_cli_runner().invoke(args=["kf", "wecom", "servicers", wecom.kfid, "--json"],
                                              env={"KF_WECOM_CORPID": None, "KF_WECOM_SECRET": None})
    finally:
        app.extensions["kf_plugin"].plugin.shutdown()
    assert result.exit_code == 0, result.output
    assert [s["userid"] for s in json.loads(result.stdout)] == ["zhangsan", "lisi"]
    assert channel.api.client.tokens.info(False).expires_at is not None  # the app's token served the command


def test_flask_kf_wecom_reads_the_apps_config_without_a_channel(make_app, wecom):
    """An app serving only the Official Account: the WeCom settings still come from its config."""
    app = make_app(KF_WECOM_API_BASE_URL=wecom.url)
    result = app.test_cli_runner().invoke(args=["kf", "wecom", "accounts"],
                                          env={"KF_WECOM_CORPID": "x", "KF_WECOM_SECRET": "y"})
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: missing settings: set KF_WECOM_CORPID and KF_WECOM_SECRET in the app's "
                                    "config")
