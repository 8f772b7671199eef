"""The WeCom callback and its crypto, held to wechatpy's WeCom crypto (``wechatpy.enterprise.crypto``).

Every payload here is made by wechatpy's ``WeChatCrypto`` / ``PrpCrypto`` as WeCom makes it; our side verifies
and decrypts it. Broken requests are built by changing one part of a good one.
"""
from __future__ import annotations

import base64
import logging
import struct
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wechatpy.crypto.base import WeChatCipher
from wechatpy.enterprise.crypto import PrpCrypto, WeChatCrypto
from wechatpy.utils import WeChatSigner

from kf_plugin.errors import BadPush, ConfigError
from kf_plugin.wecom.callback import KF_EVENT, WeComCallback, parse_event
from kf_plugin.wecom.crypto import WeComCipher

from ..conftest import FakeClock

TOKEN = "wecom-callback-token"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
OTHER_KEY = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"
CORPID = "ww1234567890abcdef"
OPEN_KFID = "wkAJ2GCAAAZSfhHCt7IFSvLKtMPxyJTw"
SYNC_TOKEN = "ENCApHxnGDNAVNY4AaSJKj4Tb5mwsEMzxhFmHVGcra996NR"
T0 = 1_700_000_000
NONCE = "1372623149"


def kf_event_xml(token: Optional[str] = SYNC_TOKEN, open_kfid: Optional[str] = OPEN_KFID, to: str = CORPID,
                 event: str = KF_EVENT, msg_type: str = "event") -> str:
    parts = [f"<ToUserName><![CDATA[{to}]]></ToUserName>", f"<CreateTime>{T0}</CreateTime>",
             f"<MsgType><![CDATA[{msg_type}]]></MsgType>", f"<Event><![CDATA[{event}]]></Event>"]
    if token is not None:
        parts.append(f"<Token><![CDATA[{token}]]></Token>")
    if open_kfid is not None:
        parts.append(f"<OpenKfId><![CDATA[{open_kfid}]]></OpenKfId>")
    return "<xml>" + "".join(parts) + "</xml>"


def signature(*parts: str) -> str:
    signer = WeChatSigner()
    signer.add_data(*parts)
    return signer.signature


def encrypted_post(plaintext: str, corpid: str = CORPID, key: str = AES_KEY,
                   timestamp: int = T0) -> Tuple[Dict[str, str], bytes]:
    """The query and body WeCom sends for ``plaintext``: wechatpy encrypts, the envelope is WeCom's."""
    crypto = WeChatCrypto(TOKEN, key, corpid)
    sealed = crypto.encrypt_message(plaintext, NONCE, str(timestamp))
    encrypted = sealed.split("<Encrypt><![CDATA[")[1].split("]]>")[0]
    body = (f"<xml><ToUserName><![CDATA[{CORPID}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt>"
            "<AgentID><![CDATA[]]></AgentID></xml>")
    query = {"msg_signature": sealed.split("<MsgSignature><![CDATA[")[1].split("]]>")[0],
             "timestamp": str(timestamp), "nonce": NONCE}
    return query, body.encode("utf-8")


def signed_post(encrypted: str, timestamp: int = T0) -> Tuple[Dict[str, str], bytes]:
    """A body holding ``encrypted`` as it is (any text), correctly signed: what gets past the signature."""
    body = f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>".encode()
    return {"msg_signature": signature(TOKEN, str(timestamp), NONCE, encrypted), "timestamp": str(timestamp),
            "nonce": NONCE}, body


def raw_payload(message: bytes, receiver: bytes, pad_byte: Optional[int] = None, length: Optional[int] = None) -> str:
    """A payload encrypted with the right key but assembled by hand (to break one part of it): ``pad_byte``
    fills the padding instead of its count, ``length`` replaces the message's length field."""
    size = len(message) if length is None else length
    plain = b"R" * 16 + struct.pack(">I", size) + message + receiver
    count = 32 - len(plain) % 32
    plain += bytes([count if pad_byte is None else pad_byte]) * count
    return base64.b64encode(WeChatCipher(base64.b64decode(AES_KEY + "=")).encrypt(plain)).decode()


