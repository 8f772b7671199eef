"""The sandbox playing WeChat for a bot built on kf_plugin itself, served on a real loopback port.

The bot's rule file hands ``人工`` off (tests/conftest.py's rules); its session hooks
record the kf_* events it hears; a handler of its own opens a session through ``kf.admin``.
"""
from __future__ import annotations

import queue
from typing import Any, Iterator, Tuple

import pytest

from kf_plugin import Keyword, MessageRouter
from kf_plugin.testing.sandbox import SandboxServer

from ...conftest import AES_KEY, TOKEN
from .conftest import Clock

Seen = Tuple[str, str, Any]


@pytest.fixture(params=[None, AES_KEY], ids=["plain", "safe"])
def kf_bot(request, sandbox, server, make_app) -> Iterator[Tuple[Any, "queue.Queue[Seen]"]]:
    sandbox.add_agent("kf1@test", "one", wx="agent_wx1", online=True)
    router = MessageRouter()
    seen: "queue.Queue[Seen]" = queue.Queue()
    config = {"KF_ENCODING_AES_KEY": request.param} if request.param else {}
    app = make_app(router=router, KF_APPID=sandbox.appid, KF_SECRET=sandbox.secret, KF_API_BASE_URL=server.url,
                   KF_MAX_CLOCK_SKEW=0, **config)
    plugin = app.extensions["kf_plugin"].plugin

    @plugin.on_session()
    def heard(event: Any) -> None:
        seen.put((event.event, event.source, getattr(event, "account", None)))

    @router.on(Keyword("接入", match="exact"))
    def open_session(message: Any) -> str:
        plugin.admin.open_session(message.source, "kf1@test")  # the API, from inside the push's handler
        return "正在为您接入"

    with SandboxServer(app) as served:
        sandbox.connect_bot(served.url + "/wechat", TOKEN, encoding_aes_key=request.param)
        yield plugin, seen
    plugin.shutdown()


def test_a_kf_plugin_bot_end_to_end(sandbox, kf_bot, clock: Clock):
    plugin, seen = kf_bot
    assert sandbox.user_says("oUser1", "转人工").message_type == "transfer_customer_service"
    assert [case["openid"] for case in sandbox.wait_queue] == ["oUser1"]
    clock.advance(5)
    sandbox.accept("oUser1", "kf1@test")
    assert seen.get(timeout=5) == ("kf_create_session", "oUser1", "kf1@test")
    assert sandbox.user_says("oUser1", "在吗") is None
    clock.advance(5)
    sandbox.close("oUser1")
    assert seen.get(timeout=5) == ("kf_close_session", "oUser1", "kf1@test")
    assert [p.answer.status for p in sandbox.pushes] == [200, 200, 200]


def test_a_kf_plugin_bot_opening_a_session_itself_hears_the_event(sandbox, kf_bot):
    plugin, seen = kf_bot
    sandbox.user_says("oUser1", "接入")
    sandbox.wait_for_pushes()
    assert seen.get(timeout=5) == ("kf_create_session", "oUser1", "kf1@test")
    assert sandbox.sessions["oUser1"]["kf_account"] == "kf1@test"
