"""WeChat's errcodes and errmsgs as the sandbox answers them.

The errmsg texts follow what the real API answers (English where WeChat answers
in English); the server appends `` rid: <hex>`` to every error, as WeChat does.
"""
from __future__ import annotations

import secrets
from typing import Dict, Optional

__all__ = ["ApiError", "ERRMSG", "errmsg_for", "with_rid"]

ERRMSG: Dict[int, str] = {
    -1: "system error",
    0: "ok",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40005: "invalid file type",
    40007: "invalid media_id",
    40008: "invalid message type",
    40009: "invalid image size",
    40013: "invalid appid",
    40125: "invalid appsecret",
    41001: "access_token missing",
    41002: "appid missing",
    41004: "appsecret missing",
    41005: "media data missing",
    42001: "access_token expired",
    43004: "require subscribe",
    44002: "empty post data",
    44003: "empty news data",
    44004: "empty content",
    45002: "content size out of limit",
    45008: "article size out of limit",
    45009: "reach max api daily quota limit",
    45015: "response out of time limit or subscription is canceled",
    45047: "out of response count limit",
    45072: "command field error",
    45080: "typing needs an interaction from the user in the last 30 seconds",
    45081: "already typing",
    47001: "data format error",
    65400: "api unavailable, please enable the new customer service function first",
    65401: "invalid kf account",
    65402: "the kf account is not bound to a wechat user",
    65403: "illegal nickname",
    65404: "illegal kf account",
    65405: "kf account count exceeds the limit",
    65406: "kf account already exists",
    65407: "the wechat user is already a worker of this kf account",
    65408: "the wechat user has already been invited",
    65409: "invalid wechat id",
    65410: "the wechat user is bound to too many kf accounts",
    65411: "the kf account has a pending invitation",
    65412: "the kf account is already bound to a wechat user",
    65413: "no session for this customer",
    65414: "the customer is served by another worker",
    65415: "the worker is not online",
    65416: "invalid query parameters",
    65417: "query period too long",
}


def errmsg_for(errcode: int) -> str:
    """WeChat's text for ``errcode`` (a generic one for codes the sandbox never answers itself)."""
    return ERRMSG.get(errcode, f"error {errcode}")


def with_rid(errmsg: str, now: float) -> str:
    """``errmsg`` with the request id WeChat appends to every error (hex time, two random parts)."""
    return f"{errmsg} rid: {int(now):08x}-{secrets.token_hex(4)}-{secrets.token_hex(4)}"


class ApiError(ValueError):
    """A rule of the WeChat API refused a call: the server answers :attr:`errcode` / :attr:`errmsg`.

    A :class:`ValueError`, so Python code driving the sandbox (``add_agent`` with a
    bad account name, say) can catch it like any other bad argument.
    ``hint`` is appended the way WeChat sometimes does (``data format error hint: [...]``).
    """

    def __init__(self, errcode: int, hint: Optional[str] = None):
        self.errcode = errcode
        self.errmsg = errmsg_for(errcode) + (f" hint: [{hint}]" if hint else "")
        super().__init__(f"{errcode}: {self.errmsg}")
