"""KfAdmin against the sandbox over real HTTP: exact requests, typed results, errors, the window."""
import pytest

from kf_plugin.admin import MSG_TYPES, KfAdmin, OnlineAgent, Record, Session, WaitingUser
from kf_plugin.errors import (
    AgentOfflineError, KfAccountError, OutsideWindowError, QuotaExceededError, SessionError, WeChatAPIError,
)
from kf_plugin.window import WindowTracker


def last(api, path):
    return api.sandbox.calls_to(path)[-1]


@pytest.fixture
def staffed(api):
    api.sandbox.add_agent("wang@gh_test", "小王", wx="wang_wx", online=True)
    api.sandbox.add_agent("li@gh_test", "小李", wx="li_wechat", online=True)
    api.sandbox.add_agent("zhao@gh_test", "小赵")
    return api


def test_account_calls_send_the_documented_bodies(api, admin):
    admin.add_account("test1@test", "客服1")
    assert last(api, "/customservice/kfaccount/add").body == {"kf_account": "test1@test", "nickname": "客服1"}
    admin.update_account("test1@test", "客服一")
    assert last(api, "/customservice/kfaccount/update").body == {"kf_account": "test1@test", "nickname": "客服一"}
    admin.invite_worker("test1@test", "someone_wx")
    assert last(api, "/customservice/kfaccount/inviteworker").body == {"kf_account": "test1@test",
                                                                      "invite_wx": "someone_wx"}
    [agent] = admin.agents()
    assert (agent.kf_account, agent.nickname, agent.invite_wx, agent.invite_status) == (
        "test1@test", "客服一", "someone_wx", "waiting")
    admin.delete_account("test1@test")
    call = last(api, "/customservice/kfaccount/del")
    assert (call.method, call.body) == ("POST", {"kf_account": "test1@test"})
    assert admin.agents() == []


def test_avatar_upload_is_multipart(api, admin, tmp_path):
    admin.add_account("a@test", "A")
    jpeg = tmp_path / "a.jpg"
    jpeg.write_bytes(b"\xff\xd8\xff\xe0" + b"0" * 100)
    admin.upload_avatar("a@test", jpeg)
    call = last(api, "/customservice/kfaccount/uploadheadimg")
    assert call.query["kf_account"] == "a@test" and "media" in str(call.body)
    assert admin.agents()[0].headimgurl.startswith("http")
    with pytest.raises(WeChatAPIError):
        admin.upload_avatar("a@test", b"not a jpeg")


@pytest.mark.parametrize("call, errcode, kind", [
    (lambda a: a.add_account("bad account", "x"), 65404, KfAccountError),
    (lambda a: a.add_account("a@test", ""), 65403, KfAccountError),
    (lambda a: a.update_account("ghost@test", "x"), 65401, KfAccountError),
    (lambda a: a.open_session("oUser", "zhao@gh_test"), 65402, KfAccountError),
    (lambda a: a.close_session("oUser", "wang@gh_test"), 65413, SessionError),
])
def test_error_families(staffed, admin, call, errcode, kind):
    staffed.sandbox.interact("oUser", "message")
    with pytest.raises(kind) as info:
        call(admin)
    assert info.value.errcode == errcode and info.value.meaning in str(info.value)


def test_duplicate_account(api, admin):
    admin.add_account("a@test", "A")
    with pytest.raises(KfAccountError, match="65406.*already exists"):
        admin.add_account("a@test", "A")


def test_online_agents_and_sessions(staffed, admin):
    staffed.sandbox.interact("oUser", "message")
    assert {a.kf_account for a in admin.online_agents()} == {"wang@gh_test", "li@gh_test"}
    assert all(isinstance(a, OnlineAgent) and a.status == 1 and a.accepted_case == 0 for a in admin.online_agents())
    admin.open_session("oUser", "wang@gh_test")
    assert last(staffed, "/customservice/kfsession/create").body == {"kf_account": "wang@gh_test", "openid": "oUser"}
    session = admin.session("oUser")
    assert isinstance(session, Session) and session.kf_account == "wang@gh_test" and session.created > 0
    assert [s.openid for s in admin.sessions("wang@gh_test")] == ["oUser"]
    assert {a.kf_account: a.accepted_case for a in admin.online_agents()}["wang@gh_test"] == 1
    with pytest.raises(SessionError, match="65414"):
        admin.open_session("oUser", "li@gh_test")
    admin.close_session("oUser", "wang@gh_test")
    assert admin.session("oUser") is None
    staffed.sandbox.set_online("li@gh_test", False)
    with pytest.raises(AgentOfflineError, match="65415.*not online"):
        admin.open_session("oUser", "li@gh_test")


