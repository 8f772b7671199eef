"""What the WeCom API's errcodes mean, and the exceptions kf_plugin raises for them.

Every WeCom error is a :class:`WeComAPIError`, itself a
:class:`~kf_plugin.errors.WeChatAPIError` (``errcode``, ``errmsg``, ``path``,
``meaning``), so a bot catching the Official Account's errors catches these too.
The codes worth telling apart have their own class; token and rate-limit errors
are also :class:`~kf_plugin.errors.InvalidTokenError` and
:class:`~kf_plugin.errors.RateLimitedError`.

The meanings come from WeCom's global error-code reference. The same number can
mean something else on the Official Account's API (40001 there is a refused
token; here it is a refused secret), hence a table of our own.
"""
from __future__ import annotations

from typing import Dict, Type

from ..errors import InvalidTokenError, RateLimitedError, WeChatAPIError

__all__ = [
    "WECOM_ERROR_MEANINGS", "WECOM_TOKEN_ERRCODES", "TOKEN_PATH", "WeComAPIError", "WeComTokenError",
    "WeComCredentialsError", "WeComRateLimitedError", "KfApiAccessError", "OpenKfidError", "UnknownCustomerError",
    "SendWindowError", "SessionStateError", "ServicerUnavailableError", "SyncTokenError", "wecom_error",
    "meaning_of",
]

#: Where the access token comes from; a 40001 there means the secret, not a token, was refused.
TOKEN_PATH = "/cgi-bin/gettoken"

#: The answers that mean "renew the access token and try once more".
WECOM_TOKEN_ERRCODES = frozenset({40001, 40014, 42001})

WECOM_ERROR_MEANINGS: Dict[int, str] = {
    -1: "WeCom system busy; try again later",
    40001: "invalid credential: the access token was refused",
    40003: "invalid UserID",
    40007: "invalid media_id",
    40008: "invalid msgtype",
    40013: "invalid corpid (the admin console's settings show the right one)",
    40014: "invalid access token",
    40031: "invalid UserID list (a UserID is misspelt or outside the app's visible range)",
    40035: "invalid parameter",
    40058: "invalid parameter (see the API's description of its fields)",
    40063: "a parameter is empty",
    40096: "invalid external_userid (not a customer of this corp)",
    41001: "the access token is missing",
    41002: "the corpid is missing",
    41004: "the secret is missing",
    42001: "the access token has expired",
    44004: "empty text content",
    45002: "the content is too long",
    45009: "API call frequency limit reached",
    45033: "too many concurrent calls of this API",
    48002: "the app has no permission to call this API",
    60020: "this server's IP address is not trusted by the app",
    60111: "the UserID does not exist",
    95000: "invalid open_kfid",
    95001: "send limit reached: at most 5 messages may follow the customer's last message; wait for the customer "
           "to write again",
    95002: "send time limit: messages may be sent only within 48 hours of the customer's last message",
    95003: "the corp's limit of customers being served is reached (the corp is not verified)",
    95004: "the open_kfid does not exist (another corp's, or a deleted account)",
    95005: "the number of kf accounts is out of bounds (at least one, at most the corp's limit)",
    95006: "invalid kf account name",
    95007: "invalid message token (the callback's Token has expired or is not one)",
    95008: "too many menu items in a msgmenu message (at most 10)",
    95009: "invalid menu item type in a msgmenu message",
    95011: "微信客服 is used inside WeCom, but the access token comes from the standalone 微信客服 secret",
    95012: "微信客服 is used standalone, but the access token comes from a WeCom app's secret",
    95013: "the session has already ended",
    95014: "the user is not a servicer, or has not activated WeCom",
    95015: "the admin console has set up a dedicated service for this account",
    95016: "this service-state change is not allowed",
    95017: "API access is switched off (basic app permission)",
    95018: "the session's state does not allow sending (the customer waits in the pool or is with a servicer, "
           "or 48 hours have passed)",
    95019: "the servicer has stopped receiving or is suspended",
    95022: "invalid location_type",
    95023: "API access is granted to a custom-developed app instead (switch it in the admin console: 微信客服)",
    95026: "the kf accounts are little used: no new one can be created for now",
    95027: "an unverified corp may create only 10 kf accounts",
    95030: "the customer-service component forbids this message type",
    95031: "the customer has not asked anything in the last 48 hours",
    95032: "the customer-service component's permission to read chat records has expired",
}

