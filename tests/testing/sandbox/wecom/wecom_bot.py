"""A WeCom callback endpoint written with wechatpy alone (no kf_plugin), served on a loopback port.

It holds the sandbox's callbacks to wechatpy's own reading: ``WeChatCrypto`` of
``wechatpy.enterprise.crypto`` checks ``msg_signature`` and decrypts for the corpid (the
receive id); the URL check (GET) answers the decrypted ``echostr``. It answers every
callback with ``success`` at once and keeps what it heard; it pulls nothing itself.
"""
from __future__ import annotations

import threading
from typing import Callable, Dict, List, Optional

import xmltodict
from flask import Flask, Response, request
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException

TOKEN = "wecom-bot-token"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


class WeComBot:
    """``heard``: the decrypted callbacks' fields, in order; ``refused``: callbacks whose crypto failed."""

    def __init__(self, corpid: str, token: str = TOKEN, aes_key: str = AES_KEY, status: int = 200):
        self.crypto = WeChatCrypto(token, aes_key, corpid)
        self.status = status
        self.url = ""  # where it is served, set by whoever serves it
        self.heard: List[Dict[str, str]] = []
        self.raw: List[str] = []
        self.refused: List[str] = []
        self.hold = threading.Event()  # cleared: answers wait until it is set (a slow bot)
        self.hold.set()
        self.on_heard: Optional[Callable[[Dict[str, str]], None]] = None  # run inside the handler, before answering
        self.app = Flask("wecom_bot")
        self.app.add_url_rule("/wecom", "wecom", self.answer, methods=["GET", "POST"])

    def answer(self) -> Response:
        args = request.args
        try:
            if request.method == "GET":
                echo = self.crypto.check_signature(args["msg_signature"], args["timestamp"], args["nonce"],
                                                   args["echostr"])
                return Response(echo, 200, mimetype="text/plain")
            body = request.get_data(as_text=True)
            xml = self.crypto.decrypt_message(body, args["msg_signature"], args["timestamp"], args["nonce"])
        except (InvalidSignatureException, KeyError, ValueError) as exc:
            self.refused.append(f"{type(exc).__name__}: {exc}")
            return Response("refused", 403)
        except Exception as exc:  # wechatpy's InvalidCorpIdException and decoding errors alike
            self.refused.append(f"{type(exc).__name__}: {exc}")
            return Response("refused", 400)
        self.hold.wait(10)
        fields = dict(xmltodict.parse(xml)["xml"])
        self.raw.append(body)
        self.heard.append(fields)
        if self.on_heard is not None:
            self.on_heard(fields)
        return Response("success", self.status, mimetype="text/plain")

    def tokens(self, open_kfid: Optional[str] = None) -> List[str]:
        return [fields["Token"] for fields in self.heard if open_kfid is None or fields["OpenKfId"] == open_kfid]