def test_wait_queue(api, admin):
    for i in range(3):
        api.sandbox.interact(f"o{i}", "message")
        api.sandbox.enqueue(f"o{i}")
    queue = admin.waiting()
    assert queue.count == 3 and [u.openid for u in queue.users] == ["o0", "o1", "o2"]
    assert all(isinstance(u, WaitingUser) for u in queue.users)


SENDS = [
    ("text", lambda a: a.send_text("oU", "你好"), {"content": "你好"}),
    ("image", lambda a: a.send_image("oU", "MEDIA"), {"media_id": "MEDIA"}),
    ("voice", lambda a: a.send_voice("oU", "MEDIA"), {"media_id": "MEDIA"}),
    ("video", lambda a: a.send_video("oU", "M", "T", "title", "desc"),
     {"media_id": "M", "thumb_media_id": "T", "title": "title", "description": "desc"}),
    ("music", lambda a: a.send_music("oU", "http://m", "http://hq", "T", "t", "d"),
     {"title": "t", "description": "d", "musicurl": "http://m", "hqmusicurl": "http://hq", "thumb_media_id": "T"}),
    ("news", lambda a: a.send_news("oU", "标题", "http://u", "d", "http://p"),
     {"articles": [{"title": "标题", "description": "d", "url": "http://u", "picurl": "http://p"}]}),
    ("mpnews", lambda a: a.send_mpnews("oU", "MEDIA"), {"media_id": "MEDIA"}),
    ("mpnewsarticle", lambda a: a.send_mpnewsarticle("oU", "ART"), {"article_id": "ART"}),
    ("msgmenu", lambda a: a.send_msgmenu("oU", "满意吗？", [("1", "满意"), ("2", "不满意")], "谢谢"),
     {"head_content": "满意吗？", "list": [{"id": "1", "content": "满意"}, {"id": "2", "content": "不满意"}],
      "tail_content": "谢谢"}),
    ("wxcard", lambda a: a.send_wxcard("oU", "CARD"), {"card_id": "CARD"}),
    ("miniprogrampage", lambda a: a.send_miniprogrampage("oU", "t", "wxapp", "pages/i", "T"),
     {"title": "t", "appid": "wxapp", "pagepath": "pages/i", "thumb_media_id": "T"}),
]


def test_all_eleven_types_are_covered():
    assert sorted(t for t, _, _ in SENDS) == sorted(MSG_TYPES)


@pytest.mark.parametrize("msgtype, send, body", SENDS, ids=[s[0] for s in SENDS])
def test_send_every_type(api, admin, msgtype, send, body):
    api.sandbox.interact("oU", "message")
    send(admin)
    assert last(api, "/cgi-bin/message/custom/send").body == {"touser": "oU", "msgtype": msgtype, msgtype: body}
    assert api.sandbox.sent[-1]["msgtype"] == msgtype


def test_send_as_an_agent(staffed, admin):
    staffed.sandbox.interact("oU", "message")
    admin.send_text("oU", "我是小王", as_account="wang@gh_test")
    assert last(staffed, "/cgi-bin/message/custom/send").body["customservice"] == {"kf_account": "wang@gh_test"}
    assert staffed.sandbox.sent[-1]["kf_account"] == "wang@gh_test"


@pytest.mark.parametrize("msgtype, body, error", [
    ("sticker", {}, "unknown message type 'sticker'"),
    ("video", {"media_id": "m"}, "a video message needs thumb_media_id, title, description"),
])
def test_bad_sends_are_refused_before_any_call(api, admin, msgtype, body, error):
    with pytest.raises(ValueError, match=error):
        admin.send("oU", msgtype, body)
    assert api.sandbox.calls == []


def test_wechat_decides_without_a_tracker(api, admin):
    with pytest.raises(OutsideWindowError, match="45015 on /cgi-bin/message/custom/send"):
        admin.send_text("never-seen", "x")


