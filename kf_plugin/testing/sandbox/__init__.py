"""A stand-in for the WeChat API (``https://api.weixin.qq.com``) on a loopback port.

For the demo, kf_plugin's tests and users' own tests::

    from kf_plugin.testing.sandbox import Sandbox

    sandbox = Sandbox()
    with sandbox.serve() as server:
        requests.get(server.url + "/cgi-bin/token", params={...})

Layout: :mod:`.state` and its parts (:mod:`.tokens`, :mod:`.accounts`,
:mod:`.window`, :mod:`.sessions`, :mod:`.records`, :mod:`.messages`) hold WeChat's
rules without HTTP; :mod:`.endpoints` maps API paths onto them; :mod:`.server`
is the HTTP side; :mod:`.faults` injects failures; :mod:`.calls` logs requests;
:mod:`.redirect` points a ``requests`` session (wechatpy's) at a server;
:mod:`.conversation` plays WeChat between users, a bot and agents, pushing
through :mod:`.pushes`; :mod:`.sandbox` is the facade. :mod:`.control` serves the
facade's control methods under ``/sandbox/`` for driving a running sandbox by hand (with
:mod:`.refusals`, what its endpoints share), and :mod:`.seeding` names agents and their states
for it. :mod:`.wecom` plays WeCom's 微信客服 on the same server (``sandbox.wecom``).
"""
from .calls import Call
from .errors import ApiError
from .faults import Faults
from .pushes import BotUnreachableError, Push
from .sandbox import Sandbox
from .server import SandboxServer
from .wecom import WeComError, WeComSandbox
from .window import DEFAULT_QUOTAS

__all__ = ["Sandbox", "SandboxServer", "ApiError", "Call", "Faults", "DEFAULT_QUOTAS", "Push", "BotUnreachableError",
           "WeComSandbox", "WeComError"]
