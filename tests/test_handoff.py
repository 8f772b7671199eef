"""Agent-aware hand-off through real pushes, against the sandbox over HTTP."""
import dataclasses
import datetime as dt
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from zoneinfo import ZoneInfo

import pytest

from kf_plugin import Keyword, MessageRouter, TEXT
from kf_plugin.testing import WeChatTestClient, message_xml

from .conftest import FakeClock

RULES = """\
version: 1
fallback_text: "客服暂时不在线，请留言"
handoff_text: "正在为您接入客服"
rules:
  - name: online-only
    keywords: 在线客服
    require_online: true
  - name: vip
    keywords: VIP
    kf_account: wang@gh_test
    require_online: true
  - name: vip-or-pool
    keywords: 专属
    kf_account: wang@gh_test
    fallback_to_pool: true
  - name: menu-session
    event: CLICK
    event_key: TALK
    handoff: session
  - name: vip-session
    event: CLICK
    event_key: TALK_VIP
    kf_account: wang@gh_test
    handoff: session
  - name: with-notice
    keywords: 通知
    notice: "您好，客服马上就来"
"""


def eventually(predicate, timeout=5.0):
    """Wait (bounded) for background work to show its result."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the background work did not happen in time"
        time.sleep(0.01)


@pytest.fixture
def make_kf_app(api, tmp_path, make_app):
    plugins = []

    def make(rules=RULES, router=None, **config):
        path = tmp_path / "handoff.yaml"
        path.write_text(rules, encoding="utf-8")
        options = config.pop("plugin_options", {})
        config = {"KF_HANDOFF_BUDGET": 2.0, "KF_HANDOFF_SWEEP": 0, **config}   # the push path alone
        app = make_app(router=router, plugin_options=options, KF_RULES=str(path), KF_SECRET=api.sandbox.secret,
                       KF_APPID=api.sandbox.appid, KF_API_BASE_URL=api.url, **config)
        plugins.append(app.extensions["kf_plugin"].plugin)
        return app, WeChatTestClient(app), plugins[-1]
    yield make
    for plugin in plugins:
        plugin.shutdown()


def user_says(api, client, text, sender="oUser"):
    api.sandbox.interact(sender, "message")
    return client.send_text(text, sender=sender)


def user_clicks(api, client, key, sender="oUser"):
    api.sandbox.interact(sender, "click")
    return client.send_event("CLICK", key, sender=sender)


def test_require_online_with_nobody_online_answers_the_fallback(api, make_kf_app):
    _, client, _ = make_kf_app()
    assert user_says(api, client, "在线客服").content == "客服暂时不在线，请留言"


def test_require_online_transfers_when_someone_is(api, make_kf_app):
    api.sandbox.add_agent("li@gh_test", "小李", wx="li_wechat", online=True)
    _, client, _ = make_kf_app()
    answer = user_says(api, client, "在线客服")
    assert answer.message_type == "transfer_customer_service" and answer.kf_account is None


@pytest.mark.parametrize("wang_online, expected", [(True, ("transfer_customer_service", "wang@gh_test")),
                                                   (False, ("text", None))])
def test_designated_agent_must_be_online(api, make_kf_app, wang_online, expected):
    api.sandbox.add_agent("wang@gh_test", "小王", wx="wang_wx", online=wang_online)
    api.sandbox.add_agent("li@gh_test", "小李", wx="li_wechat", online=True)
    _, client, _ = make_kf_app()
    answer = user_says(api, client, "VIP")
    assert (answer.message_type, answer.kf_account) == expected


@pytest.mark.parametrize("wang, li, expected", [
    (True, True, "wang@gh_test"),     # designated and online
    (False, True, None),              # designated offline → the pool (any online agent)
    (False, False, "wang@gh_test"),   # nobody online → the designated agent, the user waits
])
def test_fallback_to_pool(api, make_kf_app, wang, li, expected):
    api.sandbox.add_agent("wang@gh_test", "小王", wx="wang_wx", online=wang)
    api.sandbox.add_agent("li@gh_test", "小李", wx="li_wechat", online=li)
    _, client, _ = make_kf_app()
    answer = user_says(api, client, "专属")
    assert answer.message_type == "transfer_customer_service" and answer.kf_account == expected


def test_session_handoff_picks_the_least_busy_agent(api, make_kf_app):
    api.sandbox.add_agent("wang@gh_test", "小王", wx="wang_wx", online=True)
    api.sandbox.add_agent("li@gh_test", "小李", wx="li_wechat", online=True)
    api.sandbox.interact("oBusy", "message")
    _, client, plugin = make_kf_app()
    plugin.admin.open_session("oBusy", "wang@gh_test")
    plugin.agents.refresh()
    answer = user_clicks(api, client, "TALK")
    assert answer.content == "正在为您接入客服"
    assert api.sandbox.sessions["oUser"]["kf_account"] == "li@gh_test"
    assert api.sandbox.calls_to("/customservice/kfsession/create")[-1].body == {"kf_account": "li@gh_test",
                                                                               "openid": "oUser"}


def test_session_handoff_to_the_designated_agent(api, make_kf_app):
    api.sandbox.add_agent("wang@gh_test", "小王", wx="wang_wx", online=True)
    api.sandbox.add_agent("li@gh_test", "小李", wx="li_wechat", online=True)
    _, client, _ = make_kf_app()
    assert user_clicks(api, client, "TALK_VIP").content == "正在为您接入客服"
    assert api.sandbox.sessions["oUser"]["kf_account"] == "wang@gh_test"


def test_session_handoff_with_nobody_online(api, make_kf_app):
    _, client, _ = make_kf_app()
    assert user_clicks(api, client, "TALK").content == "客服暂时不在线，请留言"
    assert api.sandbox.calls_to("/customservice/kfsession/create") == []


def test_session_refused_falls_back_to_the_transfer_reply(api, make_kf_app):
    api.sandbox.add_agent("wang@gh_test", "小王", wx="wang_wx", online=True)
    _, client, _ = make_kf_app()
    api.sandbox.faults.fail_next(65414, path="/customservice/kfsession/create")
    answer = user_clicks(api, client, "TALK")
    assert answer.message_type == "transfer_customer_service" and answer.kf_account == "wang@gh_test"


def test_notice_is_sent_after_the_handoff(api, make_kf_app):
    _, client, _ = make_kf_app()
    answer = user_says(api, client, "通知")
    assert answer.message_type == "transfer_customer_service"
    eventually(lambda: api.sandbox.sent)
    assert api.sandbox.sent[0]["touser"] == "oUser" and api.sandbox.sent[0]["text"] == {"content": "您好，客服马上就来"}


@pytest.mark.parametrize("state", ["memory", "redis"])
def test_the_notice_is_sent_once_whatever_the_retries(api, make_kf_app, request, state):
    config = {"KF_REDIS_URL": request.getfixturevalue("redis_url")} if state == "redis" else {}
    _, client, _ = make_kf_app(**config)
    api.sandbox.interact("oUser", "message")
    query, body = client.signer.sign(message_xml(text="通知", sender="oUser", msg_id=4242))
    answers = [client.post(query, body) for _ in range(3)]   # WeChat's retries of one push
    assert {answer.body for answer in answers} == {answers[0].body}
    assert answers[0].message_type == "transfer_customer_service"
    eventually(lambda: api.sandbox.sent)
    time.sleep(0.3)                                            # room for a second notice, were one sent
    assert len(api.sandbox.sent) == 1


def test_api_unreachable_transfers_as_configured(api, make_kf_app):
    _, client, _ = make_kf_app(KF_HANDOFF_BUDGET=0.5)
    api.sandbox.faults.http_error(502, path="/cgi-bin/customservice/getonlinekflist", times=100)
    answer = user_says(api, client, "VIP")
    assert answer.message_type == "transfer_customer_service" and answer.kf_account == "wang@gh_test"


def test_a_slow_api_does_not_hold_the_reply(api, make_kf_app):
    api.sandbox.add_agent("li@gh_test", "小李", wx="li_wechat", online=True)
    _, client, plugin = make_kf_app(KF_HANDOFF_BUDGET=0.1)
    api.sandbox.faults.add_latency(2.0, path="/cgi-bin/customservice/getonlinekflist")
    answer = user_says(api, client, "在线客服")
    # Unknown within the budget: the rule transfers optimistically instead of waiting for the API.
    assert answer.message_type == "transfer_customer_service"
    assert plugin.agents.online(budget=0) is None


BUSINESS = """\
version: 1
fallback_text: "稍后再来"
business_hours:
  timezone: Asia/Shanghai
  weekdays: mon-fri
  open: "09:00"
  close: "18:00"
  closed_dates: ["2026-10-01"]
  closed_text: "现在是休息时间，工作日 9:00–18:00 在线"