class Harness:
    """A callback with a recording ``on_event`` and a body reader that says whether it was used."""

    def __init__(self, clock: FakeClock, **options: Any):
        self.events: List[Tuple[str, str]] = []
        self.reads = 0
        cipher = WeComCipher(TOKEN, AES_KEY, CORPID, previous_keys=options.pop("previous_keys", ()))
        self.callback = WeComCallback(cipher, lambda kfid, token: self.events.append((kfid, token)),
                                      clock=clock, **options)

    def post(self, query: Dict[str, str], body: bytes):
        stream = [body]

        def read(limit: int) -> bytes:
            self.reads += 1
            data = stream.pop() if stream else b""
            return data[:limit]
        return self.callback.handle("POST", query, read)

    def get(self, query: Dict[str, str]):
        return self.callback.handle("GET", query, _never_read)


def _never_read(limit: int) -> bytes:
    raise AssertionError("a GET has no body to read")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(float(T0))


@pytest.fixture
def harness(clock) -> Harness:
    return Harness(clock)


# -- the happy paths -----------------------------------------------------------------------------------------

def test_url_verification_answers_the_decrypted_echostr_as_wechatpy_reads_it(harness):
    echostr = PrpCrypto(base64.b64decode(AES_KEY + "=")).encrypt("8765432109876543210", CORPID).decode()
    query = {"msg_signature": signature(TOKEN, str(T0), NONCE, echostr), "timestamp": str(T0), "nonce": NONCE,
             "echostr": echostr}
    answer = harness.get(query)
    assert (answer.status, answer.body) == (200, "8765432109876543210")
    assert answer.body == WeChatCrypto(TOKEN, AES_KEY, CORPID).check_signature(
        query["msg_signature"], query["timestamp"], NONCE, echostr)


def test_a_kf_event_is_handed_over_and_answered_with_an_empty_200(harness):
    answer = harness.post(*encrypted_post(kf_event_xml()))
    assert (answer.status, answer.body) == (200, "")
    assert harness.events == [(OPEN_KFID, SYNC_TOKEN)]


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=300))
def test_decryption_matches_wechatpy_for_any_plaintext(plaintext):
    query, body = encrypted_post(plaintext)
    encrypted = body.decode().split("<Encrypt><![CDATA[")[1].split("]]>")[0]
    cipher = WeComCipher(TOKEN, AES_KEY, CORPID)
    cipher.verify(query["timestamp"], NONCE, encrypted, query["msg_signature"])  # does not raise
    assert cipher.decrypt(encrypted) == plaintext
    assert WeChatCrypto(TOKEN, AES_KEY, CORPID).decrypt_message(body, query["msg_signature"], query["timestamp"],
                                                                NONCE) == plaintext


def test_the_previous_key_still_opens_callbacks_during_a_key_change(clock):
    harness = Harness(clock, previous_keys=[AES_KEY])
    harness.callback.cipher = WeComCipher(TOKEN, OTHER_KEY, CORPID, previous_keys=[AES_KEY])
    assert harness.post(*encrypted_post(kf_event_xml())).status == 200
    assert harness.events == [(OPEN_KFID, SYNC_TOKEN)]


@pytest.mark.parametrize("xml", [
    kf_event_xml(event="change_external_contact"),
    kf_event_xml(msg_type="text", event=""),
    "<xml><ToUserName><![CDATA[ww1234567890abcdef]]></ToUserName><MsgType><![CDATA[event]]></MsgType></xml>",
], ids=["another event", "a message", "no event"])
def test_other_wecom_callbacks_are_acknowledged_ignored_and_logged(harness, caplog, xml):
    with caplog.at_level(logging.INFO, logger="kf_plugin.wecom.callback"):
        answer = harness.post(*encrypted_post(xml))
    assert (answer.status, answer.body) == (200, "")
    assert harness.events == []
    assert f"not {KF_EVENT}" in caplog.text


