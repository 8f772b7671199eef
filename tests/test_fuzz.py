"""Property-based fuzzing of the webhook endpoint through Flask's test client, plain and safe mode.

Whatever arrives — any query string, any body, GET or POST, correctly signed or not — the answer is one of the
documented statuses (200, 400, 403, 413), never a 5xx: the apps run with ``testing = False``, so an exception
anywhere in the pipeline would come back as a 500 that these tests see. Valid, correctly signed (and, in safe
mode, encrypted) pushes with fuzzed contents take the pipeline past the signature gate into parsing, routing,
rendering and sealing; for well-formed ones the reply is checked too: it opens, it is well-formed XML, and text
echoed back from the user arrives intact (no XML injection through CDATA terminators, entities or unicode).

Deterministic (``derandomize=True``) and bounded: a few hundred examples per property.
"""
from __future__ import annotations

import base64
import itertools
import re
import time
import urllib.parse
from typing import Any, Dict, List, Optional, Tuple
from xml.sax.saxutils import escape

import pytest
import xmltodict
from flask import Flask
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from wechatpy.crypto import PrpCrypto

from kf_plugin import ALL, EVENT, TEXT, KfPlugin, MessageRouter
from kf_plugin.messages import fold
from kf_plugin.replies import cdata
from kf_plugin.security import PushCipher, decode_aes_key, sign
from kf_plugin.state import MemoryReplayStore
from kf_plugin.testing import PushSigner, WeChatTestClient

from .conftest import AES_KEY, APPID, RULES_YAML, TOKEN, FakeClock

T0 = 1_700_000_000
DOCUMENTED = {200, 400, 403, 413}
# What a refusal must never show: a Python exception's name or message instead of what is wrong with the push.
EXCEPTION_TEXT = re.compile(r"[A-Za-z]+(Error|Exception)\b|Traceback|has no attribute|not subscriptable|"
                            r"indices must be|unsupported operand|NoneType|codec can't")
TEXT_TYPE = "text/plain; charset=utf-8"
MAX_BODY = 64 * 1024
KEYWORDS = ("人工", "客服", "转人工")
COMPLAINT = re.compile("投诉|退款")

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])
FEWER = settings(FUZZ, max_examples=150)

_unique = itertools.count(1)   # MsgIds and event CreateTimes: every generated push is a new one to the dedupe


# -- the apps -------------------------------------------------------------------------------------------

def _echo(message: Any) -> str:
    # Read defensively: these properties are about the plugin's pipeline, and wechatpy hands a handler None for
    # an empty <Content> and a dict for one holding elements (see
    # test_a_signed_push_with_elements_in_its_fields_is_no_500_for_a_plain_handler).
    content = message._data.get("Content")
    return "echo:" + (content if isinstance(content, str) else "") + ":end"


def _event(message: Any) -> str:
    key = message._data.get("EventKey")
    return "event:" + (key if isinstance(key, str) else "") + ":end"


@pytest.fixture(scope="module")
def apps(tmp_path_factory) -> Dict[str, Flask]:
    """A plain-mode and a safe-mode app with the test rules, an echo handler for text and one for events."""
    rules = tmp_path_factory.mktemp("fuzz") / "rules.yaml"
    rules.write_text(RULES_YAML, encoding="utf-8")
    made = {}
    for mode in ("plain", "safe"):
        router = MessageRouter("fuzz bot")
        router.add(TEXT, _echo)
        router.add(EVENT, _event)
        router.add(ALL, lambda message: None)
        app = Flask(f"kf_fuzz_{mode}")
        app.config.update(KF_TOKEN=TOKEN, KF_APPID=APPID, KF_RULES=str(rules))
        if mode == "safe":
            app.config["KF_ENCODING_AES_KEY"] = AES_KEY
        KfPlugin(app, router=router, clock=FakeClock(T0))
        app.testing = False                 # an exception becomes a 500 the tests see, not a test error
        made[mode] = app
    yield made
    for app in made.values():
        app.extensions["kf_plugin"].plugin.shutdown()


