"""微信客服 (WeChat customer service through WeCom): its API client, typed calls and errors.

::

    from kf_plugin.wecom import WeComClient, WeComKf, token_store_name

    client = WeComClient(corpid, secret, token_store=RedisTokenStore(redis, token_store_name(corpid)))
    kf = WeComKf(client)
    kf.send_text(open_kfid, external_userid, "您好")
"""
from .api import (
    Customer,
    CustomerBatch,
    KfAccount,
    Servicer,
    ServicerResult,
    ServiceState,
    State,
    Statistic,
    SyncPage,
    WeComKf,
)
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

__all__ = ["WeComClient", "WeComKf", "token_store_name", "DEFAULT_WECOM_API_BASE_URL", "State", "KfAccount",
           "Servicer", "ServicerResult", "ServiceState", "Customer", "CustomerBatch", "Statistic", "SyncPage",
           "WeComAPIError", "WeComTokenError", "WeComCredentialsError", "WeComRateLimitedError", "KfApiAccessError",
           "OpenKfidError", "UnknownCustomerError", "SendWindowError", "SessionStateError",
           "ServicerUnavailableError", "SyncTokenError"]
