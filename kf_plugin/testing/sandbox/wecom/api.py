"""WeCom's API on the sandbox's server: the paths of :mod:`.endpoints`, with WeCom's tokens and errmsgs.

Plugged into the server as a :class:`~kf_plugin.testing.sandbox.server.SiblingApi`: the server
logs the calls and applies the faults; this answers them. No API call adds a message or
event (WeCom neither returns what the API sent nor reports the API's own state changes),
so no call leads to a callback.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Optional

from ..endpoints import ApiRequest
from .endpoints import WECOM_ENDPOINTS
from .errors import WeComError, wecom_errmsg
from .state import WeComState

__all__ = ["WeComApi", "KF_PATHS"]

KF_PATHS = "/cgi-bin/kf/"

log = logging.getLogger(__name__)


class WeComApi:
    """Answers the WeCom paths over ``state``."""

    def __init__(self, state: WeComState):
        self.state = state

    def knows(self, path: str) -> bool:
        return path in WECOM_ENDPOINTS

    def fault_errmsg(self, errcode: int) -> str:
        return wecom_errmsg(errcode, self.state.now())

    def answer(self, path: str, request: ApiRequest) -> Dict[str, Any]:
        """The answer's JSON fields; never raises."""
        endpoint = WECOM_ENDPOINTS[path]
        state = self.state
        try:
            with state.lock:
                if endpoint.needs_token:
                    state.tokens.verify(request.query.get("access_token"))
                if path.startswith(KF_PATHS) and not state.api_enabled:
                    raise WeComError(95017)
                result = endpoint.handle(state, request) or {}
            return {"errcode": 0, "errmsg": "ok", **result}
        except WeComError as exc:
            return self._error(exc.errcode, exc.detail)
        except Exception:  # a sandbox bug must look like WeCom's "system busy", not kill the server
            log.exception("sandbox failed to answer %s", path)
            return self._error(-1)

    def _error(self, errcode: int, detail: Optional[str] = None) -> Dict[str, Any]:
        return {"errcode": errcode, "errmsg": wecom_errmsg(errcode, self.state.now(), detail)}
