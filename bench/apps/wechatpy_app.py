"""(c) The minimal view a wechatpy user writes: check the signature, (decrypt,) parse, transfer, (encrypt).

(g) With ``BENCH_REDIS_URL`` set, the same view also claims each push in Redis (one ``SET NX`` through
redis-py, keyed by MsgId: the benchmark's pushes are text messages, which all carry one) before transferring,
as a hand-written view must to answer WeChat's retries once across workers; a push already claimed is answered
``success``.
"""
from __future__ import annotations

import os

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
    claims = None
    if os.environ.get("BENCH_REDIS_URL"):
        import redis
        claims = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"], socket_timeout=1.0)

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
        if claims is not None and not claims.set(f"push:{message.id}", b"1", nx=True, ex=60):
            return "success"
        if message.type == "text" and TRIGGER in message.content:
            reply = TransferCustomerServiceReply(message=message).render()
            if crypto is not None:
                reply = crypto.encrypt_message(reply, nonce, timestamp)
            return reply, 200, {"Content-Type": "application/xml"}
        return "success"

    return app
