"""The end-to-end demo: the example bot on a loopback port, pushed to over HTTP as WeChat does,
with the WeChat API played by the embedded sandbox.

No WeChat account and no internet: the demo credentials sign and encrypt each
push, every answer is decrypted and checked, and the bot's API calls go to the
sandbox. Exits non-zero if any step does not behave as shown.
"""
from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional

import requests
from werkzeug.serving import make_server

from kf_plugin.errors import QuotaExceededError
from kf_plugin.export import export_records
from kf_plugin.testing import Answer, PushSigner, message_xml
from kf_plugin.testing.sandbox import Sandbox
from kf_plugin.window import action_of
from kf_plugin.webhook import parse_push

from . import DEMO_SETTINGS, create_app

AGENT = "xiaowang@gh_example"
USER = "oDemoUser000000001"
RETRIED_USER = "oDemoUser000000003"   # one still with the bot (USER waits in the queue after step 2)


def _describe(answer: Answer) -> str:
    if answer.status != 200:
        return f"HTTP {answer.status}: {answer.body}"
    if answer.message_type == "transfer_customer_service":
        return "transfer_customer_service → " + (f"agent {answer.kf_account}" if answer.kf_account else "any agent")
    if answer.message_type == "text":
        return f"text: {answer.content}"
    return answer.body


class _World:
    """The WeChat API (sandbox) and the example bot, each served on a loopback port."""

    def __init__(self) -> None:
        self.sandbox = Sandbox(appid=DEMO_SETTINGS["KF_APPID"], secret="kf-demo-secret")
        self.sandbox.add_agent(AGENT, "小王", wx="xiaowang_wechat", online=True)
        self.api = self.sandbox.serve()
        self.app = create_app({"KF_DEMO": True, "KF_SECRET": "kf-demo-secret", "KF_API_BASE_URL": self.api.url})
        self.plugin = self.app.extensions["kf_plugin"].plugin
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}{self.app.config['KF_URL']}"
        self.signer = PushSigner(self.app.config["KF_TOKEN"], self.app.config["KF_ENCODING_AES_KEY"],
                                 self.app.config["KF_APPID"])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "_World":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.thread.join()
        self.plugin.shutdown()
        self.api.stop()

    def post(self, query: dict, body: bytes) -> Answer:
        response = requests.post(self.url, params=query, data=body, timeout=10)
        xml = self.signer.open_reply(response.text) if response.ok else response.text
        return Answer(response.status_code, response.text, response.headers.get("Content-Type", ""), xml)

    def push(self, xml: str) -> Answer:
        """Deliver a push as WeChat does — and, as WeChat, remember what the user did."""
        message = parse_push(xml)
        action = action_of(message)
        if action is not None:
            self.sandbox.interact(message.source, action)
        return self.post(*self.signer.sign(xml))