rules:
  - name: human
    keywords: 人工
  - name: hours
    keywords: 时间
    reply: "工作日 9:00–18:00"
"""


@pytest.mark.parametrize("when, expected", [
    ("2026-11-24 10:00", "transfer_customer_service"),
    ("2026-11-24 20:00", "现在是休息时间，工作日 9:00–18:00 在线"),
    ("2026-11-28 10:00", "现在是休息时间，工作日 9:00–18:00 在线"),
    ("2026-10-01 10:00", "现在是休息时间，工作日 9:00–18:00 在线"),
])
def test_business_hours(api, make_kf_app, when, expected):
    moment = dt.datetime.fromisoformat(when).replace(tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
    _, client, _ = make_kf_app(BUSINESS, KF_MAX_CLOCK_SKEW=0, plugin_options={"clock": FakeClock(moment)})
    answer = client.send_text("人工")
    assert (answer.message_type if expected.startswith("transfer") else answer.content) == expected
    assert client.send_text("时间").content == "工作日 9:00–18:00"  # plain replies ignore the hours


def test_pushes_grant_send_rights_once_per_push(api, make_kf_app):
    _, client, plugin = make_kf_app()
    api.sandbox.interact("oUser", "message")
    query, body = client.signer.sign("<xml><ToUserName>gh</ToUserName><FromUserName>oUser</FromUserName>"
                                     f"<CreateTime>{int(time.time())}</CreateTime><MsgType>text</MsgType>"
                                     "<Content>hello</Content><MsgId>99</MsgId></xml>")
    for _ in range(3):
        client.post(query, body)
    assert plugin.window.status("oUser").remaining == 5
    plugin.admin.send_text("oUser", "hi")
    assert plugin.window.status("oUser").remaining == 4


def test_session_hooks_run_after_the_answer(api, make_kf_app):
    _, client, plugin = make_kf_app()
    seen = []

    @plugin.on_session("close")
    def survey(event):
        seen.append((event.event, event.source, event.account))

    @plugin.on_session()
    def every(event):
        seen.append(event.event)

    assert client.send_event("kf_create_session", sender="oU", extra={"KfAccount": "wang@gh_test"}).body == "success"
    assert client.send_event("kf_close_session", sender="oU", extra={"KfAccount": "wang@gh_test"}).body == "success"
    eventually(lambda: len(seen) == 3)
    assert sorted(map(str, seen)) == sorted(map(str, ["kf_create_session", ("kf_close_session", "oU", "wang@gh_test"),
                                                      "kf_close_session"]))
    with pytest.raises(ValueError, match="no such session event: kf_open_session"):
        plugin.on_session("open")


def test_a_failing_hook_is_logged_not_raised(api, make_kf_app, caplog):
    _, client, plugin = make_kf_app()
    plugin.on_session("create")(lambda event: 1 / 0)
    assert client.send_event("kf_create_session", extra={"KfAccount": "a@b"}).status == 200
    eventually(lambda: any("session hook" in r.getMessage() for r in caplog.records))


def test_slow_handlers_answer_success_and_deliver_later(api, make_kf_app):
    release = threading.Event()
    runs = []
    router = MessageRouter()

    @router.on(TEXT)
    def slow(message):
        runs.append(1)
        release.wait(10)
        return "慢慢来的回答"

    _, client, _ = make_kf_app(router=router, KF_REPLY_BUDGET=0.2)
    api.sandbox.interact("oUser", "message")
    query, body = client.signer.sign("<xml><ToUserName>gh</ToUserName><FromUserName>oUser</FromUserName>"
                                     f"<CreateTime>{int(time.time())}</CreateTime><MsgType>text</MsgType>"
                                     "<Content>你好</Content><MsgId>7</MsgId></xml>")
    assert client.post(query, body).body == "success"
    assert client.post(query, body).body == "success"   # WeChat's retry does not run the handler again
    release.set()
    eventually(lambda: api.sandbox.sent)
    assert api.sandbox.sent[0]["text"] == {"content": "慢慢来的回答"} and runs == [1]


class RecordingPool(ThreadPoolExecutor):
    """The handler pool, noting what is handed to it."""

    def __init__(self):
        super().__init__(max_workers=2, thread_name_prefix="kf-test-handlers")
        self.submitted = []

    def submit(self, fn, /, *args, **kwargs):
        self.submitted.append(fn)
        return super().submit(fn, *args, **kwargs)


def recording_pool(app):
    """Swap the app's deadline pool for a :class:`RecordingPool`."""
    webhook = app.extensions["kf_plugin"].webhook
    pool = RecordingPool()
    webhook.late = dataclasses.replace(webhook.late, executor=pool)
    return pool


