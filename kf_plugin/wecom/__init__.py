"""微信客服 (WeChat customer service through WeCom): its API client and errors."""
from .client import DEFAULT_WECOM_API_BASE_URL, WeComClient, token_store_name
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

__all__ = ["WeComClient", "token_store_name", "DEFAULT_WECOM_API_BASE_URL", "WeComAPIError", "WeComTokenError",
           "WeComCredentialsError", "WeComRateLimitedError", "KfApiAccessError", "OpenKfidError",
           "UnknownCustomerError", "SendWindowError", "SessionStateError", "ServicerUnavailableError",
           "SyncTokenError"]
