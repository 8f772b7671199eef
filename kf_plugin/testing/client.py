"""Pushes signed (and encrypted) exactly as WeChat sends them, for tests and tools.

::

    client = WeChatTestClient(app)
    answer = client.send_text("转人工")
    assert answer.message_type == "transfer_customer_service"
"""
from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import xmltodict
from flask import Flask

from ..errors import KfError
from ..replies import cdata
from ..security import PushCipher, sign, signature_matches

__all__ = ["message_xml", "PushSigner", "Answer", "WeChatTestClient"]

_msg_ids = itertools.count(int(time.time() * 1000) % 10**15)


def message_xml(*, text: Optional[str] = None, event: Optional[str] = None, key: Optional[str] = None,
                msg_type: Optional[str] = None, sender: str = "oUser0123456789", account: str = "gh_account",
                create_time: Optional[int] = None, msg_id: Optional[int] = None,
                extra: Optional[Mapping[str, str]] = None) -> str:
    """The XML of a push: a text message (``text``), an event (``event``, ``key``) or any ``msg_type``.

    Messages get a fresh MsgId unless ``msg_id`` is given; ``extra`` adds fields.
    """
    if event is not None:
        kind = "event"
    else:
        kind = msg_type or "text"
    fields: Dict[str, Any] = {
        "ToUserName": account, "FromUserName": sender,
        "CreateTime": int(time.time()) if create_time is None else create_time, "MsgType": kind,
    }
    if event is not None:
        fields["Event"] = event
        if key is not None:
            fields["EventKey"] = key
    else:
        if text is not None:
            fields["Content"] = text
        fields["MsgId"] = next(_msg_ids) if msg_id is None else msg_id
    fields.update(extra or {})
    body = "".join(f"<{name}>{value if isinstance(value, int) else cdata(str(value))}</{name}>"
                   for name, value in fields.items())
    return f"<xml>{body}</xml>"


class PushSigner:
    """Signs pushes like WeChat: the query string and, in safe mode, the encrypted body."""

    def __init__(self, token: str, encoding_aes_key: Optional[str] = None, appid: Optional[str] = None,
                 clock: Callable[[], float] = time.time):
        self.token = token
        self.cipher = PushCipher(token, encoding_aes_key, appid or "") if encoding_aes_key else None
        self.clock = clock

    def sign(self, xml: str, *, timestamp: Optional[str] = None, nonce: Optional[str] = None,
             encrypt: Optional[bool] = None) -> Tuple[Dict[str, str], bytes]:
        """``(query, body)`` for ``xml``; encrypted when a key is set unless ``encrypt=False``."""
        timestamp = timestamp or str(int(self.clock()))
        nonce = nonce or str(secrets.randbelow(10**10))
        query = {"signature": sign(self.token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}
        if self.cipher is None or encrypt is False:
            return query, xml.encode("utf-8")
        encrypted = self.cipher.encrypt_text(xml)
        fields = xmltodict.parse(xml)["xml"]
        account = fields.get("ToUserName") or ""
        query.update(encrypt_type="aes", msg_signature=sign(self.token, timestamp, nonce, encrypted),
                     openid=fields.get("FromUserName") or "")
        body = f"<xml><ToUserName>{cdata(account)}</ToUserName><Encrypt>{cdata(encrypted)}</Encrypt></xml>"
        return query, body.encode("utf-8")

    def verification(self, echostr: str = "echo-1234") -> Dict[str, str]:
        """The query of WeChat's GET that verifies the URL."""
        timestamp, nonce = str(int(self.clock())), str(secrets.randbelow(10**10))
        return {"signature": sign(self.token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce,
                "echostr": echostr}

    def open_reply(self, body: str) -> str:
        """The plain XML of a reply, decrypted (and its MsgSignature checked) if it is encrypted.

        :raises KfError: an encrypted reply whose signature or encryption is wrong.
        """
        if "<Encrypt>" not in body:
            return body
        if self.cipher is None:
            raise KfError("the reply is encrypted but no EncodingAESKey was given")
        envelope = xmltodict.parse(body, strip_whitespace=False)["xml"]
        expected = sign(self.token, envelope["TimeStamp"], envelope["Nonce"], envelope["Encrypt"])
        if not signature_matches(expected, envelope.get("MsgSignature")):
            raise KfError("the reply's MsgSignature does not match")
        return self.cipher.decrypt(envelope["Encrypt"])[0]


@dataclass(frozen=True)
class Answer:
    """What the webhook answered: status, raw body, and the reply decrypted and parsed."""

    status: int
    body: str
    content_type: str
    xml: str

    @property
    def fields(self) -> Dict[str, Any]:
        """The reply's XML fields; empty for ``success`` or an error."""
        if not self.xml.startswith("<xml>"):
            return {}
        return dict(xmltodict.parse(self.xml)["xml"])

    @property
    def message_type(self) -> Optional[str]:
        return self.fields.get("MsgType")

    @property
    def content(self) -> Optional[str]:
        return self.fields.get("Content")

    @property
    def kf_account(self) -> Optional[str]:
        info = self.fields.get("TransInfo")
        return info.get("KfAccount") if isinstance(info, dict) else None


class WeChatTestClient:
    """Sends signed pushes to a Flask app through its test client.

    Token, key and AppID come from the app's ``KF_*`` config unless given.
    """

    def __init__(self, app: Flask, signer: Optional[PushSigner] = None, url: Optional[str] = None):
        self.client = app.test_client()
        self.url = url or app.config.get("KF_URL", "/wechat")
        self.signer = signer or PushSigner(app.config["KF_TOKEN"], app.config.get("KF_ENCODING_AES_KEY"),
                                           app.config.get("KF_APPID"))

    def post(self, query: Mapping[str, str], body: bytes) -> Answer:
        response = self.client.post(self.url, query_string=dict(query), data=body)
        text = response.get_data(as_text=True)
        xml = self.signer.open_reply(text) if response.status_code == 200 else text
        return Answer(response.status_code, text, response.content_type, xml)

    def send(self, xml: str, **sign_options: Any) -> Answer:
        """Sign (and encrypt) ``xml`` and post it."""
        return self.post(*self.signer.sign(xml, **sign_options))

    def send_text(self, text: str, **fields: Any) -> Answer:
        return self.send(message_xml(text=text, **fields))

    def send_event(self, event: str, key: Optional[str] = None, **fields: Any) -> Answer:
        return self.send(message_xml(event=event, key=key, **fields))