#: 40001 from gettoken: the meaning WeCom gives it (its table speaks of the secret only).
_SECRET_REFUSED = ("invalid secret: the corpid and secret do not match, the secret was reset, or the app is "
                   "disabled (a 微信客服 token needs a self-built app's secret with 微信客服 API permission)")


def meaning_of(errcode: int, path: str = "") -> str:
    """What ``errcode`` means when ``path`` answers it."""
    if errcode == 40001 and path == TOKEN_PATH:
        return _SECRET_REFUSED
    return WECOM_ERROR_MEANINGS.get(errcode, "see WeCom's global error-code reference")


class WeComAPIError(WeChatAPIError):
    """The WeCom API answered with an errcode other than 0.

    As :class:`~kf_plugin.errors.WeChatAPIError`, with :attr:`meaning` from
    :data:`WECOM_ERROR_MEANINGS`.
    """

    def __init__(self, errcode: int, errmsg: str = "", path: str = "", note: str = ""):
        super().__init__(errcode, errmsg, path, note)
        self.meaning = meaning_of(errcode, path)
        where = f" on {path}" if path else ""
        said = f" (WeCom said: {errmsg})" if errmsg else ""
        self.args = (f"WeCom API error {errcode}{where}: {self.meaning}{said}{note}",)


class WeComTokenError(WeComAPIError, InvalidTokenError):
    """40001, 40014, 42001 on an API call: the access token was refused (after one renewal)."""


class WeComCredentialsError(WeComAPIError):
    """The corpid or secret is refused (40001 or 40013 from gettoken, 41002, 41004), or this host is not trusted
    (60020): nothing works until the configuration changes."""


class WeComRateLimitedError(WeComAPIError, RateLimitedError):
    """45009, 45033: call frequency or concurrency limit reached."""


class KfApiAccessError(WeComAPIError):
    """The app may not call the 微信客服 API: 48002, 95011, 95012, 95017, 95023."""


class OpenKfidError(WeComAPIError):
    """95000, 95004: the open_kfid is invalid, another corp's, or deleted."""


class UnknownCustomerError(WeComAPIError):
    """40096: the external_userid is not a customer of this corp."""


class SendWindowError(WeComAPIError):
    """95001 (5 messages after the customer's last one are used up), 95002 (48 hours have passed):
    only the customer's next message allows more."""


class SessionStateError(WeComAPIError):
    """95018 (the state does not allow sending: pool or servicer), 95016 (state change not allowed),
    95013 (the session has ended)."""


class ServicerUnavailableError(WeComAPIError):
    """95014 (not a servicer, or not activated), 95019 (stopped receiving or suspended)."""


class SyncTokenError(WeComAPIError):
    """95007: the callback's message token has expired (10 minutes) or is invalid; pull without it."""


_ERROR_CLASSES: Dict[int, Type[WeComAPIError]] = {
    40014: WeComTokenError, 42001: WeComTokenError,
    40013: WeComCredentialsError, 41002: WeComCredentialsError, 41004: WeComCredentialsError,
    60020: WeComCredentialsError,
    45009: WeComRateLimitedError, 45033: WeComRateLimitedError,
    48002: KfApiAccessError, 95011: KfApiAccessError, 95012: KfApiAccessError, 95017: KfApiAccessError,
    95023: KfApiAccessError,
    95000: OpenKfidError, 95004: OpenKfidError,
    40096: UnknownCustomerError,
    95001: SendWindowError, 95002: SendWindowError,
    95013: SessionStateError, 95016: SessionStateError, 95018: SessionStateError,
    95014: ServicerUnavailableError, 95019: ServicerUnavailableError,
    95007: SyncTokenError,
}


def wecom_error(errcode: int, errmsg: str = "", path: str = "", note: str = "") -> WeComAPIError:
    """The most specific :class:`WeComAPIError` subclass for ``errcode`` answered by ``path``."""
    cls: Type[WeComAPIError]
    if errcode == 40001:
        cls = WeComCredentialsError if path == TOKEN_PATH else WeComTokenError
    else:
        cls = _ERROR_CLASSES.get(errcode, WeComAPIError)
    return cls(errcode, errmsg, path, note)