CIPHER = PushCipher(TOKEN, AES_KEY, APPID)
# Encryption draws random bytes: done once here, not inside strategies, so the examples stay deterministic.
ENCRYPTED = [CIPHER.encrypt_text(text) for text in
             ["", "hello", "<xml></xml>", "<xml><MsgType>text</MsgType></xml>", "转人工" * 50, "\x00\x01", "]]>"]]
ENCRYPTED += [PushCipher(TOKEN, AES_KEY, "wxffffffffffffffff").encrypt_text("<xml></xml>"),
              PushCipher(TOKEN, "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut", APPID).encrypt_text("<xml></xml>")]
SIGNER = {"plain": PushSigner(TOKEN, clock=FakeClock(T0)),
          "safe": PushSigner(TOKEN, AES_KEY, APPID, clock=FakeClock(T0))}


def open_reply(mode: str, text: str) -> str:
    """The plain XML of a 200 answer; in safe mode the envelope's MsgSignature is checked first.

    Unlike ``PushSigner.open_reply`` this reads the envelope without stripping whitespace, as the signature
    covers the nonce exactly (see test_a_reply_to_a_nonce_with_spaces_opens_with_the_test_client).
    """
    if mode == "plain" or text == "success":
        return text
    envelope = xmltodict.parse(text, strip_whitespace=False)["xml"]
    assert set(envelope) == {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}, text
    nonce = envelope["Nonce"] or ""
    assert envelope["MsgSignature"] == sign(TOKEN, envelope["TimeStamp"], nonce, envelope["Encrypt"]), text
    return CIPHER.decrypt(envelope["Encrypt"])[0]


def call(app: Flask, method: str, query: Any, body: bytes = b"", content_type: Optional[str] = None):
    """One request through the test client; checks what every answer must satisfy.

    Each request is a scenario of its own: the app forgets the pushes and signed queries it saw before
    (examples repeat a drawn timestamp and nonce with other bodies, which WeChat never does).
    """
    plugin = app.extensions["kf_plugin"].plugin
    app.extensions["kf_plugin"].webhook.dedupe.store = MemoryReplayStore(window=plugin.window.store)
    response = app.test_client().open("/wechat", method=method, query_string=query, data=body,
                                      content_type=content_type)
    text = response.get_data(as_text=True)
    if currently_in_test_context():       # statistics for --hypothesis-show-statistics
        event(f"status {response.status_code}" + (f": {text[:40]}" if response.status_code != 200 else ""))
    assert response.status_code < 500, f"{response.status_code}: {text[:500]}"
    assert response.status_code in DOCUMENTED, f"{response.status_code}: {text[:500]}"
    if response.status_code != 200:
        assert response.content_type == TEXT_TYPE, response.content_type
        assert text, "a refusal carries a reason"
        assert not EXCEPTION_TEXT.search(text), f"the reason shows a Python exception: {text[:300]}"
    return response.status_code, text


# -- strategies: text, queries ----------------------------------------------------------------------

any_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)   # NULs, controls, any plane
# Characters XML 1.0 allows (and so a push may carry).
XML_FORBIDDEN = [chr(c) for c in range(0x20) if c not in (0x09, 0x0A, 0x0D)] + ["\ufffe", "\uffff"]
xml_char = st.characters(blacklist_categories=("Cs",), blacklist_characters=XML_FORBIDDEN)
xml_text = st.text(xml_char, max_size=60)
# Nonces the reply envelope can carry back: XML characters, "\r" aside (a parser reads it as "\n"). The others
# are test_a_nonce_xml_cannot_carry_is_not_echoed_into_a_broken_reply's.
nonce_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=XML_FORBIDDEN + ["\r"]),
                     max_size=20)
tricky_text = st.one_of(
    xml_text,
    st.sampled_from(["]]>", "]]]]>", "<![CDATA[", "]]><MsgType>music</MsgType><![CDATA[", "&amp;", "&lt;xml&gt;",
                     "转人工", "ＨＥＬＰ 转人工", "⼈⼯", "我要投诉", "退款]]>", "\r\n", "\u2028", "💬", "\U0010fffd",
                     "\x85", "\u3000", "'\"", "%00", "<xml>", "</xml>", "&#x0;"]),
)
tricky_xml_text = st.lists(tricky_text, max_size=4).map("".join).filter(
    lambda s: not any(c in s for c in XML_FORBIDDEN))

