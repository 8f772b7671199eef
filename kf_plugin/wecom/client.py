"""The WeCom (企业微信) API client behind 微信客服: JSON calls with one access token for every worker.

- The access token comes from a :class:`~kf_plugin.tokens.TokenService`
  (``GET /cgi-bin/gettoken?corpid=&corpsecret=``) keeping it in a
  :class:`~kf_plugin.state.TokenStore`: shared through Redis, a cluster renews it
  once per lifetime. A shared store is named with :func:`token_store_name`, so it
  never holds the Official Account's token.
- An invalid-token answer (40001, 40014, 42001) drops the token only if it is
  still the one that failed, fetches a new one and retries the call exactly once.
- Every request has a timeout; a call that failed for a passing reason (network,
  HTTP 5xx, errcode -1) is tried again with backoff and jitter — a POST that may
  have reached WeCom only when the caller says repeating it is harmless.
- Errors come out as :class:`~kf_plugin.wecom.errors.WeComAPIError` subclasses or
  :class:`~kf_plugin.errors.WeChatNetworkError`; neither the secret nor the access
  token ever appears in a message or a log line.

wechatpy 1.8.18 has no 微信客服 API; its enterprise client would contribute only
the HTTP exchange, and its own token handling would have to be switched off.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import requests
from requests.adapters import HTTPAdapter
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

# kf_plugin.client also masks access_token= and (corp)secret= in urllib3's DEBUG request lines.
from ..client import environment_read_once, never_connected, redact
from ..errors import ConfigError, KfError, WeChatNetworkError, is_transient
from ..metrics import NO_METRICS, WECOM, Metrics
from ..state import MemoryTokenStore, TokenStore
from ..tokens import TokenService
from .errors import TOKEN_PATH, WECOM_TOKEN_ERRCODES, wecom_error

__all__ = ["WeComClient", "DEFAULT_WECOM_API_BASE_URL", "token_store_name"]

DEFAULT_WECOM_API_BASE_URL = "https://qyapi.weixin.qq.com"
DEFAULT_LIFETIME = 7200

log = logging.getLogger(__name__)


def token_store_name(corpid: str) -> str:
    """The account name a shared token store keeps a corp's WeCom token under: ``wecom:{corpid}``.

    ``RedisTokenStore(redis, token_store_name(corpid), prefix, session_prefix)`` keeps it
    apart from any Official Account's token, even one whose AppID equals the corpid
    (older corpids start with ``wx``, as AppIDs do).
    """
    return f"wecom:{corpid}"


def _log_retry(state: RetryCallState) -> None:
    # tenacity sets the outcome before it sleeps; the check only keeps a logging hook from raising.
    failure = state.outcome.exception() if state.outcome is not None else "no outcome recorded"
    log.warning("a WeCom API call failed (%s); retrying", failure)


class WeComClient:
    """Calls the WeCom API for one corp with the secret of the app allowed to use 微信客服.

    ``api_base_url``: WeCom's, an API proxy, or a stand-in. ``timeout``: seconds
    per HTTP request. ``token_store``: where the access token lives (this process's
    memory by default; a Redis store named with :func:`token_store_name` shares it
    between workers). ``clock``: unix time, for token lifetimes. ``session``: the
    ``requests`` session to send through. ``attempts``: how often a call that failed
    for a passing reason is tried. ``connections``: HTTP connections kept open to WeCom when no ``session`` is
    given (as many as the threads that call at once; more are opened when needed, and closed after their
    call). ``token_margin`` and ``token_interval``: see
    :class:`~kf_plugin.tokens.TokenService` (:attr:`tokens`, whose ``tick`` a
    background job may run to renew ahead of expiry).

    :raises ConfigError: a missing corpid or secret, fewer than one attempt or connection.
    """

    def __init__(self, corpid: str, secret: str, *, api_base_url: str = DEFAULT_WECOM_API_BASE_URL,
                 timeout: float = 5.0, token_store: Optional[TokenStore] = None,
                 clock: Callable[[], float] = time.time, session: Optional[requests.Session] = None,
                 attempts: int = 3, connections: int = 10, token_margin: float = 600.0,
                 token_interval: float = 60.0):
        if not corpid or not secret:
            raise ConfigError("a corpid and the secret of an app with 微信客服 API permission are both needed "
                              "to call the WeCom API")
        if attempts < 1:
            raise ConfigError(f"attempts must be at least 1, not {attempts}")
        if connections < 1:
            raise ConfigError(f"connections must be at least 1, not {connections}")
        self.corpid = corpid
        self._secret = secret
        self.api_base_url = (api_base_url or DEFAULT_WECOM_API_BASE_URL).rstrip("/")
        self.timeout = timeout
        self.attempts = attempts
        self.http = session if session is not None else environment_read_once(_session(connections), self.api_base_url)
        store = token_store if token_store is not None else MemoryTokenStore(clock)
        # "classic": WeCom has no stable-token endpoint; gettoken answers the same token while it lives.
        self.tokens = TokenService(self.request_token, store, mode="classic", margin=token_margin,
                                   interval=token_interval, clock=clock, attempts=attempts, channel=WECOM)
        self.metrics: Metrics = NO_METRICS

    def measure(self, metrics: Metrics) -> None:
        """Count every HTTP call (by endpoint and errcode) and token renewal in ``metrics``."""
        self.metrics = self.tokens.metrics = metrics

    def __repr__(self) -> str:
        return f"<WeComClient {self.corpid} → {self.api_base_url}>"

    # -- calls --------------------------------------------------------------------

    def get(self, path: str, params: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
        """WeCom's answer to ``GET path`` (``/cgi-bin/...``) with ``params`` and the access token.

        :raises ValueError: ``path`` does not start with ``/``.
        :raises WeComAPIError: WeCom answered an errcode (a subclass for the codes worth telling apart).
        :raises WeChatNetworkError: WeCom could not be reached, timed out, or answered HTTP 5xx or no JSON
            (after ``attempts`` tries).
        """
        return self._call("GET", path, dict(params or {}), None, idempotent=True)

    def post(self, path: str, body: Optional[Mapping[str, Any]] = None, *,
             params: Optional[Mapping[str, Any]] = None, idempotent: bool = False) -> Dict[str, Any]:
        """WeCom's answer to ``POST path`` with ``body`` as UTF-8 JSON.

        ``idempotent``: repeating the call is harmless (a read), so it is tried again even
        after a failure that may have reached WeCom; otherwise only failures that surely
        did not reach it (no connection, HTTP 5xx, errcode -1) are tried again, so nothing
        is ever done twice.

        :raises ValueError, WeComAPIError, WeChatNetworkError: as :meth:`get`.
        """
        return self._call("POST", path, dict(params or {}), dict(body or {}), idempotent)

    def _call(self, method: str, path: str, params: Dict[str, Any], body: Optional[Dict[str, Any]],
              idempotent: bool) -> Dict[str, Any]:
        if not path.startswith("/"):
            raise ValueError(f"a WeCom API path starts with / (such as /cgi-bin/kf/sync_msg), not {path!r}")
        retrying = Retrying(retry=retry_if_exception(lambda exc: _worth_retrying(exc, idempotent)),
                            stop=stop_after_attempt(self.attempts), reraise=True, before_sleep=_log_retry,
                            wait=wait_random_exponential(multiplier=0.2, max=2.0))
        try:
            return retrying(self._call_with_token, method, path, params, body)
        except _NoToken as failure:
            raise failure.error from None

    def _call_with_token(self, method: str, path: str, params: Dict[str, Any],
                         body: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        token = self._token(self.tokens.current)
        for attempt in (1, 2):
            result = self._exchange(method, path, {**params, "access_token": token}, body)
            errcode = _errcode(result, path)
            if errcode == 0:
                return result
            if errcode in WECOM_TOKEN_ERRCODES and attempt == 1:
                log.info("WeCom refused the access token (%s) on %s; renewing it once", errcode, path)
                token = self._token(self.tokens.recover, token)
                continue
            raise wecom_error(errcode, redact(str(result.get("errmsg") or "")), path)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _token(read: Callable[..., str], *args: str) -> str:
        try:
            return read(*args)
        except KfError as exc:
            # The token service already tried as often as a call may: no second round of retries.
            raise _NoToken(exc) from None

    def _exchange(self, method: str, path: str, params: Dict[str, Any],
                  body: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        """One HTTP request and its JSON answer, whatever its errcode."""
        # WeCom refuses \uXXXX escapes (40033): the body goes as UTF-8 text.
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json; charset=utf-8"} if data is not None else {}
        try:
            response = self.http.request(method, self.api_base_url + path, params=params, data=data,
                                         headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            self.metrics.api_call(WECOM, path, "network")
            raise WeChatNetworkError(f"cannot reach the WeCom API on {path}: {redact(str(exc))}",
                                     sent=not never_connected(exc)) from None
        status = response.status_code
        if not 200 <= status < 300:
            self.metrics.api_call(WECOM, path, "http")
            raise WeChatNetworkError(f"the WeCom API answered HTTP {status} on {path}", sent=status < 500)
        try:
            result = json.loads(response.content.decode("utf-8"))
        except ValueError:
            result = None
        if not isinstance(result, dict):
            self.metrics.api_call(WECOM, path, "http")
            raise WeChatNetworkError(f"the WeCom API answered HTTP {status} without a JSON object on {path}")
        self.metrics.api_call(WECOM, path, result.get("errcode") or 0)
        return result

    # -- the token ----------------------------------------------------------------

    def request_token(self, force: bool = False) -> Tuple[str, int]:
        """Ask WeCom for an access token and its lifetime in seconds (the token service calls this).

        WeCom has no forced refresh: ``force`` changes nothing, and while a token lives
        gettoken answers that same token.

        :raises WeComCredentialsError: the corpid or secret was refused, or this host is not trusted.
        :raises WeComAPIError: another refusal (45009 rate limit, ...).
        :raises WeChatNetworkError: WeCom could not be reached, or answered without a token.
        """
        result = self._exchange("GET", TOKEN_PATH, {"corpid": self.corpid, "corpsecret": self._secret}, None)
        errcode = _errcode(result, TOKEN_PATH)
        if errcode:
            raise wecom_error(errcode, redact(str(result.get("errmsg") or "")), TOKEN_PATH)
        token, lifetime = result.get("access_token"), result.get("expires_in", DEFAULT_LIFETIME)
        if not isinstance(token, str) or not token:
            raise WeChatNetworkError(f"the WeCom API answered without an access_token on {TOKEN_PATH}")
        if not isinstance(lifetime, int) or lifetime <= 0:
            raise WeChatNetworkError(f"the WeCom API answered an expires_in that is not a number of seconds "
                                     f"({lifetime!r}) on {TOKEN_PATH}")
        return token, lifetime


def _session(connections: int) -> requests.Session:
    """A session keeping up to ``connections`` connections to each host (requests keeps 10 by default)."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_maxsize=connections)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class _NoToken(Exception):
    """Carries the token service's failure past the call's retries."""

    def __init__(self, error: KfError):
        super().__init__(str(error))
        self.error = error


def _errcode(result: Mapping[str, Any], path: str) -> int:
    """The answer's errcode (0 when it has none)."""
    try:
        return int(result.get("errcode") or 0)
    except (TypeError, ValueError):
        raise WeChatNetworkError(f"the WeCom API answered an errcode that is not a number "
                                 f"({result.get('errcode')!r}) on {path}") from None


def _worth_retrying(exc: BaseException, idempotent: bool) -> bool:
    """A passing failure — unless it may have reached WeCom and repeating the call could do something twice."""
    maybe_sent = isinstance(exc, WeChatNetworkError) and exc.sent
    return is_transient(exc) and (idempotent or not maybe_sent)