def run(echo: Callable[[str], None] = print, records_to: Optional[Path] = None) -> int:
    """Run the demo; 0 when every step behaved as expected."""
    failures: List[str] = []
    started = int(time.time())

    def expect(ok: bool, what: str) -> None:
        echo(f"   {'ok' if ok else 'FAILED'}: {what}")
        if not ok:
            failures.append(what)

    def step(number: int, title: str) -> None:
        echo(f"{number}. {title}")

    with _World() as world:
        echo(f"kf_plugin demo: the example bot at {world.url}, the WeChat API (sandbox) at {world.api.url}")
        echo("(safe mode with demo credentials: every push is signed and AES-encrypted, every reply decrypted)\n")

        step(1, "a greeting, answered by the bot's own handler")
        answer = world.push(message_xml(text="你好", sender=USER))
        echo(f"   user → 你好\n   bot  ← {_describe(answer)}")
        expect(answer.message_type == "text" and answer.content.startswith("你好"), "the bot greets back")

        step(2, '"转人工", handed to customer service by rule ask-for-human')
        answer = world.push(message_xml(text="转人工", sender=USER))
        echo(f"   user → 转人工\n   bot  ← {_describe(answer)}")
        expect(answer.message_type == "transfer_customer_service" and answer.kf_account is None,
               "transfer_customer_service, any agent")

        step(3, "a menu click, handed to a designated agent by rule vip-menu")
        answer = world.push(message_xml(event="CLICK", key="CONTACT_VIP", sender=USER))
        echo(f"   user → [menu click CONTACT_VIP]\n   bot  ← {_describe(answer)}")
        expect(answer.message_type == "transfer_customer_service" and answer.kf_account == "vip1@gh_example",
               "transfer_customer_service with TransInfo/KfAccount vip1@gh_example")

        step(4, "a push WeChat delivers three times (no answer seen within 5 s): one handler run, one reply")
        stats = world.app.extensions["example_bot_stats"]
        before = stats["greet"]
        query, body = world.signer.sign(message_xml(text="hello", msg_id=4242424242, sender=RETRIED_USER))
        answers = [world.post(query, body) for _ in range(3)]
        for delivery, answer in enumerate(answers, 1):
            echo(f"   delivery {delivery} ← {_describe(answer)} (CreateTime {answer.fields.get('CreateTime')})")
        expect(len({a.xml for a in answers}) == 1 and answers[0].message_type == "text",
               "all three deliveries got the identical reply")
        expect(stats["greet"] - before == 1, f"the greeting handler ran {stats['greet'] - before} time(s)")

        step(5, "who is online, from the WeChat API")
        online = world.plugin.admin.online_agents()
        for agent in online:
            echo(f"   {agent.kf_account}: status {agent.status}, {agent.accepted_case} accepted case(s)")
        expect([a.kf_account for a in online] == [AGENT], f"{AGENT} is listed online")

        step(6, "a menu click handed to that agent through a session (rule talk-to-agent)")
        answer = world.push(message_xml(event="CLICK", key="TALK_TO_AGENT", sender=USER))
        echo(f"   user → [menu click TALK_TO_AGENT]\n   bot  ← {_describe(answer)}")
        session = world.plugin.admin.session(USER)
        echo(f"   WeChat: session of {USER} with {session.kf_account if session else 'nobody'}")
        expect(session is not None and session.kf_account == AGENT, f"a session with {AGENT} is open")

        step(7, "the agent writes to the user: a customer-service message sent as the kf account")
        for text in ("您好，我是客服小王。", "请问有什么可以帮您？"):
            world.plugin.admin.send_text(USER, text, as_account=AGENT)
            delivered = world.sandbox.sent[-1]
            echo(f"   WeChat delivered to {delivered['touser']} as {delivered['kf_account']}: "
                 f"{delivered['text']['content']}")
        expect(all(m["kf_account"] == AGENT for m in world.sandbox.sent[-2:]), "the messages reached the user as the agent")

        step(8, "a user whose only interaction was a menu click: 3 messages allowed, the 4th refused before any call")
        clicker = "oDemoUser000000002"
        world.push(message_xml(event="CLICK", key="SOMETHING_ELSE", sender=clicker))
        status = world.plugin.window.status(clicker)
        echo(f"   window: can send {status.can_send}, {status.remaining} remaining")
        for n in range(1, 4):
            world.plugin.admin.send_text(clicker, f"消息 {n}")
        calls_before = len(world.sandbox.calls)
        try:
            world.plugin.admin.send_text(clicker, "消息 4")
            refused = None
        except QuotaExceededError as exc:
            refused = exc
        echo(f"   4th send: {refused}")
        expect(refused is not None and len(world.sandbox.calls) == calls_before,
               "refused by the window tracker with 45047, and WeChat was never called")

        step(9, "the chat records of the demo, exported")
        with tempfile.TemporaryDirectory() as scratch:
            out = records_to or Path(scratch) / "records.jsonl"
            count = export_records(world.plugin.admin.records(started - 60, int(time.time()) + 60), out, "jsonl")
            lines = out.read_text(encoding="utf-8").splitlines()
        echo(f"   {count} record(s) written; the first: {lines[0] if lines else '—'}")
        expect(count == len(lines) == 2 and AGENT in lines[0], "both of the agent's messages are in the export")

    echo("")
    if failures:
        echo(f"demo FAILED: {len(failures)} step(s) misbehaved")
        return 1
    echo("demo finished: every step behaved as shown")
    return 0
