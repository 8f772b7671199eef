"""WeCom callback crypto: ``msg_signature`` and the AES envelope whose receive id is the corpid.

The scheme is the Official Account's safe mode (``kf_plugin.security``) with the corpid in place of the AppID,
so the SHA-1 signature and the key decoding are reused from there. Decryption is strict where wechatpy's
``PrpCrypto`` is lenient: the base64 must be canonical, the PKCS#7 padding must be whole and the length
field must fit, so a wrong key or a mangled payload is refused with its own reason instead of decrypting to
noise. The AES itself is wechatpy's (``WeChatCipher``: AES-256-CBC, the IV the key's first 16 bytes).
"""
from __future__ import annotations

import base64
import binascii
import struct
from typing import Iterable, List, Optional

from wechatpy.crypto.base import WeChatCipher

from ..errors import BadPush, ConfigError
from ..security import decode_aes_key, sign, signature_matches

__all__ = ["WeComCipher"]

_RANDOM = 16       # bytes of random prefix before the length field
_BLOCK = 32        # WeCom pads to 32 bytes (PKCS#7 with a 32-byte block), a multiple of AES's 16
_AES_BLOCK = 16


class _Refused(Exception):
    """Why one key did not open a payload (internal: each key's attempt, before the verdict)."""

    def __init__(self, reason: str, wrong_receiver: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.wrong_receiver = wrong_receiver


class WeComCipher:
    """Verifies and decrypts what WeCom sends to a callback URL for one corp.

    ``token`` and ``encoding_aes_key`` are the callback's Token and EncodingAESKey; ``corpid`` is the receive
    id every payload must end with. ``previous_keys`` are tried after ``encoding_aes_key``, so callbacks keep
    flowing while a new key is being set in the WeCom admin console.

    :raises ConfigError: the corpid or token is empty, or a key is not 43 letters and digits.
    """

    def __init__(self, token: str, encoding_aes_key: str, corpid: str, previous_keys: Iterable[str] = ()):
        if not corpid:
            raise ConfigError("the WeCom corpid is required: every callback payload names the corp it is for")
        if not token:
            raise ConfigError("the WeCom callback Token is required: it signs every callback")
        self.token = token
        self.corpid = corpid
        keys = [decode_aes_key(encoding_aes_key, "the WeCom EncodingAESKey")]
        keys += [decode_aes_key(key, "a previous WeCom EncodingAESKey") for key in previous_keys]
        self._keys: List[bytes] = keys

    def verify(self, timestamp: str, nonce: str, encrypted: str, msg_signature: Optional[str]) -> None:
        """:raises BadPush: (403) ``msg_signature`` does not sign ``encrypted`` with this Token."""
        if not signature_matches(sign(self.token, timestamp, nonce, encrypted), msg_signature):
            raise BadPush(403, "msg_signature does not match (is the callback Token the one set in WeCom?)")

    def decrypt(self, encrypted: str) -> str:
        """The plaintext inside ``encrypted`` (base64), checked to be for this corp.

        :raises BadPush: (400) not base64, not whole AES blocks, bad padding or length (a wrong
            EncodingAESKey looks like this), not UTF-8, or meant for another receive id than the corpid.
        """
        raw = _unbase64(encrypted)
        refusals = []
        for key in self._keys:
            try:
                return self._open(key, raw)
            except _Refused as refused:
                refusals.append(refused)
        # A payload that opened cleanly but names another corp says more than one some key garbled.
        named_other = [refused for refused in refusals if refused.wrong_receiver]
        raise BadPush(400, (named_other or refusals)[0].reason)

    def _open(self, key: bytes, raw: bytes) -> str:
        plain = WeChatCipher(key).decrypt(raw)
        pad = plain[-1]
        if not 1 <= pad <= _BLOCK or plain[-pad:] != bytes([pad]) * pad:
            raise _Refused("cannot decrypt: the padding is wrong (is the EncodingAESKey the one set in WeCom?)")
        content = plain[_RANDOM:-pad]
        if len(content) < 4:
            raise _Refused("cannot decrypt: the payload is too short to hold a message")
        (length,) = struct.unpack(">I", content[:4])
        if length > len(content) - 4:
            raise _Refused("cannot decrypt: the length field overruns the payload "
                           "(is the EncodingAESKey the one set in WeCom?)")
        message, receiver = content[4:4 + length], content[4 + length:]
        if receiver != self.corpid.encode("utf-8"):
            raise _Refused("the encrypted payload is for another receive id than the configured corpid",
                           wrong_receiver=True)
        try:
            return message.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Refused(f"the decrypted message is not UTF-8 ({exc.reason} at byte {exc.start})") from None


def _unbase64(encrypted: str) -> bytes:
    """The ciphertext's bytes. :raises BadPush: (400) not canonical base64 or not whole AES blocks."""
    try:
        raw = base64.b64decode(encrypted.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise BadPush(400, "the encrypted payload is not base64") from None
    if not raw or len(raw) % _AES_BLOCK:
        raise BadPush(400, f"the encrypted payload is {len(raw)} bytes, not a whole number of AES blocks")
    if len(raw) < _RANDOM + _AES_BLOCK:
        raise BadPush(400, "the encrypted payload is too short to hold a message")
    return raw
