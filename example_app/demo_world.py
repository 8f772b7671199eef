"""The demo's world: the example bot and the sandbox (WeChat, WeCom and their APIs) on loopback ports, connected;
and what its steps share: a clock both sides read, numbered steps, checks."""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import requests

from kf_plugin.lifecycle import Stage
from kf_plugin.testing import Answer, PushSigner
from kf_plugin.testing.sandbox import Sandbox, SandboxServer
from kf_plugin.wecom import State

from . import DEMO_SETTINGS, DEMO_WECOM_SETTINGS, create_app

__all__ = ["World", "Demo", "DemoClock", "describe", "describe_sent", "is_text", "AGENT", "SERVICER", "TRANSFER"]

AGENT = "xiaowang@gh_example"   # the sandbox's only agent, online
SERVICER = "xiaoli"             # the only servicer of the sandbox's 微信客服 account, receiving
TRANSFER = "transfer_customer_service"
PULL_TIMEOUT = 10.0             # seconds a WeCom callback, its pull and its handling may take
STATES = {State.NEW: "new session", State.BOT: "with the bot", State.POOL: "in the pool",
          State.HUMAN: "with servicer {}", State.ENDED: "ended"}


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


def describe_sent(message: Dict[str, Any]) -> str:
    """A message the bot sent through the 微信客服 API (as the sandbox recorded it) as one line."""
    how = f"send_msg_on_event with the {message['on_event']} code" if message["on_event"] else "kf/send_msg"
    body = message["text"]["content"] if message["msgtype"] == "text" else message["msgtype"]
    return f"{message['msgtype']}: {body} ({how})"


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
    """WeChat, WeCom and their APIs (the sandbox), and the example bot connected to them, each on a loopback
    port: the bot serves the Official Account and a 微信客服 account (``kfid``) with the demo credentials."""

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
        self.sandbox = Sandbox(appid=DEMO_SETTINGS["KF_APPID"], secret="kf-demo-secret", clock=self.clock,
                               corpid=DEMO_WECOM_SETTINGS["KF_WECOM_CORPID"],
                               corp_secret=DEMO_WECOM_SETTINGS["KF_WECOM_SECRET"])
        self.sandbox.add_agent(AGENT, "小王", wx="xiaowang_wechat", online=True)
        self.kfid = self.sandbox.wecom.add_account("示例客服")
        self.sandbox.wecom.add_servicer(self.kfid, SERVICER)
        self.api = self.enter_context(self.sandbox.serve())
        self.app = create_app({"KF_DEMO": True, "KF_SECRET": "kf-demo-secret", "KF_API_BASE_URL": self.api.url,
                               **DEMO_WECOM_SETTINGS, "KF_WECOM_API_BASE_URL": self.api.url}, clock=self.clock)
        self.plugin = self.app.extensions["kf_plugin"].plugin
        self.wecom = self.app.extensions["kf_plugin"].wecom
        self.callback(self.plugin.shutdown)
        self.bot = self.enter_context(SandboxServer(self.app))
        self.url = self.bot.url + self.app.config["KF_URL"]
        self.wecom_url = self.bot.url + self.app.config["KF_WECOM_URL"]
        config = self.app.config
        self.sandbox.connect_bot(self.url, config["KF_TOKEN"], encoding_aes_key=config["KF_ENCODING_AES_KEY"])
        self.sandbox.wecom.connect_bot(self.wecom_url, config["KF_WECOM_TOKEN"], config["KF_WECOM_AES_KEY"])
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
    """The steps' shared means: the world, numbered steps, checks and their failures; a user of the Official
    Account and a customer of 微信客服 who write, and what the bot answers them."""

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

    # -- 微信客服 --------------------------------------------------------------------------------------

    def customer_says(self, customer: str, text: str) -> Optional[List[Dict[str, Any]]]:
        """The customer writes ``text`` to the 微信客服 account; what the bot sent them once it pulled and
        handled the message (``[]``: nothing; ``None``: the bot did not handle it in time)."""
        before = len(self.sandbox.wecom.sent)
        msgid = self.sandbox.wecom.customer_says(self.world.kfid, customer, text)
        return self._answered(f"{customer} → {text}", customer, msgid, before)

    def customer_enters(self, customer: str, scene: str) -> Optional[List[Dict[str, Any]]]:
        """The customer opens the account's chat from a link with ``scene`` (``enter_session``); what the bot
        sent them once it handled the event (as :meth:`customer_says`)."""
        before = len(self.sandbox.wecom.sent)
        item = self.sandbox.wecom.customer_enters(self.world.kfid, customer, scene=scene)
        code = "with a welcome_code" if "welcome_code" in item["event"] else "without a welcome_code"
        return self._answered(f"{customer} enters the chat (enter_session, scene {scene}, {code})", customer,
                              item["msgid"], before)

    def pulled(self, msgid: str) -> bool:
        """Whether the bot handled the WeCom message or event ``msgid`` (the callback, the pull and the handling
        run in the background: waits up to ``PULL_TIMEOUT`` seconds)."""
        seen = self.world.wecom.puller.seen
        deadline = time.monotonic() + PULL_TIMEOUT
        while not seen.seen(msgid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def service_state(self, customer: str, before: Optional[Tuple[int, Optional[str]]] = None
                      ) -> Tuple[int, Optional[str]]:
        """The customer's session as WeCom has it (``service_state/get``), shown with the state ``before``."""
        now = self.sandbox.wecom.service_state(self.world.kfid, customer)
        shown = " → ".join(f"{state} ({STATES[State(state)].format(servicer)})"
                           for state, servicer in ([before] if before else []) + [now])
        self.echo(f"   WeCom's service_state: {shown}")
        return now

    def _answered(self, what: str, customer: str, msgid: str, before: int) -> Optional[List[Dict[str, Any]]]:
        pulled = self.pulled(msgid)
        sent = [m for m in self.sandbox.wecom.sent[before:] if m["touser"] == customer]
        self.echo(f"   {what}")
        shown = [describe_sent(m) for m in sent] or ["(nothing sent)" if pulled else "(not handled in time)"]
        for line in shown:
            self.echo(f"   {'bot':>{len(customer)}} ← {line}")
        return sent if pulled else None
