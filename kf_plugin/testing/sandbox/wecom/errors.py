"""WeCom's errcodes and errmsgs as the sandbox answers them on its WeCom paths.

The errcode is the contract; the errmsg is a short English text in WeCom's shape
(``<text>, hint: [<request id>], from ip: <ip>, more info at https://open.work.weixin.qq.com/devtool/query?e=<errcode>``),
with the sandbox's reason in parentheses after the text when it has one.

The table holds only codes whose meaning WeCom's global error-code table (or, for the
95xxx range, public SDKs' error tables) establishes. Where no WeCom code is established
for a refusal the sandbox answers 40058 (invalid parameter) and names the reason: a
``service_state`` change the rules do not allow, an event ``code`` that is unknown, used,
expired or of another kind, a ``cursor`` sync_msg does not know, a ``msgid`` already used, a
field missing or malformed. A callback ``token`` that is unknown, expired or another account's
answers 95007 (invalid msg token, as other projects' clients and tests see it).
"""
from __future__ import annotations

import secrets
from typing import Dict, Optional

from ..errors import ApiError

__all__ = ["WECOM_ERRMSG", "WeComError", "wecom_errmsg", "INVALID_PARAMETER", "INVALID_SYNC_TOKEN", "MORE_INFO"]

INVALID_PARAMETER = 40058
INVALID_SYNC_TOKEN = 95007
MORE_INFO = "https://open.work.weixin.qq.com/devtool/query?e="

WECOM_ERRMSG: Dict[int, str] = {
    -1: "system busy",
    40001: "invalid secret",
    40007: "invalid media_id",
    40008: "invalid msgtype",
    40013: "invalid corpid",
    40014: "invalid access_token",
    INVALID_PARAMETER: "invalid parameter",
    INVALID_SYNC_TOKEN: "invalid msg token",
    40096: "invalid external_userid",
    41001: "access_token missing",
    41002: "corpid missing",
    41004: "corpsecret missing",
    41006: "media_id missing",
    42001: "access_token expired",
    44004: "empty content",
    45002: "content size out of limit",
    45009: "api freq out of limit",
    60111: "userid not found",
    95000: "invalid open_kfid",
    95001: "send msg count limit: wait for the customer's next message",
    95004: "open_kfid not exist",
    95014: "servicer not receiving or not activated",
    95017: "kf api not enabled",
    95018: "send msg session status invalid",
}


def wecom_errmsg(errcode: int, now: float, detail: Optional[str] = None) -> str:
    """WeCom's errmsg for ``errcode``: its text, ``detail`` in parentheses, a request id, the caller's ip, a link."""
    text = WECOM_ERRMSG.get(errcode, f"error {errcode}")
    if detail:
        text = f"{text} ({detail})"
    request_id = f"{int(now)}{secrets.randbelow(10**15):015d}"
    return f"{text}, hint: [{request_id}], from ip: 127.0.0.1, more info at {MORE_INFO}{errcode}"


class WeComError(ApiError):
    """A rule of WeCom's API refused a call: the server answers :attr:`errcode`, with :attr:`detail` in the errmsg.

    An :class:`~kf_plugin.testing.sandbox.errors.ApiError` (so a ``ValueError``): control
    methods of the WeCom sandbox raise it for what the API would refuse.
    """

    def __init__(self, errcode: int, detail: Optional[str] = None):
        self.errcode = errcode
        self.detail = detail
        text = WECOM_ERRMSG.get(errcode, f"error {errcode}")
        self.errmsg = f"{text} ({detail})" if detail else text
        ValueError.__init__(self, f"{errcode}: {self.errmsg}")
