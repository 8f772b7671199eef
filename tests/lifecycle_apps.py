"""Apps with the hand-off lifecycle for the push-path tests: one or several workers (Flask apps with a
KfPlugin) on the served sandbox, sharing memory or one Redis, and the pushes WeChat would send them.

A worker is what one process of a deployment is: its own app, plugin and pools. Two workers on one Redis
share everything a deployment shares (claims, conversations, records); in memory each has its own.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest
from flask import Flask

from kf_plugin import TEXT, KfPlugin, MessageRouter
from kf_plugin.lifecycle import Conversation, HandoffRecord, Transition
from kf_plugin.testing import Answer, WeChatTestClient, message_xml

from .conftest import FakeClock

OPENID = "oUser"
WANG, LI = "wang@gh_test", "li@gh_test"
QUEUE = """\
queue:
  cancel: ["取消", "退出人工"]
  cancel_text: "已为您取消转接"
"""
RULES = """\
version: 1
fallback_text: "客服暂时不在线，请留言"
handoff_text: "正在为您接入客服"
{queue}
{context}
rules:
  - name: ask-for-human
    keywords: ["人工", "转人工"]
  - name: hours
    keywords: 营业时间
    match: exact
    reply: "工作日 9:00–18:00"
  - name: vip
    keywords: VIP
    kf_account: wang@gh_test
  - name: menu-session
    event: CLICK
    event_key: TALK
    handoff: session
{more}
"""


def rules(queue: str = QUEUE, context: str = "", more: str = "") -> str:
    """The test rule file, with its ``queue:`` block, ``context:`` line and more rules (YAML text)."""
    return RULES.format(queue=queue, context=context, more=more)


def eventually(predicate: Callable[[], Any], timeout: float = 5.0) -> None:
    """Wait (bounded) for background work to show its result."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the background work did not happen in time"
        time.sleep(0.01)


def settled(seen: List[Transition], count: int) -> List[Transition]:
    """Wait for ``count`` transitions in ``seen``, then a moment for any further one, were it to come."""
    eventually(lambda: len(seen) >= count)
    time.sleep(0.2)
    return seen


class EchoBot:
    """The bot's own handlers: it answers every text ``机器人：<text>`` and counts what it answered."""

    def __init__(self) -> None:
        self.heard: List[str] = []
        self.router = MessageRouter("bot")
        self.router.add(TEXT, self.answer)

    def answer(self, message: Any) -> str:
        self.heard.append(message.content)
        return f"机器人：{message.content}"


@dataclass
class Worker:
    """One worker: its app, the client WeChat's pushes come through, its plugin, and the sandbox."""

    app: Flask
    client: WeChatTestClient
    plugin: KfPlugin
    api: Any

    def says(self, text: str, sender: str = OPENID, msg_id: Optional[int] = None) -> Answer:
        """The user sends ``text`` (an interaction in the sandbox's window, then the push)."""
        self.api.sandbox.interact(sender, "message")
        return self.client.send_text(text, sender=sender, msg_id=msg_id)

    def push(self, xml: str) -> Answer:
        return self.client.send(xml)

    def clicks(self, key: str, sender: str = OPENID) -> Answer:
        self.api.sandbox.interact(sender, "click")
        return self.client.send_event("CLICK", key, sender=sender)

    def conversation(self, openid: str = OPENID) -> Conversation:
        return self.plugin.conversation(openid)

    def handoffs(self, since: float = 0.0) -> List[HandoffRecord]:
        return self.plugin.handoffs(since)

    def heard(self, *kinds: str) -> List[Transition]:
        """A list the plugin's ``@on_handoff(*kinds)`` hook fills with the transitions it hears."""
        seen: List[Transition] = []
        self.plugin.on_handoff(*kinds)(seen.append)
        return seen


def session_event(kind: str, agent: Optional[str], at: float, sender: str = OPENID,
                  from_agent: Optional[str] = None) -> str:
    """The XML of a ``kf_<kind>_session`` event WeChat pushes, stamped ``at`` (its CreateTime, whole seconds)."""
    extra: Dict[str, str] = {}
    if kind == "switch":
        extra = {"FromKfAccount": from_agent or "", "ToKfAccount": agent or ""}
    elif agent is not None:
        extra = {"KfAccount": agent}
    return message_xml(event=f"kf_{kind}_session", sender=sender, create_time=int(at), extra=extra)


def text_push(text: str, sender: str = OPENID, msg_id: Optional[int] = None, at: Optional[float] = None) -> str:
    return message_xml(text=text, sender=sender, msg_id=msg_id, create_time=None if at is None else int(at))


@pytest.fixture
def clock() -> FakeClock:
    """The plugin's clock, at the real time to start with (the sandbox stamps pushes with real time)."""
    return FakeClock(time.time())


@pytest.fixture(params=["memory", "redis"])
def state(request) -> Dict[str, Any]:
    """The config of the workers' shared state: memory, or Redis (a database of this test's own)."""
    if request.param == "redis":
        return {"KF_REDIS_URL": request.getfixturevalue("redis_url")}
    return {}


@pytest.fixture
def make_worker(api, tmp_path: Path, make_app) -> Any:
    """``make_worker(rules_text, router=None, clock=None, **config)`` → a :class:`Worker` on the served sandbox.

    ``clock``: the plugin's time (then the timestamp check is off, as the pushes are signed with real time).
    Workers made with the same ``KF_REDIS_URL`` share it; the plugins are shut down after the test.
    """
    plugins: List[KfPlugin] = []

    def make(rules_text: str = rules(), router: Optional[MessageRouter] = None,
             clock: Optional[FakeClock] = None, **config: Any) -> Worker:
        path = tmp_path / f"rules-{len(plugins)}.yaml"
        path.write_text(rules_text, encoding="utf-8")
        options = {"clock": clock} if clock is not None else {}
        if clock is not None:
            config.setdefault("KF_MAX_CLOCK_SKEW", 0)
        # The push path alone: the background sweep (tests/test_reconcile_*.py) would reconcile with the sandbox's
        # sessions while a test pushes session events of its own.
        config = {"KF_HANDOFF_BUDGET": 2.0, "KF_HANDOFF_SWEEP": 0, **config}
        app = make_app(router=router, plugin_options=options, KF_RULES=str(path), KF_SECRET=api.sandbox.secret,
                       KF_APPID=api.sandbox.appid, KF_API_BASE_URL=api.url, **config)
        plugin = app.extensions["kf_plugin"].plugin
        plugins.append(plugin)
        return Worker(app, WeChatTestClient(app), plugin, api)
    yield make
    for plugin in plugins:
        plugin.shutdown()
