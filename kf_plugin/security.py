"""Push signatures and safe-mode (AES) encryption, on wechatpy's primitives.

wechatpy does the AES work; this module computes the SHA-1 signatures as
wechatpy does, compares them in constant time, validates keys up front, accepts the
previous EncodingAESKey during a key change, and renders the encrypted reply
envelope compactly.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Iterable, List, Optional, Tuple

from wechatpy.crypto import PrpCrypto
from wechatpy.exceptions import InvalidAppIdException

from .errors import BadPush, ConfigError
from .replies import cdata

__all__ = ["sign", "signature_matches", "decode_aes_key", "PushCipher"]

_AES_KEY = re.compile(r"[A-Za-z0-9]{43}")


def sign(*parts: str) -> str:
    """WeChat's signature: SHA-1 of the parts' UTF-8 bytes, sorted and concatenated (wechatpy's WeChatSigner)."""
    return hashlib.sha1(b"".join(sorted(part.encode("utf-8") for part in parts))).hexdigest()


def signature_matches(expected: str, given: Optional[str]) -> bool:
    """Compare a signature in constant time; a missing one never matches."""
    if not given:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8", "surrogatepass"))


def decode_aes_key(encoding_aes_key: str, setting: str = "KF_ENCODING_AES_KEY") -> bytes:
    """The 32-byte AES key behind a 43-character EncodingAESKey.

    :raises ConfigError: the key is not 43 letters and digits.
    """
    if not isinstance(encoding_aes_key, str) or not _AES_KEY.fullmatch(encoding_aes_key):
        raise ConfigError(f"{setting} must be the 43 letters and digits shown in the WeChat console "
                          f"(got {len(encoding_aes_key) if isinstance(encoding_aes_key, str) else 0} characters)")
    return base64.b64decode(encoding_aes_key + "=")


class PushCipher:
    """Decrypts safe-mode pushes and encrypts replies for one official account.

    ``previous_keys`` are tried after ``encoding_aes_key`` when decrypting, so
    pushes keep flowing while a new key propagates; a reply is encrypted with
    the key that decrypted its push.
    """

    def __init__(self, token: str, encoding_aes_key: str, appid: str,
                 previous_keys: Iterable[str] = ()):
        if not appid:
            raise ConfigError("KF_APPID is required in safe mode (KF_ENCODING_AES_KEY is set): "
                              "the decrypted push names the AppID it is meant for")
        self.token = token
        self.appid = appid
        self._cryptos: List[PrpCrypto] = [PrpCrypto(decode_aes_key(encoding_aes_key))]
        self._cryptos += [PrpCrypto(decode_aes_key(k, "KF_ENCODING_AES_KEY_PREVIOUS")) for k in previous_keys]

    def verify(self, timestamp: str, nonce: str, encrypted: str, msg_signature: Optional[str]) -> None:
        """:raises BadPush: (403) ``msg_signature`` does not sign ``encrypted``."""
        if not signature_matches(sign(self.token, timestamp, nonce, encrypted), msg_signature):
            raise BadPush(403, "msg_signature does not match")

    def decrypt(self, encrypted: str) -> Tuple[str, int]:
        """The plaintext of ``encrypted`` and the index of the key that opened it.

        :raises BadPush: (400) no configured key decrypts it for this AppID.
        """
        wrong_appid = False
        for index, crypto in enumerate(self._cryptos):
            try:
                return crypto.decrypt(encrypted, self.appid), index
            except InvalidAppIdException:
                wrong_appid = True
            except Exception:  # wechatpy surfaces bad input as binascii/struct/Value/Unicode errors
                continue
        if wrong_appid:
            raise BadPush(400, "the encrypted push is for another AppID")
        raise BadPush(400, "cannot decrypt the push with the configured EncodingAESKey")

    def encrypt_text(self, plaintext: str, key_index: int = 0) -> str:
        """``plaintext`` encrypted for this AppID (base64), with the key at ``key_index``."""
        return self._cryptos[key_index].encrypt(plaintext, self.appid).decode("ascii")

    def encrypt(self, plaintext: str, nonce: str, timestamp: str, key_index: int = 0) -> str:
        """The encrypted reply envelope WeChat expects, compact."""
        encrypted = self.encrypt_text(plaintext, key_index)
        return "".join((
            "<xml><Encrypt>", cdata(encrypted), "</Encrypt>",
            "<MsgSignature>", cdata(sign(self.token, timestamp, nonce, encrypted)), "</MsgSignature>",
            "<TimeStamp>", timestamp, "</TimeStamp>",
            "<Nonce>", cdata(nonce), "</Nonce></xml>",
        ))
