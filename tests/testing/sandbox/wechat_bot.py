"""A bot written with wechatpy alone (no kf_plugin), served on a loopback port, for the conversation tests.

It holds the sandbox's pushes to wechatpy's own reading: the signature checked with
``check_signature`` (and in safe mode ``WeChatCrypto.decrypt_message``, which checks
``msg_signature`` and the AppID), the XML parsed with ``parse_message``. It answers:

- ``人工`` → ``transfer_customer_service``; ``找 <kf_account>`` → the same naming that agent;
- ``接入 <kf_account>`` / ``结束 <kf_account>`` (a text, or a CLICK's key: clicks reach it during a
  session) → calls ``kfsession/create`` / ``close`` itself, inside the push handler, through
  wechatpy's client, then answers ``success``;
- any other text → a text ``收到：<text>``; other events → ``success``.
"""
from __future__ import annotations

import threading
import time
from typing import Any, List, Optional

from flask import Flask, Response, request
from wechatpy import WeChatClient, parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.replies import TextReply, TransferCustomerServiceReply
from wechatpy.utils import check_signature

from kf_plugin.testing.sandbox import Sandbox
from kf_plugin.testing.sandbox.redirect import RedirectingSession

TOKEN = "bot-token"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


class WeChatBot:
    """``received``: the pushes it accepted, parsed by wechatpy, in order; ``log``: what it did, in order
    (``"push:<type or event>"``, ``"api answered:<errcode>"``); ``refused``: pushes whose signature failed."""

    def __init__(self, sandbox: Sandbox, api_url: str, aes_key: Optional[str] = None):
        self.sandbox = sandbox
        self.url = ""  # where it is served, set by whoever serves it
        self.crypto = WeChatCrypto(TOKEN, aes_key, sandbox.appid) if aes_key else None
        self.reply_crypto = self.crypto  # what encrypts its replies (another one makes them unopenable)
        self.client = WeChatClient(sandbox.appid, sandbox.secret)
        self.client._http = RedirectingSession(api_url)
        self.received: List[Any] = []
        self.log: List[str] = []
        self.refused: List[str] = []
        self.hold = threading.Event()  # cleared: handlers wait until it is set (a slow bot)
        self.hold.set()
        self.api_idle = threading.Event()  # set while none of its handlers is calling the API
        self.api_idle.set()
        self.app = Flask("wechat_bot")
        self.app.add_url_rule("/wechat", "wechat", self.answer, methods=["POST"])

    def answer(self) -> Response:
        args = request.args
        try:
            check_signature(TOKEN, args["signature"], args["timestamp"], args["nonce"])
            body = request.get_data(as_text=True)
            if self.crypto is not None:
                body = self.crypto.decrypt_message(body, args["msg_signature"], args["timestamp"], args["nonce"])
        except (InvalidSignatureException, KeyError) as exc:
            self.refused.append(repr(exc))
            return Response("bad signature", 403)
        message = parse_message(body)
        if message.type == "event" and message.event.startswith("kf_"):
            # A kf_* event comes after the API call that caused it has been answered: the call returns first,
            # so the log's order is WeChat's, not the threads'. (If the event came first, this waits 5 s.)
            self.api_idle.wait(5)
        self.received.append(message)
        self.log.append(f"push:{getattr(message, 'event', message.type)}")
        self.hold.wait(10)
        reply = self.reply_to(message)
        if reply is None:
            return Response("success", content_type="text/plain")
        if self.reply_crypto is not None:
            reply = self.reply_crypto.encrypt_message(reply, args["nonce"], args["timestamp"])
        return Response(reply, content_type="application/xml")

    def reply_to(self, message: Any) -> Optional[str]:
        if message.type == "event" and message.event == "click":
            text = message.key
        elif message.type == "text":
            text = message.content
        else:
            return None
        if text == "人工":
            return TransferCustomerServiceReply(message=message).render()
        command, _, kf_account = text.partition(" ")
        if command == "找":
            return (f"<xml><ToUserName><![CDATA[{message.source}]]></ToUserName><FromUserName><![CDATA["
                    f"{message.target}]]></FromUserName><CreateTime>{int(time.time())}</CreateTime><MsgType>"
                    "<![CDATA[transfer_customer_service]]></MsgType><TransInfo><KfAccount><![CDATA["
                    f"{kf_account}]]></KfAccount></TransInfo></xml>")
        if command in ("接入", "结束"):
            call = self.client.customservice.create_session if command == "接入" else \
                self.client.customservice.close_session
            self.api_idle.clear()
            try:
                answer = call(message.source, kf_account)
                self.log.append(f"api answered:{answer['errcode']}")
            finally:
                self.api_idle.set()
            return None
        return TextReply(message=message, content=f"收到：{text}").render() if message.type == "text" else None

    def events(self) -> List[Any]:
        """The events received, in order."""
        return [m for m in self.received if m.type == "event"]
