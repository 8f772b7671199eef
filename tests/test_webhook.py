"""The push pipeline through the Flask app: hostile requests, verification, samples, replies, crypto."""
from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple, Union

import pytest
import xmltodict
from werkzeug.test import EnvironBuilder

from kf_plugin import Keyword, MessageRouter, Rule
from kf_plugin.errors import BadPush
from kf_plugin.replies import TransferReply, cdata, render_reply
from kf_plugin.security import PushCipher, sign
from kf_plugin.testing import PushSigner, WeChatTestClient, message_xml

from .conftest import AES_KEY, APPID, TOKEN, FakeClock, sample

T0 = 1_700_000_000
NONCE = "1234567890"
OTHER_KEY = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"
XML_TYPE = "application/xml; charset=utf-8"
TEXT_TYPE = "text/plain; charset=utf-8"
COMPACT = re.compile(r">\s+<")

PLAIN_SIGNER = PushSigner(TOKEN, clock=FakeClock(T0))
SAFE_SIGNER = PushSigner(TOKEN, AES_KEY, APPID, clock=FakeClock(T0))
SIGNERS = {"plain": PLAIN_SIGNER, "safe": SAFE_SIGNER}


# -- request builders ------------------------------------------------------------------------------

def text_xml(text: str = "hello", **fields) -> str:
    fields.setdefault("create_time", T0)
    fields.setdefault("msg_id", 7001)
    return message_xml(text=text, **fields)


def query(timestamp: Optional[str] = None, nonce: str = NONCE, token: str = TOKEN, **extra: str) -> Dict[str, str]:
    """A query signed like WeChat's (``timestamp`` defaults to the app's time)."""
    ts = str(T0) if timestamp is None else timestamp
    result = {"signature": sign(token, ts, nonce), "timestamp": ts, "nonce": nonce}
    result.update(extra)
    return result


def without(mapping: Dict[str, str], *names: str) -> Dict[str, str]:
    return {k: v for k, v in mapping.items() if k not in names}


def envelope(encrypted: str, account: str = "gh_account", extra: str = "") -> bytes:
    return f"<xml><ToUserName>{cdata(account)}</ToUserName>{extra}<Encrypt>{cdata(encrypted)}</Encrypt></xml>".encode()


def aes_query(encrypted: str, timestamp: Optional[str] = None, nonce: str = NONCE, **extra: str) -> Dict[str, str]:
    result = query(timestamp, nonce)
    result.update(encrypt_type="aes", msg_signature=sign(TOKEN, result["timestamp"], nonce, encrypted),
                  openid="oUser0123456789")
    result.update(extra)
    return result


def encrypt_with(key: str, xml: str, appid: str = APPID) -> str:
    return PushCipher(TOKEN, key, appid).encrypt_text(xml)


@dataclass
class Req:
    query: Dict[str, str]
    body: bytes
    environ: Dict[str, object] = field(default_factory=dict)


def signed(xml: str, mode: str = "plain", **options) -> Req:
    q, body = SIGNERS[mode].sign(xml, **options)
    return Req(q, body)


def raw(body, **query_extra) -> Req:
    """A correctly signed plain-mode query with an arbitrary body."""
    return Req(query(**query_extra), body if isinstance(body, bytes) else body.encode("utf-8"))


def lying_length(claimed: Optional[str]) -> Req:
    big = text_xml("x" * (64 * 1024)).encode()
    environ: Dict[str, object] = {"wsgi.input_terminated": True, "wsgi.input": io.BytesIO(big)}
    if claimed is None:
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    environ["CONTENT_LENGTH"] = claimed
    return Req(query(), big, environ)


def aes(encrypted: str, **query_extra) -> Req:
    return Req(aes_query(encrypted, **query_extra), envelope(encrypted))


BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
    + ']><xml><ToUserName>gh_account</ToUserName><FromUserName>oUser</FromUserName>'
    f'<CreateTime>{T0}</CreateTime><MsgType>text</MsgType><Content>&lol9;</Content><MsgId>1</MsgId></xml>'
)
XXE = (
    '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    '<xml><ToUserName>gh_account</ToUserName><FromUserName>oUser</FromUserName>'
    f'<CreateTime>{T0}</CreateTime><MsgType>text</MsgType><Content>&xxe;</Content><MsgId>1</MsgId></xml>'
)


def fields_xml(**fields: str) -> str:
    """A push from raw field XML snippets (values are inserted verbatim)."""
    base = {"ToUserName": "<![CDATA[gh_account]]>", "FromUserName": "<![CDATA[oUser]]>",
            "CreateTime": str(T0), "MsgType": "<![CDATA[text]]>", "Content": "<![CDATA[hello]]>", "MsgId": "42"}
    base.update(fields)
    return "<xml>" + "".join(f"<{k}>{v}</{k}>" for k, v in base.items() if v is not None) + "</xml>"


@dataclass(frozen=True)
class Hostile:
    id: str
    app: str                     # "plain" or "safe"
    build: Callable[[], Req]
    status: int
    reason: Union[str, Tuple[str, ...]]  # a fragment of the (decrypted) answer, or alternatives


_VALID = text_xml()
_SIG = query()["signature"]

