"""(c) The minimal view a wechatpy user writes: check the signature, (decrypt,) parse, transfer, (encrypt)."""
from __future__ import annotations

from flask import Flask, abort, request
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.replies import TransferCustomerServiceReply
from wechatpy.utils import check_signature

from .common import AES_KEY, APPID, TOKEN, TRIGGER, URL, safe_mode


def create_app() -> Flask:
    app = Flask(__name__)
    crypto = WeChatCrypto(TOKEN, AES_KEY, APPID) if safe_mode() else None

    @app.route(URL, methods=["GET", "POST"])
    def wechat():
        signature = request.args.get("signature", "")
        timestamp = request.args.get("timestamp", "")
        nonce = request.args.get("nonce", "")
        try:
            check_signature(TOKEN, signature, timestamp, nonce)
        except InvalidSignatureException:
            abort(403)
        if request.method == "GET":
            return request.args.get("echostr", "")
        if crypto is not None:
            try:
                xml = crypto.decrypt_message(request.data, request.args.get("msg_signature", ""), timestamp, nonce)
            except Exception:
                abort(403)
        else:
            xml = request.data
        message = parse_message(xml)
        if message.type == "text" and TRIGGER in message.content:
            reply = TransferCustomerServiceReply(message=message).render()
            if crypto is not None:
                reply = crypto.encrypt_message(reply, nonce, timestamp)
            return reply, 200, {"Content-Type": "application/xml"}
        return "success"

    return app
