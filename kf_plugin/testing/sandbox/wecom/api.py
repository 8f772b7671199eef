"""WeCom's API on the sandbox's server: the paths of :mod:`.endpoints`, with WeCom's tokens and errmsgs.

Plugged into the server as a :class:`~kf_plugin.testing.sandbox.server.SiblingApi`: the server
logs the calls and applies the faults; this answers them. No API call adds a message or
event (WeCom neither returns what the API sent nor reports the API's own state changes),
so no call leads to a callback.

:attr:`WeComApi.latency` is WeCom's round trip as the sandbox plays it: every WeCom call (gettoken included)
waits that long in real time before it is answered, outside the state's lock, so calls in flight overlap as
they do on the real network.
"""
from __future__ import annotations

import logging
import time
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
        self.latency = 0.0

    @property
    def latency(self) -> float:
        """Seconds every WeCom call waits before it is answered (0: none)."""
        return self._latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= 60:
            raise ValueError(f"latency must be a number of seconds from 0 to 60, got {seconds!r}")
        self._latency = float(seconds)

    def knows(self, path: str) -> bool:
        return path in WECOM_ENDPOINTS

    def fault_errmsg(self, errcode: int) -> str:
        return wecom_errmsg(errcode, self.state.now())

    def answer(self, path: str, request: ApiRequest) -> Dict[str, Any]:
        """The answer's JSON fields, after :attr:`latency`; never raises."""
        endpoint = WECOM_ENDPOINTS[path]
        state = self.state
        if self._latency:
            time.sleep(self._latency)   # real time on purpose: it is the network's, not the sandbox clock's
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