def test_kf_rules_answer_on_the_request_thread_without_the_pool(api, make_kf_app):
    router = MessageRouter()
    router.add(Keyword("hello"), lambda message: "hi")
    app, client, _ = make_kf_app(router=router)
    pool = recording_pool(app)
    api.sandbox.add_agent("wang@gh_test", "小王", wx="wang_wechat", online=True)
    assert user_says(api, client, "在线客服").message_type == "transfer_customer_service"   # needs the agents
    assert user_clicks(api, client, "TALK").content == "正在为您接入客服"                     # opens a session
    assert pool.submitted == []
    assert client.send_text("hello").content == "hi"          # the bot's own handler: under the deadline
    assert len(pool.submitted) == 1
    pool.shutdown()


def test_a_bot_without_handlers_of_its_own_never_uses_the_pool(api, make_kf_app):
    app, client, _ = make_kf_app()
    pool = recording_pool(app)
    assert client.send_text("nothing matches").body == "success"
    assert client.send_event("CLICK", "OTHER").body == "success"
    assert pool.submitted == []
    pool.shutdown()


def test_a_slow_bot_handler_still_gets_the_deadline(api, make_kf_app):
    release = threading.Event()
    router = MessageRouter()
    router.add(TEXT, lambda message: release.wait(10) and "终于")
    app, client, _ = make_kf_app(router=router, KF_REPLY_BUDGET=0.2)
    pool = recording_pool(app)
    api.sandbox.interact("oUser", "message")
    assert client.send_text("你好", sender="oUser").body == "success"
    assert len(pool.submitted) == 1
    release.set()
    eventually(lambda: api.sandbox.sent)
    assert api.sandbox.sent[0]["text"] == {"content": "终于"}
    pool.shutdown()


