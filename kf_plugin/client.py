"""wechatpy's WeChatClient, made safe for production and pointable at any API base URL.

Compared with a plain ``WeChatClient``:

- every call — wechatpy's own API methods and the paths kf_plugin calls itself —
  goes to ``api_base_url`` (an API proxy, or the sandbox), the token included;
- every HTTP call has a timeout;
- an invalid-token answer (40001, 40014, 42001) drops the token only if it is
  still the one that failed, fetches a new one, and retries the call exactly
  once — never the unbounded recursion of ``auto_retry``;
- errors come out as :class:`~kf_plugin.errors.WeChatAPIError` subclasses or
  :class:`~kf_plugin.errors.WeChatNetworkError`, and neither the access token
  nor the AppSecret ever appears in a message or a log line.
"""
from __future__ import annotations

import logging
import os
import re
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple
from urllib.parse import urlsplit

import requests
import urllib3
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)
from wechatpy import WeChatClient
from wechatpy.exceptions import WeChatClientException

from .errors import (
    TOKEN_ERRCODES,
    ConfigError,
    WeChatNetworkError,
    api_error,
    is_transient,
)
from .metrics import NO_METRICS, OFFICIAL_ACCOUNT, Metrics

if TYPE_CHECKING:
    from .state import TokenStore

__all__ = ["KfClient", "DEFAULT_API_BASE_URL", "redact", "never_connected", "environment_read_once"]

DEFAULT_API_BASE_URL = "https://api.weixin.qq.com"
TOKEN_MODES = ("stable", "classic")
_SECRETS_IN_TEXT = re.compile(r"((?:access_token|secret)=)[^&\s'\"]+")

log = logging.getLogger(__name__)


def redact(text: str) -> str:
    """``text`` with every ``access_token=`` and ``secret=`` value masked."""
    return _SECRETS_IN_TEXT.sub(r"\1***", text)