QUERY_KEYS = ["signature", "timestamp", "nonce", "encrypt_type", "msg_signature", "echostr", "openid"]
query_key = st.one_of(st.sampled_from(QUERY_KEYS), any_text)
query_value = st.one_of(
    any_text,
    st.sampled_from(["aes", "raw", "AES", "", "0" * 40, sign(TOKEN, str(T0), "1"), str(T0), str(T0 + 10**12),
                     "-1", "¹⁷⁰⁰⁰⁰⁰⁰⁰⁰", "1e9", " 1700000000", "1700000000\n"]),
    st.integers(-10**20, 10**20).map(str),
)
query_dict = st.dictionaries(query_key, query_value, max_size=8)
# Raw query strings: repeated keys, broken percent-escapes, separators in odd places.
raw_query = st.one_of(
    st.lists(st.tuples(query_key, query_value), max_size=8).map(
        lambda pairs: urllib.parse.urlencode(pairs)),
    st.lists(st.sampled_from(list("%&=;+#?/ aeginrstuxyz0123456789FfZz") + ["%00", "%FF", "%E8%BD", "签名"]),
             max_size=60).map("".join),
)
CONTENT_TYPES = st.sampled_from([None, "text/xml", "application/xml", "application/x-www-form-urlencoded",
                                 "multipart/form-data; boundary=xyz", "application/json", "text/plain; charset=gbk"])


# -- strategies: bodies (binary, text, XML-ish from a grammar) ----------------------------------------

FIELD_NAMES = ["xml", "ToUserName", "FromUserName", "CreateTime", "MsgType", "Content", "MsgId", "Event",
               "EventKey", "Encrypt", "Recognition", "MediaId", "Ticket", "Location_X", "ScanCodeInfo", "a"]
element_name = st.one_of(st.sampled_from(FIELD_NAMES), st.from_regex(r"\A[A-Za-z_:][A-Za-z0-9_.:\-]{0,8}\Z"),
                         st.text(st.characters(whitelist_categories=("Lo", "Lu")), min_size=1, max_size=3))
entity_ref = st.sampled_from(["&lt;", "&gt;", "&amp;", "&quot;", "&apos;", "&#20154;", "&#x5DE5;", "&#x1F4AC;",
                              "&#0;", "&#x1;", "&#xD800;", "&#xFFFE;", "&#13;", "&bogus;", "&lol9;", "&", "&#;",
                              "&#x110000;"])


def _cdata_raw(text: str) -> str:
    return "<![CDATA[" + text + "]]>"        # unsplit: a "]]>" inside ends the section early


leaf = st.one_of(
    xml_text.map(escape),                    # escaped text
    xml_text,                                # raw text: stray "<" and "&"
    xml_text.map(cdata),                     # CDATA, terminators split
    tricky_text.map(_cdata_raw),             # CDATA with "]]>" left in
    entity_ref,
    st.just(""),
)   # characters XML forbids (NULs, controls) go in whole documents: see xml_document and any_body


def _element(args: Tuple[str, List[Tuple[str, str]], List[str], bool]) -> str:
    name, attributes, children, close = args
    attrs = "".join(f' {k}="{escape(v, {chr(34): "&quot;"})}"' for k, v in attributes)
    return f"<{name}{attrs}>{''.join(children)}" + (f"</{name}>" if close else "")


xml_node = st.recursive(
    leaf,
    lambda inner: st.tuples(element_name, st.lists(st.tuples(st.from_regex(r"\A[a-z]{1,4}\Z"), xml_text), max_size=2),
                            st.lists(inner, max_size=4), st.booleans() | st.just(True)).map(_element),
    max_leaves=25,
)
PROLOGS = ["", '<?xml version="1.0" encoding="UTF-8"?>', '<?xml version="1.1"?>',
           '<?xml version="1.0" encoding="GBK"?>',
           '<!DOCTYPE xml [<!ENTITY e "转人工">]>', '<!DOCTYPE xml SYSTEM "file:///etc/passwd">',
           '<!DOCTYPE xml [<!ENTITY lol "lol"><!ENTITY lol9 "&lol;&lol;&lol;&lol;&lol;&lol;">]>',
           "\ufeff", "<!-- comment -->", "<?pi data?>"]


