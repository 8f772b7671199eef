"""The end-to-end demo: the example bot on a loopback port, pushed to over HTTP as WeChat does.

No WeChat account and no internet: the demo credentials sign and encrypt each
push, and every answer is decrypted and checked. Exits non-zero if any step
does not behave as shown.
"""
from __future__ import annotations

import threading
from typing import Callable, List, Tuple

import requests
from werkzeug.serving import make_server

from kf_plugin.testing import Answer, PushSigner, message_xml

from . import create_app


def _describe(answer: Answer) -> str:
    if answer.status != 200:
        return f"HTTP {answer.status}: {answer.body}"
    if answer.message_type == "transfer_customer_service":
        return "transfer_customer_service → " + (f"agent {answer.kf_account}" if answer.kf_account else "any agent")
    if answer.message_type == "text":
        return f"text: {answer.content}"
    return answer.xml


class _Bot:
    """The example app served by a real HTTP server in a background thread."""

    def __init__(self) -> None:
        self.app = create_app({"KF_DEMO": True})
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}{self.app.config['KF_URL']}"
        self.signer = PushSigner(self.app.config["KF_TOKEN"], self.app.config["KF_ENCODING_AES_KEY"],
                                 self.app.config["KF_APPID"])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "_Bot":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.thread.join()

    def post(self, query: dict, body: bytes) -> Answer:
        response = requests.post(self.url, params=query, data=body, timeout=10)
        xml = self.signer.open_reply(response.text) if response.ok else response.text
        return Answer(response.status_code, response.text, response.headers.get("Content-Type", ""), xml)

    def push(self, xml: str) -> Answer:
        return self.post(*self.signer.sign(xml))


def run(echo: Callable[[str], None] = print) -> int:
    """Run the demo; 0 when every step behaved as expected."""
    failures: List[str] = []

    def expect(ok: bool, what: str) -> None:
        echo(f"   {'ok' if ok else 'FAILED'}: {what}")
        if not ok:
            failures.append(what)

    with _Bot() as bot:
        echo(f"kf_plugin demo: the example bot at {bot.url}")
        echo("(safe mode with demo credentials: every push is signed and AES-encrypted, every reply decrypted)\n")

        steps: List[Tuple[str, str, str, Callable[[Answer], bool], str]] = [
            ("a greeting, answered by the bot's own handler", "你好", message_xml(text="你好"),
             lambda a: a.message_type == "text" and a.content.startswith("你好"), "the bot greets back"),
            ('"转人工", handed to customer service by rule ask-for-human', "转人工", message_xml(text="转人工"),
             lambda a: a.message_type == "transfer_customer_service" and a.kf_account is None,
             "transfer_customer_service, any agent"),
            ("a menu click, handed to a designated agent by rule vip-menu", "[menu click CONTACT_VIP]",
             message_xml(event="CLICK", key="CONTACT_VIP"),
             lambda a: a.message_type == "transfer_customer_service" and a.kf_account == "vip1@gh_example",
             "transfer_customer_service with TransInfo/KfAccount vip1@gh_example"),
        ]
        for number, (title, said, xml, check, expectation) in enumerate(steps, 1):
            echo(f"{number}. {title}")
            echo(f"   user → {said}")
            answer = bot.push(xml)
            echo(f"   bot  ← {_describe(answer)}")
            expect(answer.status == 200 and check(answer), expectation)

        echo("4. a push WeChat delivers three times (no answer seen within 5 s): one handler run, one reply")
        stats = bot.app.extensions["example_bot_stats"]
        before = stats["greet"]
        query, body = bot.signer.sign(message_xml(text="hello", msg_id=4242424242))
        answers = [bot.post(query, body) for _ in range(3)]
        for delivery, answer in enumerate(answers, 1):
            echo(f"   delivery {delivery} ← {_describe(answer)} (CreateTime {answer.fields.get('CreateTime')})")
        expect(len({a.xml for a in answers}) == 1 and answers[0].message_type == "text",
               "all three deliveries got the identical reply")
        expect(stats["greet"] - before == 1, f"the greeting handler ran {stats['greet'] - before} time(s)")

    echo("")
    if failures:
        echo(f"demo FAILED: {len(failures)} step(s) misbehaved")
        return 1
    echo("demo finished: every step behaved as shown")
    return 0
