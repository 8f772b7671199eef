"""The end-to-end demo: one whole hand-off, from the bot to an agent and back, through real HTTP; then the
same on 微信客服 (WeCom customer service, :mod:`.demo_wecom`).

The example bot runs on a loopback port; the embedded sandbox plays the WeChat API
and WeChat itself: it pushes the users' messages to the bot (signed and encrypted
with the demo credentials), queues the users the bot transfers, and pushes
``kf_create_session`` / ``kf_close_session`` when its agent accepts or closes.
It plays WeCom too: its callbacks, ``sync_msg``, the service states and a servicer.
No WeChat account and no internet. Every step checks what it shows; the demo
exits non-zero if one does not behave as shown.

Time: the bot and the sandbox read one clock, which stands still but where the
demo moves it on as a real hand-off would wait (an agent takes a minute and a
half to accept, a session lapses after half an hour).
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable, Optional

import requests

from kf_plugin.errors import QuotaExceededError
from kf_plugin.export import export_records
from kf_plugin.lifecycle import Ending, Stage
from kf_plugin.testing import message_xml

from . import GREETING, SURVEY, THANKS, demo_wecom
from .demo_world import AGENT, TRANSFER, Demo, World, describe, is_text

USER = "oDemoUser000000001"
AHEAD = ("oDemoUser000000011", "oDemoUser000000012")   # they ask for a human before USER
RETRIED_USER = "oDemoUser000000003"
CLICKER = "oDemoUser000000002"
TO_AGENT = "我的订单号是 20240101，还没发货"
FROM_AGENT = "已为您查到，今天下午发货。"
ACCEPT_AFTER = 90      # seconds the agent takes to accept USER
SESSION_LENGTH = 120   # seconds USER spends with the agent


def greeting(demo: Demo) -> None:
    demo.step("a greeting, answered by the bot's own handler")
    answer = demo.says(USER, "你好")
    demo.expect(is_text(answer, GREETING), "the bot greets back")


def hand_off(demo: Demo) -> None:
    demo.step('"转人工", handed to customer service by rule ask-for-human: WeChat puts the user in its queue')
    for other in AHEAD:
        demo.sandbox.user_says(other, "转人工")
    demo.echo(f"   (two users asked for a human first: {', '.join(AHEAD)})")
    answer = demo.says(USER, "转人工")
    demo.expect(answer is not None and answer.message_type == TRANSFER and answer.kf_account is None,
                f"{TRANSFER}, any agent")
    queue = [waiting["openid"] for waiting in demo.sandbox.wait_queue]
    demo.echo(f"   WeChat's wait queue: {', '.join(queue)}")
    demo.expect(queue == [*AHEAD, USER], "WeChat queued the user third")
    conversation = demo.plugin.conversation(USER)
    demo.echo(f"   kf.conversation({USER}): {conversation.stage.value}, reason {conversation.reason}")
    demo.expect(conversation.stage is Stage.QUEUED and conversation.reason == "ask-for-human",
                "the bot knows the user waits in the queue, handed off by ask-for-human")


def queue_notice(demo: Demo) -> None:
    demo.step("the queued user writes: the answer is their place in the queue; the bot's own handlers stay quiet")
    demo.world.app.extensions["kf_plugin"].services.queue.refresh()   # the plugin reads it every KF_QUEUE_REFRESH s
    handled = dict(demo.stats)
    notice = demo.plugin.rules.queue.notice_text(position=len(AHEAD) + 1)
    answer = demo.says(USER, "还要等多久？")
    demo.expect(is_text(answer, str(notice)), f'"{notice}" (queue.notice of rules.yaml, from WeChat\'s queue)')
    again = demo.says(USER, "好的，我等着")
    demo.expect(again is not None and again.body == "success", "within a minute (queue.notice_every): no answer")
    demo.expect(dict(demo.stats) == handled, "the bot's own handlers did not run")


def cancel(demo: Demo) -> None:
    demo.step('another queued user sends "取消" (queue.cancel): they stop waiting, back with the bot')
    answer = demo.says(AHEAD[0], "取消")
    demo.expect(is_text(answer, str(demo.plugin.rules.queue.cancel_text)), "answered with queue.cancel_text")
    demo.expect(demo.stage(AHEAD[0]) is Stage.BOT, "the bot has them back")


def accept(demo: Demo) -> None:
    demo.step(f"{ACCEPT_AFTER} s later agent {AGENT} accepts the user: WeChat pushes kf_create_session to the bot")
    demo.world.clock.skip(ACCEPT_AFTER)
    answer = demo.sandbox.accept(USER, AGENT)
    push = demo.sandbox.pushes[-1]
    demo.echo(f"   WeChat → bot: {push.event}, KfAccount {push.fields.get('KfAccount')}\n"
              f"   bot ← {describe(answer)}")
    demo.expect(push.event == "kf_create_session" and answer is not None and answer.status == 200,
                "the bot heard the event")
    conversation = demo.plugin.conversation(USER)
    demo.stage(USER)
    demo.expect(conversation.stage is Stage.WITH_AGENT and conversation.agent == AGENT,
                f"the bot knows {AGENT} has the user")


def with_agent(demo: Demo) -> None:
    demo.step("with the agent: the user's messages go to the agent, not to the bot")
    pushes, handled = len(demo.sandbox.pushes), dict(demo.stats)
    answer = demo.says(USER, TO_AGENT)
    demo.sandbox.agent_says(USER, FROM_AGENT)
    demo.expect(answer is None and len(demo.sandbox.pushes) == pushes and dict(demo.stats) == handled,
                "nothing reached the bot")
    records = list(demo.plugin.admin.records(int(demo.started) - 60, int(demo.world.clock()) + 60))
    for record in records:
        way = f"{record.openid} → {record.worker}" if record.opercode == 2003 else f"{record.worker} → {record.openid}"
        demo.echo(f"   chat record {record.opercode}: {way}: {record.text}")
    shown = [(record.opercode, record.worker, record.text) for record in records]
    demo.expect(shown == [(2003, AGENT, TO_AGENT), (2002, AGENT, FROM_AGENT)],
                "WeChat's chat records (msgrecord/getmsglist): the agent received the message and answered")


def close(demo: Demo) -> None:
    demo.step("the agent closes the session: WeChat pushes kf_close_session; the user is back with the bot")
    demo.world.clock.skip(SESSION_LENGTH)
    answer = demo.sandbox.close(USER)
    push = demo.sandbox.pushes[-1]
    demo.echo(f"   WeChat → bot: {push.event}, KfAccount {push.fields.get('KfAccount')}\n"
              f"   bot ← {describe(answer)}")
    demo.expect(demo.stage(USER) is Stage.BOT, "the bot has the user back")
    demo.expect(is_text(demo.says(USER, "你好"), GREETING), "the bot's own handlers answer them again")


def survey(demo: Demo) -> None:
    demo.step('@kf.on_handoff("close") sends a satisfaction survey, a menu message (msgmenu)')
    sent = demo.sent_to(USER, "msgmenu")
    menu = sent["msgmenu"] if sent else {}
    choices = " / ".join(choice["content"] for choice in menu.get("list", []))
    demo.echo(f"   WeChat delivered to {USER}: {menu.get('head_content')} [{choices}]")
    demo.expect(menu.get("head_content") == SURVEY, "the survey reached the user")
    demo.expect(is_text(demo.says(USER, "满意"), THANKS), "the user's choice comes back as text: the bot thanks them")


def lapse(demo: Demo) -> None:
    demo.step("a session that lapses: half an hour with no close, then the user's message reaches the bot again")
    other = AHEAD[1]
    demo.sandbox.accept(other, AGENT)
    demo.expect(demo.stage(other) is Stage.WITH_AGENT, f"{AGENT} accepted {other}")
    demo.world.clock.skip(31 * 60)
    demo.sandbox.lapse(other)
    answer = demo.says(other, "你好")
    demo.expect(is_text(answer, GREETING) and demo.stage(other) is Stage.BOT,
                "the bot noticed the lapse from the message itself and answered it")


def records(demo: Demo) -> None:
    demo.step("the hand-off records: kf.handoffs and kf.handoff_summary")
    for record in demo.plugin.handoffs(demo.started):
        waited = f"waited {record.waited:.0f} s" if record.waited is not None else "never accepted"
        outcome = record.outcome.value if record.outcome else "open"
        demo.echo(f"   {record.openid}: {record.reason}, {waited}, {outcome}")
    mine = [record for record in demo.plugin.handoffs(demo.started) if record.openid == USER]
    record = mine[0] if len(mine) == 1 else None
    demo.expect(record is not None and record.reason == "ask-for-human" and record.agent == AGENT
                and record.outcome is Ending.ACCEPTED and abs((record.waited or 0) - ACCEPT_AFTER) <= 1,
                f"{USER}: by ask-for-human, waited {ACCEPT_AFTER} s, accepted by {AGENT}")
    summary = demo.plugin.handoff_summary(demo.started)
    demo.echo(f"   summary: {summary.count} hand-offs, {summary.accepted} accepted, {summary.cancelled} cancelled, "
              f"{summary.lapsed} lapsed, {summary.open} open; acceptance rate {summary.acceptance_rate or 0:.0%}, "
              f"median wait {summary.median_wait or 0:.0f} s")
    demo.expect((summary.count, summary.accepted, summary.cancelled, summary.lapsed, summary.open) == (3, 1, 1, 1, 0),
                "3 hand-offs: 1 accepted, 1 cancelled, 1 lapsed, none open")


def retries(demo: Demo) -> None:
    demo.step("a push WeChat delivers three times (no answer seen within 5 s): one handler run, one reply")
    before = demo.stats["greet"]
    xml = message_xml(text="hello", msg_id=4242424242, sender=RETRIED_USER, create_time=int(demo.world.clock()))
    query, body = demo.world.signer.sign(xml)
    answers = [demo.world.post(query, body) for _ in range(3)]
    for delivery, answer in enumerate(answers, 1):
        demo.echo(f"   delivery {delivery} ← {describe(answer)} (CreateTime {answer.fields.get('CreateTime')})")
    demo.expect(len({a.xml for a in answers}) == 1 and answers[0].message_type == "text",
                "all three deliveries got the identical reply")
    demo.expect(demo.stats["greet"] - before == 1, f"the greeting handler ran {demo.stats['greet'] - before} time(s)")


def window(demo: Demo) -> None:
    demo.step("a user whose only interaction was a menu click: 3 messages allowed, the 4th refused before any call")
    demo.sandbox.user_event(CLICKER, "CLICK", "SOMETHING_ELSE")
    status = demo.plugin.window.status(CLICKER)
    demo.echo(f"   window: can send {status.can_send}, {status.remaining} remaining")
    for n in range(1, 4):
        demo.plugin.admin.send_text(CLICKER, f"消息 {n}")
    calls_before = len(demo.sandbox.calls)
    refused: Optional[QuotaExceededError] = None
    try:
        demo.plugin.admin.send_text(CLICKER, "消息 4")
    except QuotaExceededError as exc:
        refused = exc
    demo.echo(f"   4th send: {refused}")
    demo.expect(refused is not None and len(demo.sandbox.calls) == calls_before,
                "refused by the window tracker with 45047, and WeChat was never called")


def export(demo: Demo) -> None:
    demo.step("the chat records of the demo, exported")
    since, until = int(demo.started) - 60, int(demo.world.clock()) + 60
    with tempfile.TemporaryDirectory() as scratch:
        out = demo.records_to or Path(scratch) / "records.jsonl"
        count = export_records(demo.plugin.admin.records(since, until), out, "jsonl")
        lines = out.read_text(encoding="utf-8").splitlines()
    demo.echo(f"   {count} record(s) written; the first: {lines[0] if lines else '—'}")
    demo.expect(count == len(lines) == 2 and TO_AGENT in lines[0] and FROM_AGENT in lines[1],
                "the user's message to the agent and the agent's answer are in the export")


def operator_view(demo: Demo) -> None:
    demo.step("the operator's view: the status page (behind its credential) and the metrics")
    base, config = demo.world.bot.url, demo.world.app.config
    page = requests.get(base + config["KF_STATUS_URL"], timeout=10,
                        auth=(config["KF_STATUS_USER"], config["KF_STATUS_PASSWORD"]))
    refused = requests.get(base + config["KF_STATUS_URL"], timeout=10)
    demo.echo(f"   {config['KF_STATUS_URL']}: {page.status_code} with the credential, {refused.status_code} without")
    demo.expect(page.status_code == 200 and "ask-for-human" in page.text and "accepted" in page.text
                and refused.status_code == 401 and "ask-for-human" not in refused.text,
                "the page shows the rules and the accepted hand-off, and nothing without the credential")
    metrics = requests.get(base + "/metrics", timeout=10).text
    counted = [line for line in metrics.splitlines() if line.startswith("kf_handoffs_requested_total{")]
    demo.echo(f"   /metrics: {'; '.join(counted) or 'no hand-offs counted'}")
    demo.expect(bool(counted) and "kf_pushes_total{" in metrics, "the metrics count pushes and hand-offs")
    demo.echo(f"   `python -m example_app` serves them at http://127.0.0.1:5000{config['KF_STATUS_URL']} (user "
              f"{config['KF_STATUS_USER']!r}, password {config['KF_STATUS_PASSWORD']!r}) and "
              "http://127.0.0.1:5000/metrics")


STEPS = (greeting, hand_off, queue_notice, cancel, accept, with_agent, close, survey, lapse, records, retries,
         window, export, *demo_wecom.STEPS, operator_view)


def run(echo: Callable[[str], None] = print, records_to: Optional[Path] = None) -> int:
    """Run the demo; 0 when every step behaved as expected."""
    with World() as world:
        demo = Demo(world, echo, records_to)
        echo(f"kf_plugin demo: the example bot at {world.url}, WeChat, WeCom and their APIs (sandbox) at "
             f"{world.api.url}")
        echo("(safe mode with demo credentials: every push is signed and AES-encrypted, every reply decrypted)\n")
        for step in STEPS:
            step(demo)
    echo("")
    if demo.failures:
        echo(f"demo FAILED: {len(demo.failures)} check(s) misbehaved")
        return 1
    echo("demo finished: every step behaved as shown")
    return 0
