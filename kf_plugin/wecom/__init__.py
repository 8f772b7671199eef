"""微信客服 (WeChat customer service through WeCom): its API client and errors."""
from .errors import (
    KfApiAccessError,
    OpenKfidError,
    SendWindowError,
    ServicerUnavailableError,
    SessionStateError,
    SyncTokenError,
    UnknownCustomerError,
    WeComAPIError,
    WeComCredentialsError,
    WeComRateLimitedError,
    WeComTokenError,
)

__all__ = ["WeComAPIError", "WeComTokenError", "WeComCredentialsError", "WeComRateLimitedError", "KfApiAccessError",
           "OpenKfidError", "UnknownCustomerError", "SendWindowError", "SessionStateError",
           "ServicerUnavailableError", "SyncTokenError"]