@st.composite
def xml_document(draw) -> str:
    root = draw(st.sampled_from(["xml", "xml", "xml", "root", "Encrypt"]))
    children = draw(st.lists(xml_node, max_size=8))
    # "Huge counts": one child repeated many times (beyond the body limit now and then).
    if draw(st.booleans()):
        children.append(draw(xml_node) * draw(st.integers(0, 6000)))
    doc = draw(st.sampled_from(PROLOGS)) + f"<{root}>" + "".join(children) + f"</{root}>"
    if draw(st.integers(0, 9)) == 0:                        # NULs and controls in odd places
        at = draw(st.integers(0, len(doc)))
        doc = doc[:at] + draw(st.sampled_from(["\x00", "\x01", "\x0b", "\ufffe", "\x00" * 8])) + doc[at:]
    return doc


@st.composite
def deep_document(draw) -> str:
    depth = draw(st.integers(1, 3000))
    field = draw(st.sampled_from(["Content", "Extra", "ToUserName", "EventKey"]))
    inner = "<a>" * depth + draw(xml_text.map(escape)) + "</a>" * depth
    return (f"<xml><ToUserName>gh</ToUserName><FromUserName>oUser</FromUserName><CreateTime>{T0}</CreateTime>"
            f"<MsgType>text</MsgType><MsgId>{next(_unique)}</MsgId><{field}>{inner}</{field}></xml>")


def _encode(text: str, draw) -> bytes:
    encoding = draw(st.sampled_from(["utf-8"] * 6 + ["utf-16", "utf-16-le", "gbk", "latin-1"]))
    return text.encode(encoding, errors="replace") if encoding != "utf-8" else text.encode("utf-8")


@st.composite
def envelope_body(draw) -> bytes:
    """A safe-mode envelope around a fuzzed <Encrypt>: text, base64 of anything, real ciphertexts, damaged ones."""
    encrypted = draw(st.one_of(any_text, st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode()),
                               st.sampled_from(ENCRYPTED),
                               st.tuples(st.sampled_from(ENCRYPTED), st.integers(0, 300), st.sampled_from("A=+/_-!"))
                               .map(lambda t: t[0][:t[1]] + t[2] + t[0][t[1] + 1:])))
    extra = draw(st.sampled_from(["", "", "", "<ToUserName>gh</ToUserName>", "<Encrypt>second</Encrypt>",
                                  "<Encrypt/>"]))
    return f"<xml>{extra}<Encrypt>{cdata(encrypted)}</Encrypt></xml>".encode("utf-8")


@st.composite
def any_body(draw) -> bytes:
    kind = draw(st.sampled_from(["binary", "text", "xml", "xml", "xml", "deep", "envelope", "big"]))
    if kind == "binary":
        return draw(st.binary(max_size=512))
    if kind == "text":
        return _encode(draw(any_text), draw)
    if kind == "deep":
        return draw(deep_document()).encode("utf-8")
    if kind == "envelope":
        return draw(envelope_body())
    if kind == "big":
        return b"<xml>" + b"A" * draw(st.integers(MAX_BODY - 20, MAX_BODY + 20)) + b"</xml>"
    return _encode(draw(xml_document()), draw)


def _encrypt_of(body: bytes) -> Optional[str]:
    """The <Encrypt> text of a body, as the webhook will read it, if there is one."""
    try:
        value = xmltodict.parse(body.decode("utf-8"))["xml"]["Encrypt"]
    except Exception:
        return None
    return value if isinstance(value, str) else None


