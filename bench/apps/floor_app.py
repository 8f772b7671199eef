"""(f) The floor, for reference only: a Flask view that reads the body and returns a transfer reply.

No signature check, no XML parse: it does not do the job; it shows what gunicorn + Flask alone cost per
request on this machine (every other system pays that too). The reply is addressed to the sender (found by
a substring search) so the benchmark's answer check still passes; in safe mode the sender comes from the
``openid`` query parameter and the reply is encrypted (no decryption). ``BENCH_PUSH=common``: the reply is
the text reply :data:`apps.common.REPLY_TEXT` instead of the transfer.
"""
from __future__ import annotations

from flask import Flask, request

from kf_plugin.security import PushCipher

from .common import ACCOUNT, AES_KEY, APPID, REPLY_TEXT, TOKEN, URL, common_push, safe_mode

TRANSFER = "<MsgType><![CDATA[transfer_customer_service]]></MsgType>"
TEXT_REPLY = f"<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{REPLY_TEXT}]]></Content>"


def create_app() -> Flask:
    app = Flask(__name__)
    cipher = PushCipher(TOKEN, AES_KEY, APPID) if safe_mode() else None
    answer = TEXT_REPLY if common_push() else TRANSFER

    @app.route(URL, methods=["GET", "POST"])
    def wechat():
        if request.method == "GET":
            return request.args.get("echostr", "")
        body = request.get_data()
        sender = request.args.get("openid") if cipher is not None else _sender(body)
        reply = (f"<xml><ToUserName><![CDATA[{sender}]]></ToUserName><FromUserName><![CDATA[{ACCOUNT}]]>"
                 f"</FromUserName><CreateTime>0</CreateTime>{answer}</xml>")
        if cipher is not None:
            reply = cipher.encrypt(reply, request.args.get("nonce", ""), request.args.get("timestamp", ""))
        return reply, 200, {"Content-Type": "application/xml"}

    return app


def _sender(body: bytes) -> str:
    start = body.find(b"<FromUserName><![CDATA[") + len(b"<FromUserName><![CDATA[")
    return body[start:body.find(b"]]>", start)].decode("utf-8")
