"""A ``requests`` session that sends calls meant for the real WeChat API to a sandbox.

wechatpy builds some URLs absolutely (``https://api.weixin.qq.com/cgi-bin/token``,
every ``/customservice/...`` call), so changing its ``API_BASE_URL`` is not
enough; giving the client this session as its ``_http`` catches them all.
"""
from __future__ import annotations

from typing import Any, Union

import requests

__all__ = ["RedirectingSession", "WECHAT_API_ORIGINS"]

WECHAT_API_ORIGINS = ("https://api.weixin.qq.com", "http://api.weixin.qq.com")


class RedirectingSession(requests.Session):
    """Rewrites ``https://api.weixin.qq.com/...`` to ``base_url + "/..."``; other URLs pass unchanged.

    Proxy settings from the environment are ignored (``trust_env`` is off): a
    loopback sandbox must never be reached through a proxy.
    """

    def __init__(self, base_url: str):
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.trust_env = False

    def request(self, method: Union[str, bytes], url: Union[str, bytes], *args: Any,
                **kwargs: Any) -> requests.Response:
        if isinstance(url, str):
            for origin in WECHAT_API_ORIGINS:
                if url.startswith(origin + "/"):
                    url = self.base_url + url[len(origin):]
                    break
        return super().request(method, url, *args, **kwargs)