@st.composite
def signed_query(draw, body: bytes, mode: str) -> Dict[str, str]:
    """A query whose signature is right for its (fuzzed) timestamp and nonce; in safe mode with encrypt_type=aes
    and, for a body with an <Encrypt>, the right msg_signature, so the request reaches decryption."""
    valid_timestamp = st.integers(-400, 400).map(lambda d: str(T0 + d))
    timestamp = draw(st.sampled_from(range(10)).flatmap(lambda n: valid_timestamp if n < 8 else query_value))
    nonce = draw(st.one_of(st.integers(0, 10**10).map(str), any_text))
    query = {"signature": sign(TOKEN, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}
    encrypt_type = draw(st.sampled_from(["aes", "aes", "raw", "", None, "rsa", "AES"]))
    if mode == "safe" and draw(st.integers(0, 3)) > 0:
        encrypt_type = "aes"
    if encrypt_type is not None:
        query["encrypt_type"] = encrypt_type
    if encrypt_type == "aes" or draw(st.booleans()):
        encrypted = _encrypt_of(body)
        if encrypted is not None and draw(st.integers(0, 4)) > 0:
            query["msg_signature"] = sign(TOKEN, timestamp, nonce, encrypted)
        elif draw(st.booleans()):
            query["msg_signature"] = draw(query_value)
    query.update(draw(st.dictionaries(st.sampled_from(["openid", "echostr", "x"]), query_value, max_size=2)))
    return query


# -- strategies: valid pushes with fuzzed contents -----------------------------------------------------

KNOWN_TYPES = ["text", "image", "voice", "video", "shortvideo", "location", "link", "event", "hologram"]
EVENTS = ["CLICK", "click", "VIEW", "subscribe", "unsubscribe", "SCAN", "LOCATION", "scancode_push",
          "scancode_waitmsg", "kf_create_session", "kf_close_session", "kf_switch_session", "teleport"]
# What WeChat sends in ToUserName / FromUserName (an account id or an openid), and anything at all.
wechat_id = st.from_regex(r"\A[A-Za-z0-9_\-]{1,28}\Z")
identifier = st.one_of(wechat_id, xml_text.filter(lambda s: s.strip()))


def _field(name: str, value: str, style: str) -> str:
    if style == "cdata":
        inner = cdata(value)
    elif style == "escaped":
        inner = escape(value)
    else:                                    # every character as a numeric reference
        inner = "".join(f"&#x{ord(c):X};" for c in value)
    return f"<{name}>{inner}</{name}>"


@st.composite
def well_formed_push(draw) -> Tuple[str, Dict[str, str]]:
    """A push WeChat could send, with fuzzed text in every field: (xml, the fields as sent)."""
    kind = draw(st.sampled_from(KNOWN_TYPES + ["text", "text", "event", "event"]))
    msg_type = draw(st.sampled_from([kind, kind.upper(), kind.capitalize()]))
    fields = {"ToUserName": draw(wechat_id), "FromUserName": draw(wechat_id)}
    unique = next(_unique)
    if kind == "event":
        fields["CreateTime"] = str(T0 + unique)
        fields["MsgType"] = msg_type
        fields["Event"] = draw(st.one_of(st.sampled_from(EVENTS), identifier))
        if draw(st.integers(0, 4)):
            fields["EventKey"] = draw(st.one_of(st.sampled_from(["CONTACT_VIP", "qrscene_123", "TALK_TO_AGENT"]),
                                                tricky_xml_text))
    else:
        fields["CreateTime"] = str(T0)
        fields["MsgType"] = msg_type
        fields["MsgId"] = str(10**12 + unique)
        if kind == "text":
            fields["Content"] = draw(tricky_xml_text)
        elif kind == "voice":
            fields["Recognition"] = draw(tricky_xml_text)
    for name in draw(st.lists(st.sampled_from(["MediaId", "PicUrl", "Format", "Label", "Url", "Extra"]),
                              max_size=3, unique=True)):
        fields[name] = draw(tricky_xml_text)
    names = list(fields)
    order = draw(st.permutations(names))
    style = draw(st.sampled_from(["cdata", "escaped", "refs"]))
    body = "".join(_field(name, fields[name], draw(st.sampled_from([style, "cdata"]))) for name in order)
    prolog = draw(st.sampled_from(["", '<?xml version="1.0" encoding="utf-8"?>', "\n", "<!-- c -->"]))
    return f"{prolog}<xml>{body}</xml>", fields


@st.composite
def fuzzed_push(draw) -> str:
    """A push with the required fields present and anything at all around and inside them."""
    kind = draw(st.sampled_from(KNOWN_TYPES))
    parts = {
        "ToUserName": draw(st.one_of(identifier.map(cdata), xml_node)),
        "FromUserName": draw(st.one_of(identifier.map(cdata), xml_node)),
        "CreateTime": draw(st.one_of(st.just(str(T0)), st.integers(-10, 10**13).map(str), xml_node)),
        "MsgType": draw(st.one_of(st.just(kind), st.sampled_from(KNOWN_TYPES).map(cdata), xml_node)),
    }
    if kind == "event":
        parts["Event"] = draw(st.one_of(st.sampled_from(EVENTS).map(cdata), xml_node))
        if draw(st.booleans()):
            parts["EventKey"] = draw(xml_node)
    else:
        parts["MsgId"] = draw(st.one_of(st.integers(0, 2**70).map(str), xml_node))
        parts["Content"] = draw(xml_node)
    extra = draw(st.lists(xml_node, max_size=4))
    items = [f"<{k}>{v}</{k}>" for k, v in parts.items()] + extra
    order = draw(st.permutations(items))
    return "<xml>" + "".join(order) + "</xml>"


def sign_push(mode: str, xml: str, timestamp: str = str(T0), nonce: str = "1234567890",
              appid: str = APPID) -> Tuple[Dict[str, str], bytes]:
    """Sign a push as WeChat does, without parsing it (it may not parse); encrypted in safe mode."""
    query = {"signature": sign(TOKEN, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}
    if mode == "plain":
        return query, xml.encode("utf-8")
    encrypted = PrpCrypto(decode_aes_key(AES_KEY)).encrypt(xml, appid).decode("ascii")
    query.update(encrypt_type="aes", msg_signature=sign(TOKEN, timestamp, nonce, encrypted), openid="oUser")
    return query, f"<xml><ToUserName><![CDATA[gh]]></ToUserName><Encrypt>{cdata(encrypted)}</Encrypt></xml>".encode()


def refusable(nonce: str) -> bool:
    """A nonce unlike WeChat's (digits): the webhook may answer it with a refusal instead."""
    return not re.fullmatch("[0-9A-Za-z]{1,32}", nonce)


def expected_reply(fields: Dict[str, str]) -> Dict[str, Optional[str]]:
    """What the rules and the fuzz bot answer to a well-formed push, judged from the fields as parsed."""
    kind = fields["MsgType"].lower()
    if kind == "text":
        content = fields.get("Content") or ""
        folded = fold(content)
        if any(fold(k) in folded for k in KEYWORDS) or COMPLAINT.search(content):
            return {"MsgType": "transfer_customer_service", "KfAccount": None}
        return {"MsgType": "text", "Content": "echo:" + content + ":end"}
    if kind == "voice":
        said = fields.get("Recognition")
        if said is not None and (any(fold(k) in fold(said) for k in KEYWORDS) or COMPLAINT.search(said)):
            return {"MsgType": "transfer_customer_service", "KfAccount": None}
        return {"MsgType": None}
    if kind == "event":
        if fields["Event"].lower() == "click" and fields.get("EventKey") == "CONTACT_VIP":
            return {"MsgType": "transfer_customer_service", "KfAccount": "vip1@gh_example"}
        key = fields.get("EventKey") or ""
        if fields["Event"].lower() == "subscribe" and key.startswith("qrscene_"):
            key = key[len("qrscene_"):]          # wechatpy reads a follow through a QR code so
        return {"MsgType": "text", "Content": "event:" + key + ":end"}
    return {"MsgType": None}


def _newlines(text: Optional[str]) -> Optional[str]:
    # An XML parser turns "\r\n" and "\r" into "\n" (also inside CDATA): a "\r" that came in as "&#xD;"
    # goes back out raw, and so reads back as "\n".
    return None if text is None else text.replace("\r\n", "\n").replace("\r", "\n")


# -- the properties -------------------------------------------------------------------------------------

MODES = pytest.mark.parametrize("mode", ["plain", "safe"])


@MODES
@FUZZ
@given(method=st.sampled_from(["GET", "POST", "POST"]), query=st.one_of(query_dict, raw_query),
       body=st.one_of(st.binary(max_size=256), any_body()), content_type=CONTENT_TYPES)
def test_any_request_gets_a_documented_status(apps, mode, method, query, body, content_type):
    status, _ = call(apps[mode], method, query, body, content_type)
    if isinstance(query, dict) and not query.get("signature"):
        assert status == 403


@MODES
@FUZZ
@given(data=st.data(), body=st.one_of(any_body(), envelope_body()), content_type=CONTENT_TYPES,
       method=st.sampled_from(["POST"] * 5 + ["GET"]))
def test_signed_query_with_any_body_gets_a_documented_status(apps, mode, data, body, content_type, method):
    query = data.draw(signed_query(body, mode))
    status, text = call(apps[mode], method, query, body, content_type)
    timely = bool(re.fullmatch("[0-9]{1,12}", query["timestamp"])) and abs(int(query["timestamp"]) - T0) <= 300
    if method == "GET":       # URL verification: the echostr back, whatever the body
        if not (timely and query.get("echostr")):
            assert status != 200
        elif not refusable(query["nonce"]):
            assert (status, text) == (200, query["echostr"])
        else:
            assert (status, text) == (200, query["echostr"]) or status in (400, 403)
        return
    if status == 200:         # only a real push can get through: the body parsed as one
        assert text == "success" or text.startswith("<xml>"), text[:300]
        if mode == "safe":
            assert "<Encrypt>" in text or text == "success"
        xmltodict.parse(open_reply(mode, text))
    if len(body) > MAX_BODY and timely and not refusable(query["nonce"]):
        assert status == 413


@MODES
@FUZZ
@given(xml=st.one_of(fuzzed_push(), deep_document()), nonce=st.one_of(st.integers(0, 10**10).map(str), nonce_text),
       appid=st.sampled_from([APPID] * 12 + ["wxffffffffffffffff", "", "签名", APPID + "\x00"]))
def test_valid_signed_push_with_fuzzed_xml_gets_a_documented_status(apps, mode, xml, nonce, appid):
    query, body = sign_push(mode, xml, nonce=nonce, appid=appid)
    status, text = call(apps[mode], "POST", query, body)
    assert status in (200, 400, 413) or (status == 403 and refusable(nonce)), text[:300]
    if status == 200 and text != "success":
        xmltodict.parse(open_reply(mode, text))   # a reply is well-formed, and opens in safe mode


@MODES
@FUZZ
@given(push=well_formed_push(), nonce=st.one_of(st.integers(0, 10**10).map(str), nonce_text))
def test_well_formed_push_is_answered_and_echoed_intact(apps, mode, push, nonce):
    xml, _ = push
    parsed = {k: v for k, v in xmltodict.parse(xml)["xml"].items()}   # the fields as any XML parser reads them
    query, body = sign_push(mode, xml, nonce=nonce)
    status, text = call(apps[mode], "POST", query, body)
    if status in (400, 403) and refusable(nonce):
        return
    assert status == 200, text[:500]
    expected = expected_reply(parsed)
    event(f"reply {expected['MsgType']}")
    if expected["MsgType"] is None:
        assert text == "success"
        return
    reply_xml = open_reply(mode, text)
    reply = xmltodict.parse(reply_xml)["xml"]
    assert reply["MsgType"] == expected["MsgType"], reply_xml
    # Addressed back to the sender, from the account (CDATA with terminators and all).
    assert _newlines(reply["ToUserName"]) == _newlines(parsed["FromUserName"])
    assert _newlines(reply["FromUserName"]) == _newlines(parsed["ToUserName"])
    if expected["MsgType"] == "text":
        assert _newlines(reply["Content"]) == _newlines(expected["Content"]), reply_xml
    else:
        info = reply.get("TransInfo")
        assert (info or {}).get("KfAccount") == expected["KfAccount"], reply_xml


@MODES
@FEWER
@given(echostr=any_text, extra=st.dictionaries(st.sampled_from(["encrypt_type", "msg_signature", "openid"]),
                                                query_value, max_size=2))
def test_signed_url_verification_echoes_any_echostr(apps, mode, echostr, extra):
    query = {**SIGNER[mode].verification(echostr), **extra}
    status, text = call(apps[mode], "GET", query)
    if echostr:
        assert (status, text) == (200, echostr)
    else:
        assert status == 400


def test_the_strategies_reach_the_deep_pipeline(apps):
    """A sanity check of the fuzzing itself: generated valid pushes are answered, not refused at the gate."""
    statuses = []

    @settings(FUZZ, max_examples=40)
    @given(xml=fuzzed_push())
    def run(xml):
        statuses.append(call(apps["plain"], "POST", *sign_push("plain", xml))[0])
    run()
    assert statuses.count(200) >= 4 and 403 not in statuses, statuses


# -- what the fuzzing found ----------------------------------------------------------------------------------

def _push_xml(text: str = "hello") -> str:
    return (f"<xml><ToUserName><![CDATA[gh_account]]></ToUserName><FromUserName><![CDATA[oUser]]></FromUserName>"
            f"<CreateTime>{T0}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content>{text}</Content>"
            f"<MsgId>{next(_unique) + 10**14}</MsgId></xml>")


@pytest.mark.parametrize("nonce", ["\x1f", "\x00", "12\x0b34", "\r"], ids=["US", "NUL", "VT", "CR"])
def test_a_nonce_xml_cannot_carry_is_not_echoed_into_a_broken_reply(apps, nonce):
    """Safe mode: the reply envelope repeats the query's nonce verbatim (``<Nonce><![CDATA[…]]></Nonce>``), and
    the signature check accepts any nonce. A nonce holding a character XML 1.0 forbids makes the 200 reply
    not well-formed XML; a "\\r" (read back as "\\n" by any XML parser) makes its MsgSignature unverifiable.
    Either the push is refused (400/403) or its reply must open."""
    query, body = sign_push("safe", _push_xml("<![CDATA[hello]]>"), nonce=nonce)
    status, text = call(apps["safe"], "POST", query, body)
    assert status in (200, 400, 403)
    if status == 200:
        xmltodict.parse(open_reply("safe", text))


def test_a_reply_to_a_nonce_with_spaces_opens_with_the_test_client(make_app):
    """kf_plugin.testing: ``PushSigner.open_reply`` reads the reply envelope with xmltodict's default
    whitespace stripping, so for a nonce with leading or trailing spaces it checks the MsgSignature against
    the stripped nonce and refuses a correctly signed reply (``KfError: the reply's MsgSignature does not
    match``). The webhook's reply itself is right (``open_reply`` above verifies it)."""
    signer = PushSigner(TOKEN, AES_KEY, APPID)
    envelope = signer.cipher.encrypt("<xml><Content>hi</Content></xml>", " 12345 ", "1700000000")
    assert signer.open_reply(envelope) == "<xml><Content>hi</Content></xml>"
    # The webhook itself refuses such a nonce: it would have to travel back in the reply.
    answer = WeChatTestClient(make_app(KF_ENCODING_AES_KEY=AES_KEY)).send(_push_xml("x"), nonce=" 12345 ")
    assert (answer.status, answer.body) == (400, "nonce must be 1–128 printable ASCII characters")


@pytest.mark.parametrize("field, handler", [
    ("<Content><a>hi</a></Content>", lambda message: "you said: " + message.content),
    ("<Content><a/></Content>", lambda message: message.content),
    ("<MsgId>abc</MsgId>", lambda message: f"message {message.id}"),
], ids=["content-element-concatenated", "content-element-returned", "msgid-not-a-number"])
def test_a_signed_push_with_elements_in_its_fields_is_no_500_for_a_plain_handler(make_app, field, handler):
    """A correctly signed push whose Content holds elements reaches the handlers with ``message.content`` a
    dict (and one whose MsgId is not a number raises ValueError on ``message.id``): a handler written the
    ordinary way fails and the push gets a 500, where a push with an element in ToUserName is a 400 'not a
    WeChat push'. Only a Token holder can send such a push; WeChat does not."""
    router = MessageRouter()
    router.add(TEXT, handler)
    app = make_app(router=router)
    app.testing = False
    xml = (f"<xml><ToUserName>gh</ToUserName><FromUserName>oUser</FromUserName><CreateTime>{int(time.time())}"
           f"</CreateTime><MsgType>text</MsgType>{field}"
           + ("" if "MsgId" in field else f"<MsgId>{next(_unique) + 10**14}</MsgId>") + "</xml>")
    answer = WeChatTestClient(app).post(*PushSigner(TOKEN).sign(xml))
    assert answer.status in (200, 400), answer.body