# -- refusals ------------------------------------------------------------------------------------------------

def _tampered_signature():
    query, body = encrypted_post(kf_event_xml())
    return dict(query, msg_signature="0" * 40), body


def _stale():
    return encrypted_post(kf_event_xml(), timestamp=T0 - 301)


def _other_corp():
    return encrypted_post(kf_event_xml(), corpid="wwotherCorp000000")


def _other_key():
    return encrypted_post(kf_event_xml(), key=OTHER_KEY)


BROKEN: Dict[str, Tuple[Callable[[], Tuple[Dict[str, str], bytes]], int, str]] = {
    "tampered signature": (_tampered_signature, 403, "msg_signature does not match"),
    "signature missing": (lambda: ({"timestamp": str(T0), "nonce": NONCE}, b"<xml/>"), 403,
                          "msg_signature is missing"),
    "signature not hex": (lambda: ({"msg_signature": "z" * 40, "timestamp": str(T0), "nonce": NONCE}, b""), 403,
                          "not 40 hexadecimal"),
    "stale timestamp": (_stale, 403, "timestamp is 301 s away from now (allowed: 300 s)"),
    "timestamp not a time": (lambda: ({"msg_signature": "0" * 40, "timestamp": "soon", "nonce": NONCE}, b""), 403,
                             "not a unix time"),
    "nonce missing": (lambda: ({"msg_signature": "0" * 40, "timestamp": str(T0)}, b""), 400, "nonce"),
    "other corp (receive id)": (_other_corp, 400, "another receive id than the configured corpid"),
    "other AES key": (_other_key, 400, "cannot decrypt"),
    "bad base64": (lambda: signed_post("not*base64!"), 400, "not base64"),
    "not whole blocks": (lambda: signed_post(base64.b64encode(b"x" * 40).decode()), 400,
                         "40 bytes, not a whole number of AES blocks"),
    "bad padding": (lambda: signed_post(raw_payload(b"<xml/>", CORPID.encode(), pad_byte=0)), 400,
                    "the padding is wrong"),
    "length overrun": (lambda: signed_post(raw_payload(b"<xml/>", CORPID.encode(), length=999)), 400,
                       "the length field overruns"),
    "body empty": (lambda: (encrypted_post("x")[0], b""), 400, "body is empty"),
    "body not UTF-8": (lambda: (encrypted_post("x")[0], b"<xml>\xff</xml>"), 400, "body is not UTF-8"),
    "body not XML": (lambda: (encrypted_post("x")[0], b"{\"Encrypt\": 1}"), 400, "not well-formed"),
    "no Encrypt": (lambda: (encrypted_post("x")[0], b"<xml><ToUserName>a</ToUserName></xml>"), 400,
                   "<Encrypt> is missing"),
    "event not XML": (lambda: encrypted_post("kf_msg_or_event"), 400, "not a WeCom callback"),
    "Token missing": (lambda: encrypted_post(kf_event_xml(token=None)), 400, "<Token> is missing"),
    "OpenKfId missing": (lambda: encrypted_post(kf_event_xml(open_kfid=None)), 400, "<OpenKfId> is missing"),
    "OpenKfId malformed": (lambda: encrypted_post(kf_event_xml(open_kfid="wk/../x")), 400, "<OpenKfId>"),
    "addressed to another corp": (lambda: encrypted_post(kf_event_xml(to="wwsomeoneelse")), 403, "another corp"),
}


@pytest.mark.parametrize("case", list(BROKEN), ids=list(BROKEN))
def test_a_broken_callback_is_refused_with_its_status_and_reason(harness, case):
    make, status, reason = BROKEN[case]
    answer = harness.post(*make())
    assert answer.status == status
    assert reason in answer.body
    assert harness.events == []


