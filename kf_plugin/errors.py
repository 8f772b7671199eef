"""The exceptions kf_plugin raises.

Everything derives from :class:`KfError`, so a bot can catch the whole family in
one place.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Type


class KfError(Exception):
    """Base class of every error raised by kf_plugin."""


class ConfigError(KfError):
    """A ``KF_*`` setting is missing or invalid; the message names the key."""


@dataclass(frozen=True)
class RuleProblem:
    """One problem found in a rule file."""

    file: str
    line: Optional[int]
    message: str
    rule: Optional[str] = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        who = f" rule {self.rule!r}:" if self.rule else ""
        return f"{where}:{who} {self.message}"


class RuleFileError(KfError):
    """A rule file could not be loaded; :attr:`problems` lists every problem found."""

    def __init__(self, problems: Sequence[RuleProblem]):
        self.problems: List[RuleProblem] = list(problems)
        count = len(self.problems)
        header = f"{count} problem{'s' if count != 1 else ''} in rule file"
        super().__init__("\n".join([header + ":"] + [f"  {p}" for p in self.problems]))


class BadPush(KfError):
    """An inbound request is not an acceptable WeChat push.

    :attr:`status` is the HTTP status the webhook answers with (400, 403 or 413).
    """

    def __init__(self, status: int, reason: str):
        self.status = status
        self.reason = reason
        super().__init__(f"{status}: {reason}")


# -- the WeChat HTTP API ------------------------------------------------------

#: What each errcode means (the API's own errmsg is often terse or misleading).
ERROR_MEANINGS = {
    -1: "WeChat system busy; try again later",
    40001: "the access token is invalid or not the latest",
    40002: "invalid grant_type",
    40003: "invalid openid (not a follower of this account)",
    40005: "invalid file type (the head image must be a JPEG)",
    40007: "invalid media_id",
    40008: "invalid message type",
    40009: "the image is too large (at most 5 MB)",
    40013: "invalid AppID",
    40014: "invalid access token",
    40125: "invalid AppSecret",
    40164: "this server's IP address is not on the account's IP whitelist",
    41001: "the access token is missing",
    41002: "the AppID is missing",
    41004: "the AppSecret is missing",
    41005: "the uploaded file is missing (multipart field media)",
    42001: "the access token has expired",
    43004: "the user must follow the account first",
    44002: "empty request body",
    44003: "empty news message (no articles)",
    44004: "empty text content",
    45002: "the content is too long",
    45008: "too many articles: a news message carries one article",
    45009: "API call frequency or daily limit reached",
    45015: "outside the 48-hour window: the user has not interacted recently, or has unfollowed",
    45047: "over the send quota: the user's interactions allow no more messages now",
    45072: "invalid typing command (Typing or CancelTyping)",
    45080: "typing needs an interaction from the user in the last 30 seconds",
    45081: "the user is already being shown 'typing'",
    47001: "malformed request data",
    65400: "customer service is not enabled for this account",
    65401: "invalid customer-service account",
    65402: "the customer-service account is not bound to a WeChat user",
    65403: "illegal nickname",
    65404: "illegal customer-service account name",
    65405: "the number of customer-service accounts has reached its limit",
    65406: "the customer-service account already exists",
    65407: "that WeChat user is already a worker of this account",
    65408: "that WeChat user has already been invited",
    65409: "invalid WeChat id",
    65410: "that WeChat user is bound to too many customer-service accounts",
    65411: "the account has a pending invitation",
    65412: "the account is already bound to a WeChat user",
    65413: "the customer has no open session",
    65414: "another worker is serving the customer",
    65415: "the worker is not online",
    65416: "invalid query parameters",
    65417: "the query period is too long (at most 24 hours)",
}

TOKEN_ERRCODES = frozenset({40001, 40014, 42001})


class WeChatAPIError(KfError):
    """The WeChat API answered with an errcode other than 0.

    :attr:`errcode`, :attr:`errmsg` (WeChat's text) and :attr:`meaning` (ours);
    :attr:`path` is the API path called (never with the access token).
    :attr:`predicted`: kf_plugin refused the call before making it, because it
    knows WeChat would answer this errcode (the 48-hour window's 45015 / 45047).
    """

    def __init__(self, errcode: int, errmsg: str = "", path: str = "", note: str = "", *, predicted: bool = False):
        self.errcode = errcode
        self.errmsg = errmsg
        self.path = path
        self.predicted = predicted
        self.meaning = ERROR_MEANINGS.get(errcode, "see the WeChat error-code reference")
        where = f" on {path}" if path else ""
        said = f" (WeChat said: {errmsg})" if errmsg else ""
        super().__init__(f"WeChat API error {errcode}{where}: {self.meaning}{said}{note}")


class InvalidTokenError(WeChatAPIError):
    """40001, 40014, 42001: the access token was refused."""


class RateLimitedError(WeChatAPIError):
    """45009: frequency or daily limit reached."""


class OutsideWindowError(WeChatAPIError):
    """45015: the user is outside the 48-hour window (or has unfollowed)."""


class QuotaExceededError(WeChatAPIError):
    """45047: the user's interactions allow no more messages for now."""


class AgentOfflineError(WeChatAPIError):
    """65415: the customer-service worker is not online."""


class KfAccountError(WeChatAPIError):
    """65400–65412: a problem with a customer-service account or its invitation."""


class SessionError(WeChatAPIError):
    """65413, 65414: the customer's session is missing or held by another worker."""


_ERROR_CLASSES: Dict[int, Type[WeChatAPIError]] = {
    45009: RateLimitedError, 45015: OutsideWindowError, 45047: QuotaExceededError,
    65415: AgentOfflineError, 65413: SessionError, 65414: SessionError,
}


def api_error(errcode: int, errmsg: str = "", path: str = "", note: str = "") -> WeChatAPIError:
    """The most specific :class:`WeChatAPIError` subclass for ``errcode``."""
    cls: Type[WeChatAPIError]
    if errcode in TOKEN_ERRCODES:
        cls = InvalidTokenError
    elif 65400 <= errcode <= 65412:
        cls = KfAccountError
    else:
        cls = _ERROR_CLASSES.get(errcode, WeChatAPIError)
    return cls(errcode, errmsg, path, note)


class WeChatNetworkError(KfError):
    """The WeChat API could not be reached, timed out, or answered HTTP 5xx / non-JSON.

    :attr:`sent` is ``False`` when the request surely never reached WeChat (it could not
    connect, or WeChat answered 5xx), so repeating it cannot do anything twice.
    """

    def __init__(self, message: str, sent: bool = True):
        super().__init__(message)
        self.sent = sent


def is_transient(exc: BaseException) -> bool:
    """Whether trying again later may succeed: a network failure, HTTP 5xx, or errcode -1 (system busy)."""
    return isinstance(exc, WeChatNetworkError) or (isinstance(exc, WeChatAPIError) and exc.errcode == -1)


class RecordExportError(KfError):
    """Chat records could not be written to the export file."""
