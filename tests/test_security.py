"""Signatures, AES keys and the safe-mode cipher, against the public vectors."""
from __future__ import annotations

import base64
import re

import pytest
import xmltodict
from hypothesis import given, settings
from hypothesis import strategies as st
from wechatpy.crypto import PrpCrypto
from wechatpy.utils import WeChatSigner

from kf_plugin.errors import BadPush, ConfigError
from kf_plugin.security import PushCipher, decode_aes_key, sign, signature_matches

from .conftest import AES_KEY, APPID, TOKEN, vectors

OTHER_KEY = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"
COMPACT = re.compile(r">\s+<")


# -- the public vectors --------------------------------------------------------------------------------

def test_decrypt_vector():
    v = vectors()["decrypt"]
    assert sign(v["token"], v["timestamp"], v["nonce"], v["encrypt"]) == v["msg_signature"]
    cipher = PushCipher(v["token"], v["encoding_aes_key"], v["appid"])
    cipher.verify(v["timestamp"], v["nonce"], v["encrypt"], v["msg_signature"])  # does not raise
    assert cipher.decrypt(v["encrypt"]) == (v["plaintext"], 0)


@pytest.mark.parametrize("field, value", [
    ("msg_signature", "0" * 40),
    ("timestamp", "1458300677"),
    ("nonce", "260774614"),
    ("encrypt", "x"),
], ids=["signature", "timestamp", "nonce", "encrypt"])
def test_decrypt_vector_with_a_changed_part_fails_verification(field, value):
    v = dict(vectors()["decrypt"], **{field: value})
    cipher = PushCipher(v["token"], v["encoding_aes_key"], v["appid"])
    with pytest.raises(BadPush) as caught:
        cipher.verify(v["timestamp"], v["nonce"], v["encrypt"], v["msg_signature"])
    assert caught.value.status == 403
    assert "msg_signature" in caught.value.reason


def test_decrypt_vector_for_another_appid_is_refused():
    v = vectors()["decrypt"]
    with pytest.raises(BadPush) as caught:
        PushCipher(v["token"], v["encoding_aes_key"], "wx0000000000000000").decrypt(v["encrypt"])
    assert caught.value.status == 400
    assert "another AppID" in caught.value.reason


def test_decrypt_vector_with_the_previous_key_slot():
    v = vectors()["decrypt"]
    cipher = PushCipher(v["token"], OTHER_KEY, v["appid"], previous_keys=[v["encoding_aes_key"]])
    assert cipher.decrypt(v["encrypt"]) == (v["plaintext"], 1)


def test_encrypt_deterministic_vector(monkeypatch):
    v = vectors()["encrypt_deterministic"]
    monkeypatch.setattr(PrpCrypto, "get_random_string", lambda self: v["random16"])
    cipher = PushCipher("any-token", v["encoding_aes_key"], v["appid"])
    assert cipher.encrypt_text(v["plaintext"]) == v["encrypt"]
    assert cipher.decrypt(v["encrypt"]) == (v["plaintext"], 0)
    raw = base64.b64decode(v["encrypt"])
    assert len(raw) % 32 == 0  # PKCS#7 with block size 32


def test_encrypt_deterministic_vector_with_a_previous_key_index(monkeypatch):
    v = vectors()["encrypt_deterministic"]
    monkeypatch.setattr(PrpCrypto, "get_random_string", lambda self: v["random16"])
    cipher = PushCipher("any-token", OTHER_KEY, v["appid"], previous_keys=[v["encoding_aes_key"]])
    assert cipher.encrypt_text(v["plaintext"], key_index=1) == v["encrypt"]
    assert cipher.encrypt_text(v["plaintext"], key_index=0) != v["encrypt"]


def test_plain_signature_vector():
    v = vectors()["plain_signature"]
    assert sign(v["token"], v["timestamp"], v["nonce"]) == v["signature"]
    # sorted before hashing: the order of the parts does not matter
    assert sign(v["nonce"], v["timestamp"], v["token"]) == v["signature"]
    assert signature_matches(sign(v["token"], v["timestamp"], v["nonce"]), v["signature"])


@settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(st.lists(st.text(st.characters(blacklist_categories=("Cs",))), min_size=1, max_size=5))
def test_sign_is_wechatpys_signature(parts):
    signer = WeChatSigner()
    signer.add_data(*parts)
    assert sign(*parts) == signer.signature


# -- signature_matches ---------------------------------------------------------------------------------

GOOD = vectors()["plain_signature"]["signature"]


@pytest.mark.parametrize("given, result", [
    (GOOD, True),
    ("0" * 40, False),
    (GOOD[:-1] + ("0" if GOOD[-1] != "0" else "1"), False),
    (None, False),
    ("", False),
    (GOOD.upper(), False),
    (GOOD[:20], False),
    (GOOD + " ", False),
    ("签名" * 20, False),
    ("\udcff" + GOOD[1:], False),
], ids=["equal", "different", "last-char", "none", "empty", "uppercase", "prefix", "suffix", "non-ascii",
        "lone-surrogate"])
def test_signature_matches(given, result):
    assert signature_matches(GOOD, given) is result


# -- EncodingAESKey ---------------------------------------------------------------------------------------

def test_decode_aes_key_gives_32_bytes():
    key = decode_aes_key(AES_KEY)
    assert len(key) == 32
    assert key == base64.b64decode(AES_KEY + "=")


