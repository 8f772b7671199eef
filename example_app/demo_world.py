"""The demo's world: the example bot and the sandbox (WeChat and its API) on loopback ports, connected; and
what its steps share: a clock both sides read, numbered steps, checks."""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import requests

from kf_plugin.lifecycle import Stage
from kf_plugin.testing import Answer, PushSigner
from kf_plugin.testing.sandbox import Sandbox, SandboxServer

from . import DEMO_SETTINGS, create_app

__all__ = ["World", "Demo", "DemoClock", "describe", "is_text", "AGENT", "TRANSFER"]

AGENT = "xiaowang@gh_example"   # the sandbox's only agent, online
TRANSFER = "transfer_customer_service"


def describe(answer: Optional[Answer]) -> str:
    """An answer of the bot as one line."""
    if answer is None:
        return "(not pushed to the bot)"
    if answer.status != 200:
        return f"HTTP {answer.status}: {answer.body}"
    if answer.message_type == TRANSFER:
        return f"{TRANSFER} → " + (f"agent {answer.kf_account}" if answer.kf_account else "any agent")
    if answer.message_type == "text":
        return f"text: {answer.content}"
    return "success (no reply)" if answer.body == "success" else answer.body


def is_text(answer: Optional[Answer], content: str) -> bool:
    """Whether ``answer`` is the text ``content``."""
    return answer is not None and answer.message_type == "text" and answer.content == content


class DemoClock:
    """The demo's time, read by the bot and the sandbox alike: it starts at the current second and moves only
    when the demo says time passes, so every figure it shows (a wait of 90 s) is exact."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def skip(self, seconds: float) -> None:
        self.now += seconds


class World(contextlib.ExitStack):
    """The WeChat API and WeChat (the sandbox), and the example bot connected to it, each on a loopback port."""

    def __enter__(self) -> "World":
        super().__enter__()
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        self.clock = DemoClock()
        self.sandbox = Sandbox(appid=DEMO_SETTINGS["KF_APPID"], secret="kf-demo-secret", clock=self.clock)
        self.sandbox.add_agent(AGENT, "小王", wx="xiaowang_wechat", online=True)
        self.api = self.enter_context(self.sandbox.serve())
        self.app = create_app({"KF_DEMO": True, "KF_SECRET": "kf-demo-secret", "KF_API_BASE_URL": self.api.url},
                              clock=self.clock)
        self.plugin = self.app.extensions["kf_plugin"].plugin
        self.callback(self.plugin.shutdown)
        self.bot = self.enter_context(SandboxServer(self.app))
        self.url = self.bot.url + self.app.config["KF_URL"]
        config = self.app.config
        self.sandbox.connect_bot(self.url, config["KF_TOKEN"], encoding_aes_key=config["KF_ENCODING_AES_KEY"])
        self.signer = PushSigner(config["KF_TOKEN"], config["KF_ENCODING_AES_KEY"], config["KF_APPID"],
                                 clock=self.clock)

    def post(self, query: Dict[str, str], body: bytes) -> Answer:
        """One delivery of a signed push, straight to the bot (as WeChat retries one)."""
        with requests.Session() as http:
            http.trust_env = False   # a loopback bot must never be reached through a proxy
            response = http.post(self.url, params=query, data=body, timeout=10)
        xml = self.signer.open_reply(response.text) if response.ok else response.text
        return Answer(response.status_code, response.text, response.headers.get("Content-Type", ""), xml)


class Demo:
    """The steps' shared means: the world, numbered steps, checks and their failures."""

    def __init__(self, world: World, echo: Callable[[str], None], records_to: Optional[Path]):
        self.world = world
        self.sandbox = world.sandbox
        self.plugin = world.plugin
        self.stats = world.app.extensions["example_bot_stats"]
        self.echo = echo
        self.records_to = records_to
        self.started = world.clock()
        self.failures: List[str] = []
        self.number = 0

    def step(self, title: str) -> None:
        self.number += 1
        self.echo(f"{self.number}. {title}")

    def expect(self, ok: bool, what: str) -> None:
        self.echo(f"   {'ok' if ok else 'FAILED'}: {what}")
        if not ok:
            self.failures.append(what)

    def says(self, openid: str, text: str) -> Optional[Answer]:
        """The user writes ``text`` in WeChat; the bot's answer (``None``: WeChat gave it to the agent)."""
        answer = self.sandbox.user_says(openid, text)
        self.echo(f"   {openid} → {text}\n   {'bot':>{len(openid)}} ← {describe(answer)}")
        return answer

    def stage(self, openid: str) -> Stage:
        conversation = self.plugin.conversation(openid)
        agent = f", agent {conversation.agent}" if conversation.agent else ""
        self.echo(f"   kf.conversation({openid}): {conversation.stage.value}{agent}")
        return conversation.stage

    def sent_to(self, openid: str, msgtype: str, timeout: float = 5.0) -> Optional[dict]:
        """The first customer-service message of ``msgtype`` delivered to ``openid`` (hooks run in the
        background: waits up to ``timeout`` seconds for it)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in self.sandbox.sent if m["touser"] == openid and m["msgtype"] == msgtype]
            if found or time.monotonic() > deadline:
                return found[0] if found else None
            time.sleep(0.02)