def test_no_deadline_without_api_credentials(make_app):
    app = make_app(KF_REPLY_BUDGET=0.01)
    assert app.extensions["kf_plugin"].webhook.late is None


def test_background_jobs_use_the_bots_scheduler(api, make_kf_app):
    from apscheduler.schedulers.background import BackgroundScheduler
    scheduler = BackgroundScheduler()
    app, client, plugin = make_kf_app(plugin_options={"scheduler": scheduler})
    client.send_text("hello")
    job = scheduler.get_job(f"kf_plugin:{api.sandbox.appid}:online-agents")
    assert job is not None and not scheduler.running     # added, but starting it is the bot's business
    assert job.coalesce and job.max_instances == 1


def test_own_scheduler_starts_on_the_first_request(api, make_kf_app):
    app, client, plugin = make_kf_app()
    assert plugin.jobs.scheduler is None                  # nothing runs before a request is served
    client.send_text("hello")
    assert plugin.jobs.scheduler.running
    eventually(lambda: api.sandbox.calls_to("/cgi-bin/customservice/getonlinekflist"))
    plugin.jobs.shutdown()
    assert not plugin.jobs.scheduler.running


def test_admin_requires_credentials(make_app):
    plugin = make_app().extensions["kf_plugin"].plugin
    with pytest.raises(Exception, match="set KF_APPID and KF_SECRET"):
        plugin.admin
    assert plugin.agents is None


# -- the lifecycle of these hand-offs ---------------------------------------------------------------------------

def test_hand_off_hooks_registered_after_init_app_run(api, make_kf_app):
    _, client, plugin = make_kf_app()
    seen = []
    plugin.on_handoff("request")(seen.append)     # after init_app, as most bots write it
    assert user_says(api, client, "通知").message_type == "transfer_customer_service"
    eventually(lambda: seen)
    assert [(t.change.kind, t.after.openid, t.after.reason) for t in seen] == [("request", "oUser", "with-notice")]


def test_an_agent_accepting_a_session_in_the_second_it_was_opened_is_not_taken_as_stale(api, make_kf_app):
    api.sandbox.add_agent("wang@gh_test", "小王", wx="wang_wechat", online=True)
    app, client, plugin = make_kf_app()
    assert user_clicks(api, client, "TALK").content == "正在为您接入客服"
    # WeChat's kf_create_session, dated in whole seconds: the same second as the hand-off, or even the one before
    # it by the bot's fractional clock.
    assert client.send_event("kf_create_session", sender="oUser", create_time=int(time.time()),
                             extra={"KfAccount": "wang@gh_test"}).status == 200
    with app.app_context():
        conversation = plugin.conversation("oUser")
        [record] = plugin.handoffs(0)
    assert (conversation.stage.value, conversation.agent) == ("with_agent", "wang@gh_test")
    assert (record.reason, record.agent) == ("menu-session", "wang@gh_test")   # the rule's, not "agent"


def test_a_session_rule_with_nobody_online_leaves_a_refused_record(api, make_kf_app):
    app, client, plugin = make_kf_app()
    assert user_clicks(api, client, "TALK").content == "客服暂时不在线，请留言"
    with app.app_context():
        assert plugin.conversation("oUser").stage.value == "bot"
        [record] = plugin.handoffs(0)
    assert (record.reason, record.outcome.value) == ("menu-session", "refused")