@pytest.mark.parametrize("key", [
    AES_KEY[:42],
    AES_KEY + "H",
    "",
    AES_KEY[:42] + "+",
    AES_KEY[:42] + "/",
    AES_KEY[:42] + "=",
    AES_KEY[:42] + "-",
    AES_KEY[:42] + "é",
    AES_KEY[:42] + "１",
    AES_KEY[:21] + " " + AES_KEY[22:],
    AES_KEY[:42] + "\n",
    AES_KEY + "\n",
    None,
    43,
], ids=["42-chars", "44-chars", "empty", "plus", "slash", "equals", "dash", "non-ascii-letter",
        "fullwidth-digit", "space", "newline-instead", "trailing-newline", "none", "int"])
@pytest.mark.parametrize("setting", ["KF_ENCODING_AES_KEY", "KF_ENCODING_AES_KEY_PREVIOUS"])
def test_decode_aes_key_rejects_bad_keys_naming_the_setting(key, setting):
    with pytest.raises(ConfigError) as caught:
        decode_aes_key(key, setting)
    assert setting in str(caught.value)


def test_decode_aes_key_default_setting_name():
    with pytest.raises(ConfigError, match="KF_ENCODING_AES_KEY"):
        decode_aes_key(AES_KEY[:42])


@pytest.mark.parametrize("appid", ["", None])
def test_push_cipher_requires_an_appid(appid):
    with pytest.raises(ConfigError, match="KF_APPID"):
        PushCipher(TOKEN, AES_KEY, appid)


def test_push_cipher_checks_keys_up_front():
    with pytest.raises(ConfigError, match="KF_ENCODING_AES_KEY"):
        PushCipher(TOKEN, AES_KEY[:42], APPID)
    with pytest.raises(ConfigError, match="KF_ENCODING_AES_KEY_PREVIOUS"):
        PushCipher(TOKEN, AES_KEY, APPID, previous_keys=[AES_KEY + "x"])


# -- encrypt / decrypt round trips --------------------------------------------------------------------------

REPLY = ("<xml><ToUserName><![CDATA[oUser]]></ToUserName><FromUserName><![CDATA[gh_account]]></FromUserName>"
         "<CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType>"
         "<Content><![CDATA[你好，客服马上来]]></Content></xml>")


@pytest.mark.parametrize("nonce", ["1320562132", "a]]>b<Nonce>"], ids=["plain-nonce", "cdata-terminator-nonce"])
def test_encrypted_reply_round_trip_and_compact(nonce):
    cipher = PushCipher(TOKEN, AES_KEY, APPID)
    envelope = cipher.encrypt(REPLY, nonce, "1700000000")
    assert envelope.startswith("<xml><Encrypt><![CDATA[")
    assert envelope.endswith("</Nonce></xml>")
    assert not COMPACT.search(envelope)
    assert "\n" not in envelope
    fields = xmltodict.parse(envelope)["xml"]
    assert list(fields) == ["Encrypt", "MsgSignature", "TimeStamp", "Nonce"]
    assert fields["TimeStamp"] == "1700000000"
    assert fields["Nonce"] == nonce
    assert fields["MsgSignature"] == sign(TOKEN, "1700000000", nonce, fields["Encrypt"])
    cipher.verify("1700000000", nonce, fields["Encrypt"], fields["MsgSignature"])
    assert cipher.decrypt(fields["Encrypt"]) == (REPLY, 0)


def test_encrypt_uses_fresh_randomness():
    cipher = PushCipher(TOKEN, AES_KEY, APPID)
    assert cipher.encrypt_text(REPLY) != cipher.encrypt_text(REPLY)


def test_reply_encrypted_with_the_previous_key_opens_only_with_it():
    cipher = PushCipher(TOKEN, OTHER_KEY, APPID, previous_keys=[AES_KEY])
    fields = xmltodict.parse(cipher.encrypt(REPLY, "n", "1", key_index=1))["xml"]
    assert PushCipher(TOKEN, AES_KEY, APPID).decrypt(fields["Encrypt"]) == (REPLY, 0)
    with pytest.raises(BadPush):
        PushCipher(TOKEN, OTHER_KEY, APPID).decrypt(fields["Encrypt"])


@pytest.mark.parametrize("encrypted, reason", [
    ("", "cannot decrypt"),
    ("not base64 at all!", "cannot decrypt"),
    ("QUJDREVGR0hJSktMTU5PUA==", "cannot decrypt"),
    ("====", "cannot decrypt"),
    ("加密", "cannot decrypt"),
], ids=["empty", "not-base64", "one-block", "padding-only", "non-ascii"])
def test_decrypt_refuses_garbage_with_bad_push(encrypted, reason):
    with pytest.raises(BadPush) as caught:
        PushCipher(TOKEN, AES_KEY, APPID).decrypt(encrypted)
    assert caught.value.status == 400
    assert "cannot decrypt" in caught.value.reason
    assert reason in caught.value.reason


def test_decrypt_with_the_wrong_key_says_it_cannot_decrypt():
    encrypted = PushCipher(TOKEN, OTHER_KEY, APPID).encrypt_text(REPLY)
    with pytest.raises(BadPush) as caught:
        PushCipher(TOKEN, AES_KEY, APPID).decrypt(encrypted)
    assert caught.value.status == 400
    assert "cannot decrypt" in caught.value.reason
