"""WeCom's side of the sandbox (``sandbox.wecom``): the 微信客服 API on ``qyapi.weixin.qq.com``'s paths.

::

    sandbox = Sandbox(clock=clock)
    kfid = sandbox.wecom.add_account("客服")
    with sandbox.serve() as server:
        requests.get(server.url + "/cgi-bin/gettoken",
                     params={"corpid": sandbox.wecom.corpid, "corpsecret": sandbox.wecom.secret})

Layout: :mod:`.state` and its parts (:mod:`.tokens`, :mod:`.directory`, :mod:`.sessions`,
:mod:`.inbox`, :mod:`.messages`) hold WeCom's rules without HTTP; :mod:`.stats` counts the
statistics; :mod:`.endpoints` maps API paths onto them; :mod:`.api` answers them on the
sandbox's server; :mod:`.callbacks` tells a connected bot about new messages and events;
:mod:`.facade` is :class:`WeComSandbox`, the control and inspection side; :mod:`.control` serves its customer's
and servicers' methods under ``/sandbox/wecom/`` for driving them by hand.
"""
from .callbacks import Callback
from .errors import WECOM_ERRMSG, WeComError
from .facade import DEFAULT_CORP_SECRET, DEFAULT_CORPID, WeComSandbox
from .inbox import HISTORY, MAX_LIMIT, UNTOKENED_READS_PER_MINUTE
from .state import FAIL_TYPES, SEND_WINDOW, SENDS_PER_CUSTOMER_MESSAGE

__all__ = ["WeComSandbox", "WeComError", "Callback", "WECOM_ERRMSG", "DEFAULT_CORPID", "DEFAULT_CORP_SECRET",
           "HISTORY", "MAX_LIMIT", "UNTOKENED_READS_PER_MINUTE", "FAIL_TYPES", "SEND_WINDOW",
           "SENDS_PER_CUSTOMER_MESSAGE"]
