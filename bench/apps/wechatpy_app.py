"""(c) The minimal view a wechatpy user writes: check the signature, (decrypt,) parse, transfer, (encrypt).

``BENCH_PUSH=common``: a text that does not ask for a human is answered with the text reply
:data:`apps.common.REPLY_TEXT` (wechatpy's TextReply) instead of ``success``.

(g) With ``BENCH_REDIS_URL`` set, the same view also claims each push in Redis (one ``SET NX`` through
redis-py, keyed by MsgId: the benchmark's pushes are text messages, which all carry one) before answering,
as a hand-written view must to answer WeChat's retries once across workers; a push already claimed is answered
``success``.
"""
from __future__ import annotations

import os
from typing import Optional

from flask import Flask, abort, request
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.replies import TextReply, TransferCustomerServiceReply
from wechatpy.utils import check_signature

from .common import AES_KEY, APPID, REPLY_TEXT, TOKEN, TRIGGER, URL, common_push, safe_mode


def create_app() -> Flask:
    app = Flask(__name__)
    crypto = WeChatCrypto(TOKEN, AES_KEY, APPID) if safe_mode() else None
    acknowledge = common_push()
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
        reply = reply_to(message, acknowledge)
        if reply is None:
            return "success"
        if crypto is not None:
            reply = crypto.encrypt_message(reply, nonce, timestamp)
        return reply, 200, {"Content-Type": "application/xml"}

    return app


def reply_to(message, acknowledge: bool) -> Optional[str]:
    """The XML answer to a text: a transfer when it asks for a human, else the text reply when ``acknowledge``."""
    if message.type != "text":
        return None
    if TRIGGER in message.content:
        return TransferCustomerServiceReply(message=message).render()
    if acknowledge:
        return TextReply(message=message, content=REPLY_TEXT).render()
    return None