HOSTILE = [
    # -- signature ----------------------------------------------------------------------------------
    Hostile("missing-signature", "plain", lambda: Req(without(query(), "signature"), _VALID.encode()),
            403, "signature is missing"),
    Hostile("empty-signature", "plain", lambda: Req({**query(), "signature": ""}, _VALID.encode()),
            403, "signature is missing"),
    Hostile("wrong-signature", "plain", lambda: Req({**query(), "signature": "0" * 40}, _VALID.encode()),
            403, "signature does not match"),
    Hostile("signature-of-other-params", "plain",
            lambda: Req({**query(), "signature": query(nonce="999")["signature"]}, _VALID.encode()),
            403, "signature does not match"),
    Hostile("signature-with-other-token", "plain", lambda: Req(query(token="not-the-token"), _VALID.encode()),
            403, "signature does not match"),
    Hostile("uppercase-hex-signature", "plain", lambda: Req({**query(), "signature": _SIG.upper()}, _VALID.encode()),
            403, "signature does not match"),
    Hostile("non-ascii-signature", "plain", lambda: Req({**query(), "signature": "签名" + _SIG[2:]}, _VALID.encode()),
            403, "signature does not match"),
    Hostile("signature-with-suffix", "plain", lambda: Req({**query(), "signature": _SIG + "0"}, _VALID.encode()),
            403, "signature does not match"),
    Hostile("signature-prefix-only", "plain", lambda: Req({**query(), "signature": _SIG[:20]}, _VALID.encode()),
            403, "signature does not match"),
    # -- timestamp and nonce -------------------------------------------------------------------------
    Hostile("missing-timestamp-signed-empty", "plain",
            lambda: Req(without(query(timestamp=""), "timestamp"), _VALID.encode()),
            403, "timestamp is not a unix time"),
    Hostile("timestamp-removed-after-signing", "plain", lambda: Req(without(query(), "timestamp"), _VALID.encode()),
            403, "signature does not match"),
    Hostile("non-numeric-timestamp", "plain", lambda: raw(_VALID, timestamp="yesterday"),
            403, "timestamp is not a unix time"),
    Hostile("negative-timestamp", "plain", lambda: raw(_VALID, timestamp=str(-T0)),
            403, "timestamp is not a unix time"),
    Hostile("fractional-timestamp", "plain", lambda: raw(_VALID, timestamp=f"{T0}.5"),
            403, "timestamp is not a unix time"),
    Hostile("superscript-digit-timestamp", "plain", lambda: raw(_VALID, timestamp="¹⁷⁰⁰⁰⁰⁰⁰⁰⁰"),
            403, "timestamp is not a unix time"),
    Hostile("stale-timestamp", "plain", lambda: raw(_VALID, timestamp=str(T0 - 301)),
            403, "away from now"),
    Hostile("very-old-timestamp", "plain", lambda: raw(_VALID, timestamp="0"), 403, "away from now"),
    Hostile("future-timestamp", "plain", lambda: raw(_VALID, timestamp=str(T0 + 301)), 403, "away from now"),
    Hostile("huge-timestamp", "plain", lambda: raw(_VALID, timestamp="9" * 40), 403, "timestamp"),
    Hostile("twelve-digit-timestamp", "plain", lambda: raw(_VALID, timestamp="9" * 12), 403, "away from now"),
    Hostile("stale-timestamp-safe-mode", "safe", lambda: signed(_VALID, "safe", timestamp=str(T0 - 3600)),
            403, "away from now"),
    Hostile("missing-nonce", "plain", lambda: Req(without(query(), "nonce"), _VALID.encode()),
            403, "signature does not match"),
    Hostile("nonce-changed-after-signing", "plain", lambda: Req({**query(), "nonce": "666"}, _VALID.encode()),
            403, "signature does not match"),
    Hostile("timestamp-changed-after-signing", "plain",
            lambda: Req({**query(), "timestamp": str(T0 + 1)}, _VALID.encode()), 403, "signature does not match"),
    # -- size ----------------------------------------------------------------------------------------
    Hostile("body-over-max-body", "plain", lambda: raw(_VALID.encode() + b" " * (64 * 1024)), 413, "larger than"),
    Hostile("body-over-max-body-safe", "safe", lambda: Req(aes_query("x"), b"<xml>" + b"A" * (64 * 1024) + b"</xml>"),
            413, "larger than"),
    Hostile("content-length-lies-small", "plain", lambda: lying_length("100"), 413, "larger than"),
    Hostile("content-length-missing-chunked", "plain", lambda: lying_length(None), 413, "larger than"),
    Hostile("body-shorter-than-content-length", "plain",
            lambda: Req(query(), b"", {"wsgi.input": io.BytesIO(_VALID.encode()[:40]), "CONTENT_LENGTH": "1000"}),
            400, "the body could not be read"),
    # -- body is not a push --------------------------------------------------------------------------
    Hostile("empty-body", "plain", lambda: raw(b""), 400, "body is empty"),
    Hostile("whitespace-body", "plain", lambda: raw(b" \r\n\t "), 400, "body is empty"),
    Hostile("not-xml", "plain", lambda: raw("hello, world"), 400, "not a WeChat push"),
    Hostile("json-body", "plain", lambda: raw('{"MsgType": "text", "Content": "人工"}'), 400, "not a WeChat push"),
    Hostile("truncated-xml", "plain", lambda: raw(_VALID[: len(_VALID) // 2]), 400, "not a WeChat push"),
    Hostile("two-roots", "plain", lambda: raw(_VALID + _VALID), 400, "not a WeChat push"),
    Hostile("no-xml-root", "plain", lambda: raw(_VALID.replace("<xml>", "<root>").replace("</xml>", "</root>")),
            400, "not a WeChat push"),
    Hostile("empty-xml-root", "plain", lambda: raw("<xml></xml>"), 400, "not a WeChat push"),
    Hostile("no-msgtype", "plain", lambda: raw(fields_xml(MsgType=None)), 400, "MsgType"),
    Hostile("empty-msgtype", "plain", lambda: raw(fields_xml(MsgType="")), 400, "not a WeChat push"),
    Hostile("missing-fromusername", "plain", lambda: raw(fields_xml(FromUserName=None)), 400, "FromUserName"),
    Hostile("missing-tousername", "plain", lambda: raw(fields_xml(ToUserName=None)), 400, "ToUserName"),
    Hostile("missing-createtime", "plain", lambda: raw(fields_xml(CreateTime=None)), 400, "CreateTime"),
    Hostile("createtime-not-a-number", "plain", lambda: raw(fields_xml(CreateTime="yesterday")), 400, "CreateTime"),
    Hostile("createtime-negative", "plain", lambda: raw(fields_xml(CreateTime="-1")), 400, "CreateTime"),
    Hostile("createtime-superscript-digits", "plain", lambda: raw(fields_xml(CreateTime="¹²³")), 400, "CreateTime"),
    Hostile("duplicated-fromusername", "plain",
            lambda: raw(fields_xml(FromUserName="a</FromUserName><FromUserName>b")), 400, "FromUserName"),
    Hostile("duplicated-msgtype", "plain", lambda: raw(fields_xml(MsgType="text</MsgType><MsgType>text")),
            400, "not a WeChat push"),
    Hostile("duplicated-createtime", "plain",
            lambda: raw(fields_xml(CreateTime=f"{T0}</CreateTime><CreateTime>{T0}")), 400, "CreateTime"),
    Hostile("nested-element-in-tousername", "plain", lambda: raw(fields_xml(ToUserName="<a>gh</a>")),
            400, "ToUserName"),
    Hostile("nested-element-in-msgtype", "plain", lambda: raw(fields_xml(MsgType="<a>text</a>")),
            400, "not a WeChat push"),
    Hostile("empty-fromusername", "plain", lambda: raw(fields_xml(FromUserName="")), 400, "FromUserName"),
    Hostile("event-with-nested-eventkey", "plain",
            lambda: raw(fields_xml(MsgType="event", Event="subscribe", EventKey="<a>qrscene_1</a>",
                                   Content=None, MsgId=None)), 400, "not a WeChat push"),
    Hostile("billion-laughs", "plain", lambda: raw(BILLION_LAUGHS), 400, "not a WeChat push"),
    Hostile("external-entity-xxe", "plain", lambda: raw(XXE), 400, "not a WeChat push"),
    Hostile("gbk-body", "plain", lambda: raw(text_xml("转人工").encode("gbk")), 400, "not UTF-8"),
    Hostile("lone-0xff", "plain", lambda: raw(_VALID.encode().replace(b"hello", b"hel\xfflo")), 400, "not UTF-8"),
    Hostile("utf16-body", "plain", lambda: raw(text_xml("转人工").encode("utf-16")), 400, "not UTF-8"),
    Hostile("utf16be-no-bom", "plain", lambda: raw(text_xml("hello").encode("utf-16-be")),
            400, "character XML does not allow (U+0000)"),
    Hostile("utf16le-no-bom", "plain", lambda: raw(text_xml("hello").encode("utf-16-le")),
            400, "character XML does not allow (U+0000)"),
    Hostile("control-character", "plain", lambda: raw(text_xml("he\x01llo")),
            400, "character XML does not allow (U+0001)"),
    # -- safe mode -----------------------------------------------------------------------------------
    Hostile("plain-push-to-safe-app", "safe", lambda: raw(_VALID), 403, "safe mode: the push must be encrypted"),
    Hostile("wrong-msg-signature", "safe",
            lambda: Req({**signed(_VALID, "safe").query, "msg_signature": "0" * 40}, signed(_VALID, "safe").body),
            403, "msg_signature does not match"),
    Hostile("missing-msg-signature", "safe",
            lambda: (lambda r: Req(without(r.query, "msg_signature"), r.body))(signed(_VALID, "safe")),
            403, "msg_signature does not match"),
    Hostile("msg-signature-of-other-encrypt", "safe",
            lambda: Req(aes_query(encrypt_with(AES_KEY, text_xml("other"))),
                        envelope(encrypt_with(AES_KEY, _VALID))), 403, "msg_signature does not match"),
    Hostile("safe-push-with-wrong-signature", "safe",
            lambda: (lambda r: Req({**r.query, "signature": "0" * 40}, r.body))(signed(_VALID, "safe")),
            403, "signature does not match"),
    Hostile("encrypt-not-base64", "safe", lambda: aes("!!!this is not base64!!!"), 400, "cannot decrypt"),
    Hostile("encrypt-base64-of-garbage", "safe", lambda: aes("QUJDREVGR0hJSktMTU5PUA=="), 400, "cannot decrypt"),
    Hostile("encrypt-non-ascii", "safe", lambda: aes("加密内容"), 400, "cannot decrypt"),
    Hostile("encrypt-with-wrong-key", "safe", lambda: aes(encrypt_with(OTHER_KEY, _VALID)), 400, "cannot decrypt"),
    Hostile("encrypt-for-another-appid", "safe", lambda: aes(encrypt_with(AES_KEY, _VALID, "wxffffffffffffffff")),
            400, "another AppID"),
    Hostile("empty-encrypt", "safe", lambda: aes(""), 400, "Encrypt"),
    Hostile("no-encrypt-element", "safe", lambda: Req(aes_query(""), b"<xml><ToUserName>gh</ToUserName></xml>"),
            400, "Encrypt"),
    Hostile("nested-encrypt", "safe", lambda: Req(aes_query(""), b"<xml><Encrypt><a>b</a></Encrypt></xml>"),
            400, "Encrypt"),
    Hostile("envelope-not-xml", "safe", lambda: Req(aes_query("x"), b"Encrypt=abc"), 400, "not an encrypted"),
    Hostile("envelope-with-entity", "safe",
            lambda: Req(aes_query("x"), b'<!DOCTYPE xml [<!ENTITY e "x">]><xml><Encrypt>&e;</Encrypt></xml>'),
            400, "not an encrypted"),
    Hostile("encrypted-plaintext-not-xml", "safe", lambda: aes(encrypt_with(AES_KEY, "hello")),
            400, "not a WeChat push"),
    Hostile("encrypted-plaintext-with-xxe", "safe", lambda: aes(encrypt_with(AES_KEY, XXE)),
            400, "not a WeChat push"),
    Hostile("encrypted-plaintext-missing-fromusername", "safe",
            lambda: aes(encrypt_with(AES_KEY, fields_xml(FromUserName=None))), 400, "FromUserName"),
    Hostile("encrypt-type-rsa", "safe",
            lambda: (lambda r: Req({**r.query, "encrypt_type": "rsa"}, r.body))(signed(_VALID, "safe")),
            400, "encrypt_type"),
    Hostile("encrypted-push-to-plain-app", "plain", lambda: signed(_VALID, "safe"), 400, "KF_ENCODING_AES_KEY"),
    Hostile("safe-body-over-limit-in-plain-app", "plain",
            lambda: Req(query(), b"<xml><Encrypt>" + b"A" * 70000 + b"</Encrypt></xml>"), 413, "larger than"),
    # -- odd but acceptable --------------------------------------------------------------------------
    Hostile("cdata-terminator-in-content", "plain",
            lambda: signed(text_xml("转人工]]><MsgType>music</MsgType><![CDATA[")), 200, "transfer_customer_service"),
    Hostile("cdata-terminator-in-content-safe", "safe",
            lambda: signed(text_xml("转人工]]><MsgType>music</MsgType><![CDATA[", msg_id=7002), "safe"),
            200, "transfer_customer_service"),
    Hostile("unknown-msgtype", "plain", lambda: signed(message_xml(msg_type="hologram", create_time=T0, msg_id=9)),
            200, "success"),
    Hostile("unknown-event", "plain", lambda: signed(message_xml(event="teleport", key="x", create_time=T0)),
            200, "success"),
    Hostile("unknown-event-safe", "safe",
            lambda: signed(message_xml(event="teleport", key="x", create_time=T0), "safe"), 200, "success"),
]


def call_wsgi(app, req: Req) -> Tuple[int, str, str]:
    """Call the app's WSGI callable directly, with a hand-made environ (for lying headers)."""
    environ = EnvironBuilder(path="/wechat", method="POST", query_string=req.query, data=b"").get_environ()
    for key, value in req.environ.items():
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value
    captured = {}

    def start_response(status, headers, exc_info=None):
        captured["status"], captured["headers"] = status, dict(headers)

    body = b"".join(app(environ, start_response))
    return int(captured["status"].split()[0]), captured["headers"]["Content-Type"], body.decode("utf-8", "replace")


def make_clocked_app(make_app, mode: str, clock=None, **config):
    if mode == "safe":
        config.setdefault("KF_ENCODING_AES_KEY", AES_KEY)
    return make_app(plugin_options={"clock": clock or FakeClock(T0)}, **config)


def test_the_hostile_table_is_big_enough():
    assert len(HOSTILE) >= 60  # the corpus the reliability suite promises
    assert len({case.id for case in HOSTILE}) == len(HOSTILE)


@pytest.mark.parametrize("case", HOSTILE, ids=lambda case: case.id)
def test_hostile_request(case: Hostile, make_app):
    app = make_clocked_app(make_app, case.app)
    req = case.build()
    if req.environ:
        status, content_type, text = call_wsgi(app, req)
    else:
        answer = WeChatTestClient(app, SIGNERS[case.app]).post(req.query, req.body)
        status, content_type, text = answer.status, answer.content_type, answer.xml
    assert status != 500, text
    assert status == case.status, text
    reasons = case.reason if isinstance(case.reason, tuple) else (case.reason,)
    assert any(reason in text for reason in reasons), text
    if status != 200:
        assert content_type == TEXT_TYPE


# -- clock window and body size boundaries ------------------------------------------------------------

@pytest.mark.parametrize("offset, config, status", [
    (-300, {}, 200),
    (300, {}, 200),
    (-301, {}, 403),
    (301, {}, 403),
    (-61, {"KF_MAX_CLOCK_SKEW": 60}, 403),
    (-60, {"KF_MAX_CLOCK_SKEW": 60}, 200),
    (-10 ** 6, {"KF_MAX_CLOCK_SKEW": 0}, 200),
    (10 ** 6, {"KF_MAX_CLOCK_SKEW": "0"}, 200),
], ids=["-300", "+300", "-301", "+301", "skew60-61", "skew60-60", "off-past", "off-future"])
def test_timestamp_window(make_app, offset, config, status):
    app = make_clocked_app(make_app, "plain", **config)
    answer = WeChatTestClient(app, PLAIN_SIGNER).send(text_xml("转人工"), timestamp=str(T0 + offset))
    assert answer.status == status
    if status == 200:
        assert answer.message_type == "transfer_customer_service"


@pytest.mark.parametrize("extra, status", [(0, 200), (1, 413)], ids=["exactly-max", "max-plus-one"])
def test_body_size_boundary(make_app, extra, status):
    limit = 1024
    app = make_clocked_app(make_app, "plain", KF_MAX_BODY=limit)
    xml = text_xml("转人工").encode()
    body = xml + b" " * (limit - len(xml) + extra)
    assert len(body) == limit + extra
    answer = WeChatTestClient(app, PLAIN_SIGNER).post(query(), body)
    assert answer.status == status
    if status == 200:
        assert answer.message_type == "transfer_customer_service"


# -- GET verification --------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["plain", "safe"])
@pytest.mark.parametrize("echostr", ["5838479218127813673", "echo with spaces & symbols <>"])
def test_get_verification_answers_echostr_plain(make_app, mode, echostr):
    app = make_clocked_app(make_app, mode)
    response = app.test_client().get("/wechat", query_string=SIGNERS[mode].verification(echostr))
    assert response.status_code == 200
    assert response.content_type == TEXT_TYPE
    assert response.get_data(as_text=True) == echostr


@pytest.mark.parametrize("mode", ["plain", "safe"])
@pytest.mark.parametrize("change, status", [
    ({"signature": "0" * 40}, 403),
    ({"signature": None}, 403),
    ({"nonce": "changed"}, 403),
    ({"echostr": None}, 400),
    ({"echostr": ""}, 400),
], ids=["bad-signature", "no-signature", "nonce-changed", "no-echostr", "empty-echostr"])
def test_get_verification_refusals(make_app, mode, change, status):
    app = make_clocked_app(make_app, mode)
    params = SIGNERS[mode].verification("secret-echo")
    for key, value in change.items():
        if value is None:
            params.pop(key)
        else:
            params[key] = value
    response = app.test_client().get("/wechat", query_string=params)
    assert response.status_code == status
    assert response.content_type == TEXT_TYPE
    assert "secret-echo" not in response.get_data(as_text=True)


# -- the public samples ------------------------------------------------------------------------------

SAMPLES = ["text.xml", "image.xml", "voice.xml", "event_click.xml", "event_kf_create_session.xml",
           "event_kf_switch_session.xml", "event_location.xml", "event_scancode_push.xml",
           "event_subscribe.xml", "event_view.xml", "text_msgmenu_click.xml"]


@pytest.mark.parametrize("mode", ["plain", "safe"])
@pytest.mark.parametrize("name", SAMPLES)
def test_samples_with_default_rules_answer_success(make_app, mode, name):
    """None of the samples matches the default rules (EVENTKEY is not CONTACT_VIP, ...)."""
    app = make_clocked_app(make_app, mode)
    answer = WeChatTestClient(app, SIGNERS[mode]).send(sample(name))
    assert answer.status == 200
    assert answer.body == "success"
    assert answer.content_type == TEXT_TYPE


ALTERED = [
    ("event_click.xml", ("EVENTKEY", "CONTACT_VIP"), "vip1@gh_example"),
    ("text.xml", ("this is a test", "我要投诉"), None),
    ("text.xml", ("this is a test", "ＨＥＬＰ 转人工"), None),
    ("voice.xml", ("腾讯微信团队", "请帮我转人工"), None),
    ("text_msgmenu_click.xml", ("满意", "客服"), None),
]


@pytest.mark.parametrize("mode", ["plain", "safe"])
@pytest.mark.parametrize("name, change, kf_account", ALTERED,
                         ids=["click-vip", "text-complaint", "text-fullwidth", "voice-human", "msgmenu-kf"])
def test_altered_samples_hit_the_default_rules(make_app, mode, name, change, kf_account):
    xml = sample(name).replace(*change)
    pushed = xmltodict.parse(xml)["xml"]
    answer = WeChatTestClient(make_clocked_app(make_app, mode), SIGNERS[mode]).send(xml)
    assert answer.status == 200
    assert answer.content_type == XML_TYPE
    assert answer.message_type == "transfer_customer_service"
    assert answer.kf_account == kf_account
    assert answer.fields["ToUserName"] == pushed["FromUserName"]
    assert answer.fields["FromUserName"] == pushed["ToUserName"]


SAMPLE_RULES = [
    Rule.build("text", keywords=["this is a test"]),
    Rule.build("image", msg_type="image", kf_account="img@test"),
    Rule.build("voice", keywords=["微信"], reply="语音收到"),
    Rule.build("click", event="CLICK", event_key="EVENTKEY", kf_account="test1@test"),
    Rule.build("subscribe", event="subscribe", reply="欢迎关注"),
    Rule.build("scan", event="scancode_push", event_key="6"),
    Rule.build("view", event="VIEW", event_key="www.qq.com", reply="view"),
    Rule.build("location", event="LOCATION", reply="位置已收到"),
    Rule.build("menu", keywords=["满意"], match="exact", reply="谢谢您的评价"),
]
SAMPLE_ANSWERS = {  # name → (MsgType, Content, KfAccount)
    "text.xml": ("transfer_customer_service", None, None),
    "image.xml": ("transfer_customer_service", None, "img@test"),
    "voice.xml": ("text", "语音收到", None),
    "event_click.xml": ("transfer_customer_service", None, "test1@test"),
    "event_kf_create_session.xml": (None, None, None),
    "event_kf_switch_session.xml": (None, None, None),
    "event_location.xml": ("text", "位置已收到", None),
    "event_scancode_push.xml": ("transfer_customer_service", None, None),
    "event_subscribe.xml": ("text", "欢迎关注", None),
    "event_view.xml": ("text", "view", None),
    "text_msgmenu_click.xml": ("text", "谢谢您的评价", None),
}


@pytest.mark.parametrize("mode", ["plain", "safe"])
@pytest.mark.parametrize("name", SAMPLES)
def test_samples_with_matching_rules(make_app, mode, name):
    app = make_app(plugin_options={"clock": FakeClock(T0), "rules": SAMPLE_RULES},
                   **({"KF_ENCODING_AES_KEY": AES_KEY} if mode == "safe" else {}))
    xml = sample(name)
    pushed = xmltodict.parse(xml)["xml"]
    answer = WeChatTestClient(app, SIGNERS[mode]).send(xml)
    msg_type, content, kf_account = SAMPLE_ANSWERS[name]
    assert answer.status == 200
    if msg_type is None:
        assert answer.body == "success"
        assert answer.content_type == TEXT_TYPE
        return
    assert answer.content_type == XML_TYPE
    assert answer.message_type == msg_type
    assert answer.content == content
    assert answer.kf_account == kf_account
    assert answer.fields["ToUserName"] == pushed["FromUserName"]
    assert answer.fields["FromUserName"] == pushed["ToUserName"]
    assert not COMPACT.search(answer.xml)
    if mode == "safe":
        assert answer.body.startswith("<xml><Encrypt>")


# -- transfer replies, byte for byte -----------------------------------------------------------------

def expected(name: str) -> str:
    return sample(name).strip()


def normalise_time(xml: str) -> str:
    return re.sub(r"<CreateTime>\d+</CreateTime>", "<CreateTime>0</CreateTime>", xml)


@pytest.mark.parametrize("kf_account, name", [(None, "transfer_expected.xml"),
                                              ("test1@test", "transfer_to_agent_expected.xml")])
def test_render_transfer_reply_matches_the_docs(kf_account, name):
    reply = TransferReply(kf_account=kf_account, target="touser", source="fromuser", time=1399197672)
    assert render_reply(reply) == expected(name)  # the reply's own CreateTime
    rebuilt = TransferReply(kf_account=kf_account, target="touser", source="fromuser", time=1)
    assert render_reply(rebuilt, now=1399197672) == expected(name)  # the webhook's clock wins


TRANSFER_RULES = [Rule.build("pool", keywords=["转人工"]),
                  Rule.build("agent", keywords=["找专员"], kf_account="test1@test")]


@pytest.mark.parametrize("mode", ["plain", "safe"])
@pytest.mark.parametrize("text, name", [("转人工", "transfer_expected.xml"),
                                        ("找专员", "transfer_to_agent_expected.xml")])
def test_webhook_transfer_reply_matches_the_docs_after_normalising_time(make_app, mode, text, name):
    app = make_app(plugin_options={"clock": FakeClock(T0), "rules": TRANSFER_RULES},
                   **({"KF_ENCODING_AES_KEY": AES_KEY} if mode == "safe" else {}))
    push = text_xml(text, sender="touser", account="fromuser")
    answer = WeChatTestClient(app, SIGNERS[mode]).send(push)
    assert answer.status == 200
    assert normalise_time(answer.xml) == normalise_time(expected(name))
    if mode == "plain":
        assert answer.body == answer.xml


@pytest.mark.parametrize("mode", ["plain", "safe"])
@pytest.mark.parametrize("text, name", [("转人工", "transfer_expected.xml"),
                                        ("找专员", "transfer_to_agent_expected.xml")])
def test_webhook_transfer_reply_takes_create_time_from_the_plugin_clock(make_app, mode, text, name):
    """With the plugin's clock at the docs' time, the reply is the docs' reply exactly."""
    clock = FakeClock(1399197672)
    app = make_app(plugin_options={"clock": clock, "rules": TRANSFER_RULES},
                   **({"KF_ENCODING_AES_KEY": AES_KEY} if mode == "safe" else {}))
    signer = PushSigner(TOKEN, AES_KEY if mode == "safe" else None, APPID, clock=clock)
    push = message_xml(text=text, sender="touser", account="fromuser", create_time=1399197672, msg_id=5)
    answer = WeChatTestClient(app, signer).send(push)
    assert answer.status == 200
    assert answer.xml == expected(name)


# -- content types and the encrypted envelope --------------------------------------------------------

@pytest.mark.parametrize("mode", ["plain", "safe"])
@pytest.mark.parametrize("text, content_type, body", [
    ("转人工", XML_TYPE, None),
    ("nothing to see", TEXT_TYPE, "success"),
], ids=["xml-reply", "success"])
def test_reply_content_types(make_app, mode, text, content_type, body):
    answer = WeChatTestClient(make_clocked_app(make_app, mode), SIGNERS[mode]).send(text_xml(text))
    assert answer.status == 200
    assert answer.content_type == content_type
    if body is not None:
        assert answer.body == body  # "success" is never encrypted


def test_error_content_type_is_text(make_app):
    app = make_clocked_app(make_app, "plain")
    response = app.test_client().post("/wechat", query_string=query(), data=b"not xml")
    assert response.status_code == 400
    assert response.content_type == TEXT_TYPE


ENVELOPE = re.compile(
    r"<xml><Encrypt><!\[CDATA\[(?P<encrypt>[A-Za-z0-9+/]+=*)\]\]></Encrypt>"
    r"<MsgSignature><!\[CDATA\[(?P<signature>[0-9a-f]{40})\]\]></MsgSignature>"
    r"<TimeStamp>(?P<timestamp>\d+)</TimeStamp>"
    r"<Nonce><!\[CDATA\[(?P<nonce>[^\]]*)\]\]></Nonce></xml>"
)


def test_encrypted_reply_envelope_is_compact_and_signed(make_app):
    app = make_clocked_app(make_app, "safe")
    answer = WeChatTestClient(app, SAFE_SIGNER).send(text_xml("转人工"), nonce="424242")
    assert answer.status == 200
    assert answer.content_type == XML_TYPE
    match = ENVELOPE.fullmatch(answer.body)
    assert match, answer.body
    assert not COMPACT.search(answer.body)
    assert match["timestamp"] == str(T0)
    assert match["nonce"] == "424242"
    assert match["signature"] == sign(TOKEN, match["timestamp"], match["nonce"], match["encrypt"])
    opened = SAFE_SIGNER.open_reply(answer.body)
    assert opened == answer.xml
    assert xmltodict.parse(opened)["xml"]["MsgType"] == "transfer_customer_service"
    assert not COMPACT.search(opened)
    # The signature is really checked: a tampered envelope does not open.
    tampered = answer.body.replace(match["signature"], "0" * 40)
    with pytest.raises(Exception):
        SAFE_SIGNER.open_reply(tampered)


def test_compatibility_mode_decrypted_content_wins(make_app):
    app = make_clocked_app(make_app, "safe")
    client = WeChatTestClient(app, SAFE_SIGNER)
    secret = text_xml("转人工", msg_id=8001)
    decoy = text_xml("just chatting", msg_id=8001)
    encrypted = encrypt_with(AES_KEY, secret)
    decoy_fields = decoy[len("<xml>"):-len("</xml>")]
    body = f"<xml>{decoy_fields}<Encrypt>{cdata(encrypted)}</Encrypt></xml>".encode()
    answer = client.post(aes_query(encrypted), body)
    assert answer.status == 200
    assert answer.message_type == "transfer_customer_service"

    # And the other way round: plaintext fields ask for a human, the encrypted push does not.
    encrypted = encrypt_with(AES_KEY, text_xml("just chatting", msg_id=8002))
    body = f"<xml>{text_xml('转人工', msg_id=8002)[5:-6]}<Encrypt>{cdata(encrypted)}</Encrypt></xml>".encode()
    answer = client.post(aes_query(encrypted), body)
    assert answer.status == 200
    assert answer.body == "success"


@pytest.mark.parametrize("used", ["previous", "current"])
def test_previous_aes_key_still_decrypts_and_the_reply_uses_it(make_app, used):
    keys = {"current": OTHER_KEY, "previous": AES_KEY}
    app = make_app(plugin_options={"clock": FakeClock(T0)}, KF_ENCODING_AES_KEY=keys["current"],
                   KF_ENCODING_AES_KEY_PREVIOUS=keys["previous"])
    pushing = PushSigner(TOKEN, keys[used], APPID, clock=FakeClock(T0))
    answer = WeChatTestClient(app, pushing).send(text_xml("转人工"))
    assert answer.status == 200
    assert answer.message_type == "transfer_customer_service"
    other = "current" if used == "previous" else "previous"
    with pytest.raises(BadPush):
        PushSigner(TOKEN, keys[other], APPID).open_reply(answer.body)


def test_push_with_an_unknown_key_is_refused_even_with_a_previous_key(make_app):
    app = make_app(plugin_options={"clock": FakeClock(T0)}, KF_ENCODING_AES_KEY=OTHER_KEY,
                   KF_ENCODING_AES_KEY_PREVIOUS=AES_KEY)
    third = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"
    answer = WeChatTestClient(app, PushSigner(TOKEN, third, APPID, clock=FakeClock(T0))).send(text_xml("转人工"))
    assert answer.status == 400
    assert "cannot decrypt" in answer.body


# -- ]]> in reply text ---------------------------------------------------------------------------------

EVIL_TEXT = "a]]><MsgType><![CDATA[music]]></MsgType>]]]]>b<![CDATA[c]]>&amp;<x/>]]>"
EVIL_KF = "kf]]></KfAccount><KfAccount>evil@test]]>"


@pytest.mark.parametrize("mode", ["plain", "safe"])
def test_cdata_terminator_in_handler_text_reply(make_app, mode):
    router = MessageRouter("bot")
    router.add(Keyword("inject"), lambda message: EVIL_TEXT)
    app = make_app(router=router, plugin_options={"clock": FakeClock(T0)},
                   **({"KF_ENCODING_AES_KEY": AES_KEY} if mode == "safe" else {}))
    answer = WeChatTestClient(app, SIGNERS[mode]).send(text_xml("please inject"))
    assert answer.status == 200
    parsed = xmltodict.parse(answer.xml)["xml"]
    assert parsed["MsgType"] == "text"
    assert parsed["Content"] == EVIL_TEXT
    assert set(parsed) == {"ToUserName", "FromUserName", "CreateTime", "MsgType", "Content"}


@pytest.mark.parametrize("mode", ["plain", "safe"])
def test_cdata_terminator_in_kf_account(make_app, mode):
    rules = [Rule.build("evil", keywords=["agent"], kf_account=EVIL_KF)]
    app = make_app(plugin_options={"clock": FakeClock(T0), "rules": rules},
                   **({"KF_ENCODING_AES_KEY": AES_KEY} if mode == "safe" else {}))
    answer = WeChatTestClient(app, SIGNERS[mode]).send(text_xml("agent please"))
    assert answer.status == 200
    parsed = xmltodict.parse(answer.xml)["xml"]
    assert parsed["MsgType"] == "transfer_customer_service"
    assert parsed["TransInfo"] == {"KfAccount": EVIL_KF}


# -- a handler that raises -------------------------------------------------------------------------------

def flaky_router():
    calls = []
    router = MessageRouter("bot")

    def handler(message):
        calls.append(message.content)
        if len(calls) == 1:
            raise RuntimeError("handler failed")
        return "recovered"

    router.add(Keyword("boom"), handler)
    return router, calls


@pytest.mark.parametrize("mode", ["plain", "safe"])
def test_handler_exception_gives_500_and_a_retry_runs_again(make_app, mode):
    router, calls = flaky_router()
    app = make_app(router=router, plugin_options={"clock": FakeClock(T0)},
                   **({"KF_ENCODING_AES_KEY": AES_KEY} if mode == "safe" else {}))
    app.testing = False
    client = WeChatTestClient(app, SIGNERS[mode])
    q, body = SIGNERS[mode].sign(text_xml("boom"))
    first = client.post(q, body)
    assert first.status == 500
    assert len(calls) == 1
    second = client.post(q, body)
    assert second.status == 200
    assert second.content == "recovered"
    assert len(calls) == 2
    third = client.post(q, body)  # now answered from the replay store
    assert third.content == "recovered"
    assert len(calls) == 2


def test_handler_exception_propagates_in_testing_mode(make_app):
    router, calls = flaky_router()
    app = make_app(router=router, plugin_options={"clock": FakeClock(T0)})
    app.testing = True
    q, body = PLAIN_SIGNER.sign(text_xml("boom"))
    with pytest.raises(RuntimeError, match="handler failed"):
        app.test_client().post("/wechat", query_string=q, data=body)
    response = app.test_client().post("/wechat", query_string=q, data=body)
    assert response.status_code == 200
    assert xmltodict.parse(response.get_data(as_text=True))["xml"]["Content"] == "recovered"
    assert len(calls) == 2


def test_kf_rules_run_before_the_bots_own_handlers(make_app):
    router = MessageRouter("bot")
    seen = []
    router.add(Keyword("人工"), lambda message: seen.append(message) or "bot answer")
    app = make_app(router=router, plugin_options={"clock": FakeClock(T0)})
    answer = WeChatTestClient(app, PLAIN_SIGNER).send(text_xml("转人工"))
    assert answer.message_type == "transfer_customer_service"
    assert seen == []


@pytest.mark.parametrize("field, reason", [
    ("<Content><a>hi</a></Content>", "<Content> is not text"),
    ("<Content>a</Content><Content>b</Content>", "<Content> is not text"),
    ("<EventKey><k/></EventKey>", "<EventKey> is not text"),
    ("<MsgId>abc</MsgId>", "<MsgId> is not a number"),
    ("<MsgId>¹²</MsgId>", "<MsgId> is not a number"),
])
def test_fields_handlers_read_must_be_text(field, reason):
    from kf_plugin.errors import BadPush
    from kf_plugin.webhook import parse_push
    xml = ("<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime>"
           f"<MsgType>text</MsgType>{field}</xml>")
    with pytest.raises(BadPush) as info:
        parse_push(xml)
    assert info.value.status == 400 and reason in info.value.reason


# -- identifiers and field lengths -------------------------------------------------------------------

OPENID = "oMgHVjngRipVsoxg6TuX3vz6glDg"   # 28 characters, as WeChat's samples show


@pytest.mark.parametrize("fields, field", [
    ({"FromUserName": "o" * 30000}, "<FromUserName>"),
    ({"FromUserName": "o" * 65}, "<FromUserName>"),
    ({"FromUserName": "<![CDATA[oUser 1]]>"}, "<FromUserName>"),
    ({"FromUserName": "<![CDATA[o:User]]>"}, "<FromUserName>"),
    ({"FromUserName": "<![CDATA[用户]]>"}, "<FromUserName>"),
    ({"ToUserName": "gh_" + "0" * 62}, "<ToUserName>"),
    ({"ToUserName": "<![CDATA[gh/account]]>"}, "<ToUserName>"),
    ({"Content": "x" * 16385}, "<Content> is longer than 16384 characters"),
    ({"MsgId": "1" * 21}, "<MsgId> is longer than 20 characters"),
    ({"MsgType": "event", "Content": None, "MsgId": None, "Event": "CLICK", "EventKey": "k" * 1025},
     "<EventKey> is longer than 1024 characters"),
    ({"MsgType": "event", "Content": None, "MsgId": None, "Event": "E" * 65}, "<Event> is longer than 64"),
    ({"MsgType": "t" * 33}, "<MsgType> is longer than 32"),
])
def test_identifiers_and_fields_beyond_what_wechat_sends_are_refused_naming_the_field(make_app, fields, field):
    app = make_clocked_app(make_app, "plain")
    answer = WeChatTestClient(app, PLAIN_SIGNER).post(*PLAIN_SIGNER.sign(fields_xml(**fields)))
    assert answer.status == 400 and field in answer.body, answer.body


@pytest.mark.parametrize("fields", [
    {"FromUserName": OPENID, "ToUserName": "gh_e136c6e50636"},
    {"FromUserName": "o" * 64, "ToUserName": "gh-Account_9"},
    {"Content": "人" * 16384, "MsgId": "9" * 20},
    {"MsgType": "event", "Content": None, "MsgId": None, "Event": "VIEW", "EventKey": "https://" + "e" * 1016},
])
def test_identifiers_and_fields_within_the_bounds_are_answered(make_app, fields):
    app = make_clocked_app(make_app, "plain")
    answer = WeChatTestClient(app, PLAIN_SIGNER).post(*PLAIN_SIGNER.sign(fields_xml(**fields)))
    assert (answer.status, answer.body) == (200, "success")


def test_long_openids_leave_nothing_in_redis(make_app, redis_url):
    """A signed push cannot make the plugin keep an unbounded sender id for 48 hours."""
    import redis
    app = make_clocked_app(make_app, "plain", KF_REDIS_URL=redis_url)
    before = redis.Redis.from_url(redis_url).dbsize()
    client = WeChatTestClient(app, PLAIN_SIGNER)
    for n in range(20):
        answer = client.post(*PLAIN_SIGNER.sign(fields_xml(FromUserName=f"o{n}" + "x" * 30000, MsgId=str(n + 1))))
        assert answer.status == 400 and "<FromUserName>" in answer.body
    app.extensions["kf_plugin"].plugin.shutdown()     # sends any writes still queued
    assert redis.Redis.from_url(redis_url).dbsize() == before


def test_kf_account_id_refuses_pushes_to_another_account(make_app):
    app = make_clocked_app(make_app, "plain", KF_ACCOUNT_ID="gh_account")
    client = WeChatTestClient(app, PLAIN_SIGNER)
    mine = client.post(*PLAIN_SIGNER.sign(fields_xml(ToUserName="gh_account")))
    other = client.post(*PLAIN_SIGNER.sign(fields_xml(ToUserName="gh_other", MsgId="43")))
    assert (mine.status, mine.body) == (200, "success")
    assert (other.status, other.body) == (403, "the push is addressed to another official account than KF_ACCOUNT_ID")


@pytest.mark.parametrize("value", ["gh account", "gh_" + "x" * 62, "公众号"])
def test_kf_account_id_must_look_like_an_account_id(make_app, value):
    from kf_plugin.errors import ConfigError
    with pytest.raises(ConfigError, match="KF_ACCOUNT_ID must be the account's original ID"):
        make_app(KF_ACCOUNT_ID=value)


# -- reasons in the push's terms ---------------------------------------------------------------------

MALFORMED = [
    ("<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime>"
     "<MsgType>event</MsgType><Event></Event></xml>", "not a WeChat push: <Event> is empty"),
    ("<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime>"
     "<MsgType>device_event</MsgType><Event/></xml>", "not a WeChat push: <Event> is empty"),
    ("<xml></xml>", "not a WeChat push: <xml> has no fields"),
    ("<xml>text</xml>", "not a WeChat push: <xml> has no fields"),
    ("<root><MsgType>text</MsgType></root>", "not a WeChat push: the root element is not <xml>"),
    ("<xml><MsgType>text</Content></xml>",
     "not a WeChat push: the XML is not well-formed (mismatched tag at line 1, column 21)"),
    ("<xml><MsgType>text", "not a WeChat push: the XML is not well-formed (no element found at line 1, column 19)"),
    ("hello", "not a WeChat push: the XML is not well-formed (syntax error at line 1, column 1)"),
    (BILLION_LAUGHS, "not a WeChat push: DOCTYPE and entity declarations are not allowed"),
    (XXE, "not a WeChat push: DOCTYPE and entity declarations are not allowed"),
    (fields_xml(MsgType="<a>text</a>"), "not a WeChat push: <MsgType> is missing or not text"),
]


@pytest.mark.parametrize("xml, reason", MALFORMED)
def test_a_malformed_push_is_refused_saying_what_is_wrong_with_it(xml, reason):
    from kf_plugin.webhook import parse_push
    with pytest.raises(BadPush) as info:
        parse_push(xml)
    assert (info.value.status, info.value.reason) == (400, reason)


@pytest.mark.parametrize("case", [case for case in HOSTILE if case.status == 400], ids=lambda case: case.id)
def test_no_refusal_shows_a_python_exception(case: Hostile, make_app):
    app = make_clocked_app(make_app, case.app)
    req = case.build()
    answer = WeChatTestClient(app, SIGNERS[case.app]).post(req.query, req.body)
    assert answer.status == 400
    assert not re.search(r"[A-Za-z]+(Error|Exception)\b|has no attribute|NoneType", answer.xml), answer.xml


@pytest.mark.parametrize("query_string", [query(), {**query(), "echostr": "e"}, {}], ids=["signed", "echostr", "unsigned"])
def test_head_is_405_as_for_a_route_without_it(plain_app, query_string):
    response = plain_app.test_client().head("/wechat", query_string=query_string)
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, POST"