class _RedactSecrets(logging.Filter):
    """Masks tokens in the request lines urllib3 and wechatpy log at DEBUG level."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "access_token=" in message or "secret=" in message:
            record.msg, record.args = redact(message), ()
        return True


_REDACTOR = _RedactSecrets()
for _name in ("urllib3.connectionpool", "wechatpy", "wechatpy.client.base"):
    _logger = logging.getLogger(_name)
    if _REDACTOR not in _logger.filters:
        _logger.addFilter(_REDACTOR)


class KfClient(WeChatClient):
    """A ``WeChatClient`` for one official account (see the module docstring).

    The access token comes from :attr:`tokens`, a :class:`~kf_plugin.tokens.TokenService`
    keeping it in ``token_store`` (this process's memory by default; a
    :class:`~kf_plugin.state.redis_tokens.RedisTokenStore` shares it between workers).
    ``token_mode``: ``stable`` (``/cgi-bin/stable_token``) or ``classic``
    (``/cgi-bin/token``); ``token_margin`` and ``token_interval``: see
    :class:`~kf_plugin.tokens.TokenService`. ``attempts``: how often a call that failed
    for a passing reason (network, HTTP 5xx, errcode -1) is tried, with exponential
    backoff and jitter.

    :raises ConfigError: missing AppID/AppSecret, or an unknown ``token_mode``.
    """

    def __init__(self, appid: str, secret: str, *, api_base_url: str = DEFAULT_API_BASE_URL,
                 timeout: float = 5.0, session: Any = None, token_mode: str = "stable",
                 token_store: Optional["TokenStore"] = None, token_margin: float = 600.0,
                 token_interval: float = 60.0, attempts: int = 3):
        if not appid or not secret:
            raise ConfigError("KF_APPID and KF_SECRET are both needed to call the WeChat API")
        if token_mode not in TOKEN_MODES:
            raise ConfigError(f"the token mode must be one of {', '.join(TOKEN_MODES)}, not {token_mode!r}")
        super().__init__(appid, secret, session=session, timeout=timeout, auto_retry=False)
        self.api_base_url = (api_base_url or DEFAULT_API_BASE_URL).rstrip("/")
        environment_read_once(self._http, self.api_base_url)
        self.token_mode = token_mode
        self.attempts = attempts
        from .tokens import TokenService
        self.tokens = TokenService(self.request_token, token_store, mode=token_mode, margin=token_margin,
                                   interval=token_interval, attempts=attempts)
        self.metrics: Metrics = NO_METRICS

    def measure(self, metrics: Metrics) -> None:
        """Count every HTTP call (by endpoint and errcode) and token renewal in ``metrics``."""
        self.metrics = self.tokens.metrics = metrics

    def __repr__(self) -> str:
        return f"<KfClient {self.appid} → {self.api_base_url}>"

    @property
    def access_token(self) -> str:
        return self.tokens.current()

    def resolve(self, url_or_endpoint: str, api_base_url: Optional[str] = None) -> str:
        """The full URL for a path (``/cgi-bin/...``), a wechatpy endpoint, or an official URL."""
        if url_or_endpoint.startswith("/"):
            return self.api_base_url + url_or_endpoint
        if url_or_endpoint.startswith(("http://", "https://")):
            url = url_or_endpoint
        else:
            url = (api_base_url or self.API_BASE_URL) + url_or_endpoint
        # wechatpy's API classes name the official host: send them to ours.
        if url.startswith(DEFAULT_API_BASE_URL):
            url = self.api_base_url + url[len(DEFAULT_API_BASE_URL):]
        return url

    def _request(self, method: str, url_or_endpoint: str, **kwargs: Any) -> Any:
        url = self.resolve(url_or_endpoint, kwargs.pop("api_base_url", None))
        params: Dict[str, Any] = dict(kwargs.pop("params", None) or {})
        kwargs["timeout"] = kwargs.get("timeout") or self.timeout
        # A POST that may have reached WeChat is not repeated: it could send a message twice.
        safe = method.upper() == "GET"
        retrying = Retrying(retry=retry_if_exception(lambda exc: is_transient(exc) and (safe or not _maybe_sent(exc))),
                            stop=stop_after_attempt(self.attempts), reraise=True,
                            wait=wait_random_exponential(multiplier=0.2, max=2.0))
        return retrying(self._call_with_token, method, url, params, kwargs)

    def _call_with_token(self, method: str, url: str, params: Dict[str, Any], kwargs: Dict[str, Any]) -> Any:
        path = urlsplit(url).path
        token = self.access_token
        for attempt in (1, 2):
            try:
                result = super()._request(method, url, params={**params, "access_token": token}, **kwargs)
            except WeChatClientException as exc:
                self.metrics.api_call(OFFICIAL_ACCOUNT, path, "http" if exc.errcode is None else exc.errcode)
                if exc.errcode is None:
                    status = getattr(exc.response, "status_code", "?")
                    raise WeChatNetworkError(f"the WeChat API answered HTTP {status} on {path}",
                                             sent=not str(status).startswith("5")) from None
                if exc.errcode in TOKEN_ERRCODES and attempt == 1:
                    log.info("WeChat refused the access token (%s) on %s; renewing it once", exc.errcode, path)
                    token = self.tokens.recover(token)
                    continue
                raise api_error(exc.errcode, exc.errmsg or "", path) from exc
            except requests.RequestException as exc:
                self.metrics.api_call(OFFICIAL_ACCOUNT, path, "network")
                raise WeChatNetworkError(f"cannot reach the WeChat API on {path}: {redact(str(exc))}",
                                         sent=not never_connected(exc)) from None
            self.metrics.api_call(OFFICIAL_ACCOUNT, path, 0)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def fetch_access_token(self) -> Dict[str, Any]:
        """wechatpy's entry point: renew the token now (through the token service) and return it."""
        stored = self.tokens.store.get()
        token = self.tokens.renew(stored.value if stored is not None else None)
        return {"access_token": token.value, "expires_in": int(token.expires_at - self.tokens.clock())}

    def request_token(self, force: bool = False) -> Tuple[str, int]:
        """Ask WeChat for a token and its lifetime in seconds (the token service calls this;
        ``force`` = stable force_refresh).

        :raises WeChatAPIError: WeChat refused (40013 AppID, 40125 secret, 40164 IP, 45009 limit, ...).
        :raises WeChatNetworkError: the API could not be reached.
        """
        credentials = {"grant_type": "client_credential", "appid": self.appid, "secret": self.secret}
        stable = self.token_mode == "stable"
        path = "/cgi-bin/stable_token" if stable else "/cgi-bin/token"
        url = self.api_base_url + path
        try:
            if stable:
                response = self._http.request("POST", url, json={**credentials, "force_refresh": force},
                                              timeout=self.timeout)
            else:
                response = self._http.request("GET", url, params=credentials, timeout=self.timeout)
            result = response.json()
        except requests.RequestException as exc:
            self.metrics.api_call(OFFICIAL_ACCOUNT, path, "network")
            raise WeChatNetworkError(f"cannot reach the WeChat API on {path}: {redact(str(exc))}") from None
        except ValueError:
            self.metrics.api_call(OFFICIAL_ACCOUNT, path, "http")
            raise WeChatNetworkError(f"the WeChat API answered HTTP {response.status_code} "
                                     f"with no JSON on {path}") from None
        self.metrics.api_call(OFFICIAL_ACCOUNT, path, result.get("errcode") or 0)
        if result.get("errcode"):
            raise api_error(int(result["errcode"]), result.get("errmsg", ""), path)
        if not result.get("access_token"):
            raise WeChatNetworkError(f"the WeChat API answered without an access_token on {path}")
        return result["access_token"], int(result.get("expires_in", 7200))


def environment_read_once(session: requests.Session, url: str) -> requests.Session:
    """Have ``session`` take the proxy, CA-bundle and netrc settings of the environment for ``url``'s host
    now, not at every request: requests reads the whole environment per request otherwise (``no_proxy``
    matching included), a good part of an API call's CPU. Changing those variables later takes a restart.
    """
    session.proxies.update(requests.utils.get_environ_proxies(url))   # no_proxy applied for this host
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    if session.auth is None:
        session.auth = requests.utils.get_netrc_auth(url)
    session.trust_env = False
    return session


def never_connected(exc: requests.RequestException) -> bool:
    """Whether the request failed before a connection existed (so the API cannot have seen it)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


def _maybe_sent(exc: BaseException) -> bool:
    # An errcode -1 answer means WeChat was too busy to do anything.
    return isinstance(exc, WeChatNetworkError) and exc.sent