@pytest.mark.parametrize("query", [
    {"timestamp": str(T0), "nonce": NONCE},
    {"msg_signature": "0" * 40, "timestamp": str(T0 - 3600), "nonce": NONCE},
    {"msg_signature": "0" * 40, "timestamp": "x", "nonce": NONCE},
    {"msg_signature": "0" * 40, "timestamp": str(T0)},
], ids=["no signature", "stale", "timestamp not a time", "no nonce"])
def test_the_body_is_not_read_before_the_query_and_timestamp_pass(harness, query):
    answer = harness.post(query, b"<xml/>")
    assert answer.status in (400, 403)
    assert harness.reads == 0


def test_a_body_over_the_limit_is_refused_reading_no_more_than_one_byte_past_it(clock):
    harness = Harness(clock, max_body=1000)
    asked: List[int] = []

    def read(limit: int) -> bytes:
        asked.append(limit)
        return b"x" * limit
    query = encrypted_post("x")[0]
    answer = harness.callback.handle("POST", query, read)
    assert (answer.status, answer.body) == (413, "body is larger than 1000 bytes")
    assert sum(asked) == 1001


def test_a_body_that_cannot_be_read_is_a_400(harness):
    def broken(limit: int) -> bytes:
        raise ConnectionResetError("gone")
    answer = harness.callback.handle("POST", encrypted_post("x")[0], broken)
    assert answer.status == 400
    assert "could not be read" in answer.body


@pytest.mark.parametrize("change, status, reason", [
    ({"msg_signature": "1" * 40}, 403, "msg_signature does not match"),
    ({"timestamp": str(T0 + 400)}, 403, "timestamp is 400 s away"),
    ({"echostr": ""}, 400, "echostr is missing"),
    ({"echostr": "A" * 2000}, 400, "echostr is longer than 1024"),
    ({"echostr": "QUJD"}, 400, "3 bytes, not a whole number of AES blocks"),
], ids=["signature", "timestamp", "no echostr", "echostr too long", "echostr not a payload"])
def test_a_broken_url_verification_is_refused(harness, change, status, reason):
    echostr = PrpCrypto(base64.b64decode(AES_KEY + "=")).encrypt("42", CORPID).decode()
    query = dict({"timestamp": str(T0), "nonce": NONCE, "echostr": echostr}, **change)
    query.setdefault("msg_signature", signature(TOKEN, query["timestamp"], NONCE, query["echostr"]))
    answer = harness.get(query)
    assert answer.status == status
    assert reason in answer.body


def test_the_timestamp_window_can_be_turned_off(clock):
    harness = Harness(clock, max_clock_skew=0)
    assert harness.post(*encrypted_post(kf_event_xml(), timestamp=T0 - 86400)).status == 200


def test_an_exception_of_on_event_propagates_so_wecom_retries(harness):
    def failing(open_kfid: str, token: str) -> None:
        raise RuntimeError("cannot start a thread")
    harness.callback.on_event = failing
    with pytest.raises(RuntimeError):
        harness.post(*encrypted_post(kf_event_xml()))


def test_parse_event_reads_the_fields():
    event = parse_event(kf_event_xml(), CORPID)
    assert event is not None
    assert (event.open_kfid, event.token, event.corpid) == (OPEN_KFID, SYNC_TOKEN, CORPID)
    with pytest.raises(BadPush) as caught:
        parse_event("<xml><ToUserName>", CORPID)
    assert caught.value.status == 400


@pytest.mark.parametrize("arguments, message", [
    ((TOKEN, "short", CORPID), "43 letters and digits"),
    ((TOKEN, AES_KEY, ""), "corpid is required"),
    (("", AES_KEY, CORPID), "Token is required"),
], ids=["key", "corpid", "token"])
def test_a_cipher_with_bad_settings_is_refused(arguments, message):
    with pytest.raises(ConfigError) as caught:
        WeComCipher(*arguments)
    assert message in str(caught.value)
