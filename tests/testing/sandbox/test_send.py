"""Custom messages over HTTP: every type, body checks, sending as an agent."""
from __future__ import annotations

import copy

import pytest

SEND = "/cgi-bin/message/custom/send"
USER = "oUser1"

BODIES = {
    "text": {"content": "你好 <a href=\"https://example.com\">link</a>"},
    "image": {"media_id": "MEDIA_ID"},
    "voice": {"media_id": "MEDIA_ID"},
    "video": {"media_id": "MEDIA_ID", "thumb_media_id": "THUMB", "title": "t", "description": "d"},
    "music": {"title": "t", "description": "d", "musicurl": "http://m", "hqmusicurl": "http://hq",
              "thumb_media_id": "THUMB"},
    "news": {"articles": [{"title": "t", "description": "d", "url": "http://u", "picurl": "http://p"}]},
    "mpnews": {"media_id": "MEDIA_ID"},
    "mpnewsarticle": {"article_id": "ARTICLE_ID"},
    "msgmenu": {"head_content": "你对本次服务是否满意？", "list": [{"id": "101", "content": "满意"},
                                                          {"id": 102, "content": "不满意"}],
                "tail_content": "欢迎再次光临"},
    "wxcard": {"card_id": "CARD_ID"},
    "miniprogrampage": {"title": "t", "appid": "wxmini", "pagepath": "pages/index", "thumb_media_id": "THUMB"},
}


def message(msgtype: str, touser: str = USER, **extra) -> dict:
    return {"touser": touser, "msgtype": msgtype, msgtype: copy.deepcopy(BODIES[msgtype]), **extra}


@pytest.fixture
def user(sandbox):
    sandbox.interact(USER, "payment")  # unlimited: these tests are about bodies, not quotas
    return USER


def test_all_eleven_types_exist():
    from kf_plugin.testing.sandbox.messages import MESSAGE_TYPES
    assert sorted(MESSAGE_TYPES) == sorted(BODIES)


@pytest.mark.parametrize("msgtype", sorted(BODIES))
def test_every_type_is_delivered(api, sandbox, user, clock, msgtype):
    answer = api.post(SEND, message(msgtype))
    assert (answer["errcode"], answer["errmsg"]) == (0, "ok")
    assert sandbox.sent == [{"touser": USER, "msgtype": msgtype, msgtype: BODIES[msgtype], "kf_account": None,
                             "time": clock.now}]
    assert sandbox.records == []  # only messages sent as an agent are recorded


@pytest.mark.parametrize("msgtype, text", [("text", BODIES["text"]["content"]), ("image", "[image]")])
def test_sending_as_an_agent_is_recorded(api, sandbox, user, clock, msgtype, text):
    sandbox.add_agent("kf1@test", "Alice")
    assert api.post(SEND, message(msgtype, customservice={"kf_account": "kf1@test"}))["errcode"] == 0
    assert sandbox.sent[-1]["kf_account"] == "kf1@test"
    assert sandbox.records == [{"msgid": 1, "openid": USER, "opercode": 2002, "text": text,
                                "time": int(clock.now), "worker": "kf1@test"}]


def _without(msgtype: str, field: str) -> dict:
    body = message(msgtype)
    del body[msgtype][field]
    return body


def _with(msgtype: str, **fields) -> dict:
    body = message(msgtype)
    body[msgtype].update(fields)
    return body


@pytest.mark.parametrize("body, expected", [
    ({"msgtype": "text", "text": {"content": "x"}}, 40003),
    (message("text", touser=""), 40003),
    ({"touser": USER, "text": {"content": "x"}}, 40008),
    ({"touser": USER, "msgtype": "sticker", "sticker": {}}, 40008),
    ({"touser": USER, "msgtype": "text"}, 47001),
    ({"touser": USER, "msgtype": "text", "text": "hi"}, 47001),
    (_without("text", "content"), 44004),
    (_with("text", content=""), 44004),
    (_with("text", content="字" * 682 + "ab"), 0),  # 2048 bytes
    (_with("text", content="字" * 682 + "abc"), 45002),  # 2049 bytes
    (_without("image", "media_id"), 40007),
    (_without("voice", "media_id"), 40007),
    (_without("video", "media_id"), 40007),
    (_without("video", "thumb_media_id"), 40007),
    (_without("video", "title"), 0),
    (_without("music", "musicurl"), 47001),
    (_without("music", "hqmusicurl"), 47001),
    (_without("music", "thumb_media_id"), 40007),
    (_without("music", "title"), 0),
    (_with("news", articles=[]), 44003),
    (_with("news", articles=BODIES["news"]["articles"] * 2), 45008),
    (_with("news", articles=[{"title": "t"}]), 47001),
    (_with("news", articles=[{"url": "http://u"}]), 47001),
    (_without("mpnews", "media_id"), 40007),
    (_without("mpnewsarticle", "article_id"), 47001),
    (_with("msgmenu", list=[]), 47001),
    (_with("msgmenu", list=[{"id": "1"}]), 47001),
    (_with("msgmenu", list=[{"content": "x"}]), 47001),
    (_without("msgmenu", "head_content"), 0),
    (_without("wxcard", "card_id"), 47001),
    (_without("miniprogrampage", "title"), 47001),
    (_without("miniprogrampage", "appid"), 47001),
    (_without("miniprogrampage", "pagepath"), 47001),
    (_without("miniprogrampage", "thumb_media_id"), 40007),
    (message("text", customservice={"kf_account": "nobody@test"}), 65401),
    (message("text", customservice="kf1@test"), 47001),
    (message("text", customservice={}), 47001),
    (None, 44002),
])
def test_body_checks(api, sandbox, user, body, expected):
    answer = api.post(SEND, body)
    assert answer["errcode"] == expected
    assert len(sandbox.sent) == (1 if expected == 0 else 0)


def test_format_errors_name_the_field(api, user):
    answer = api.post(SEND, _without("miniprogrampage", "pagepath"))
    assert answer["errmsg"].startswith("data format error hint: [miniprogrampage.pagepath missing] rid: ")


@pytest.mark.parametrize("raw, expected", [(b"", 44002), (b"{oops", 47001), (b'"text"', 47001)])
def test_unreadable_bodies(api, user, raw, expected):
    assert api.post_raw(SEND, raw)["errcode"] == expected


def test_refused_sends_use_no_quota(api, sandbox):
    sandbox.interact(USER, "click")  # 3 sends
    for _ in range(5):
        assert api.post(SEND, _with("text", content=""))["errcode"] == 44004
    assert [api.post(SEND, message("text"))["errcode"] for _ in range(4)] == [0, 0, 0, 45047]