def test_strict_window_refuses_before_the_call_and_consumes_on_success(api, client):
    tracker = WindowTracker(clock=api.clock)
    admin = KfAdmin(client, window=tracker)
    api.sandbox.interact("oU", "click")
    tracker.record_action("oU", "click")
    for _ in range(3):
        admin.send_text("oU", "x")
    sends = len(api.sandbox.calls_to("/cgi-bin/message/custom/send"))
    with pytest.raises(QuotaExceededError, match="refused before calling WeChat"):
        admin.send_text("oU", "x")
    assert len(api.sandbox.calls_to("/cgi-bin/message/custom/send")) == sends == 3
    # --no-strict: WeChat decides, and its answer is believed.
    with pytest.raises(QuotaExceededError, match="45047 on /cgi-bin/message/custom/send"):
        admin.send_text("oU", "x", strict=False)
    assert len(api.sandbox.calls_to("/cgi-bin/message/custom/send")) == 4


def test_wechat_answers_correct_the_tracker(api, client):
    tracker = WindowTracker(clock=api.clock)
    admin = KfAdmin(client, window=tracker)
    tracker.record_action("oU", "message")          # the tracker believes 5 sends remain; WeChat knows none
    with pytest.raises(OutsideWindowError):
        admin.send_text("oU", "x")
    with pytest.raises(OutsideWindowError, match="refused before calling WeChat"):
        admin.send_text("oU", "x")
    assert len(api.sandbox.calls_to("/cgi-bin/message/custom/send")) == 1
    unknown = KfAdmin(client, window=WindowTracker(clock=api.clock, unknown_users="refuse"))
    with pytest.raises(OutsideWindowError, match="unknown_users: refuse"):
        unknown.send_text("someone", "x")


def test_typing(api, admin):
    api.sandbox.interact("oU", "message")
    admin.typing("oU")
    assert last(api, "/cgi-bin/message/custom/typing").body == {"touser": "oU", "command": "Typing"}
    with pytest.raises(WeChatAPIError, match="45081"):
        admin.typing("oU")
    admin.typing("oU", False)
    assert last(api, "/cgi-bin/message/custom/typing").body["command"] == "CancelTyping"
    api.clock.advance(31)
    with pytest.raises(WeChatAPIError, match="45080"):
        admin.typing("oU")


def test_records_page_by_msgid_and_split_into_days(api, admin):
    start = int(api.clock.now) - 3 * 86400
    for i in range(25):  # spread over three days
        api.sandbox.add_record(f"o{i % 3}", f"line {i}", worker="wang@gh_test", at=start + i * 3 * 3600)
    records = list(admin.records(start, start + 3 * 86400, page_size=4))
    assert [r.text for r in records] == [f"line {i}" for i in range(25)]
    assert isinstance(records[0], Record) and records[0].as_dict()["worker"] == "wang@gh_test"
    calls = [c.body for c in api.sandbox.calls_to("/customservice/msgrecord/getmsglist")]
    assert all(c["endtime"] - c["starttime"] < 86400 and c["number"] == 4 for c in calls)
    windows = sorted({(c["starttime"], c["endtime"]) for c in calls})
    assert windows[0][0] == start and windows[-1][1] == start + 3 * 86400
    assert all(b[0] == a[1] + 1 for a, b in zip(windows, windows[1:]))  # no gap, no overlap
    assert any(c["msgid"] > 1 for c in calls)  # it paged


@pytest.mark.parametrize("since, until, size, error", [(10, 5, 10, "until"), (0, 5, 0, "page_size"),
                                                       (0, 5, 10001, "page_size")])
def test_records_arguments(admin, since, until, size, error):
    with pytest.raises(ValueError, match=error):
        list(admin.records(since, until, page_size=size))


def test_a_refusal_says_whether_the_window_predicted_it_or_wechat_answered(api, client):
    tracker = WindowTracker(clock=api.clock)
    admin = KfAdmin(client, window=tracker)
    tracker.record_action("oU", "message")
    with pytest.raises(OutsideWindowError) as from_wechat:
        admin.send_text("oU", "x")
    assert from_wechat.value.predicted is False and from_wechat.value.path == "/cgi-bin/message/custom/send"
    with pytest.raises(OutsideWindowError) as predicted:
        admin.send_text("oU", "x")
    assert predicted.value.predicted is True and predicted.value.errcode == 45015
