"""The demo's 微信客服 part: the same bot and rules.yaml serve a customer of a WeCom kf account — welcomed,
answered, handed to a servicer through the pool, left to the servicer, back with the bot.

WeCom's callback only says there is news (``kf_msg_or_event``): the bot answers it at once, pulls the messages
with ``sync_msg`` in the background and sends its answers through the API (``kf/send_msg``, or
``send_msg_on_event`` with the welcome code). The steps wait until the bot has handled what they show.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from kf_plugin.lifecycle import Ending, Stage
from kf_plugin.wecom import SessionStateError, State

from . import GREETING
from .demo_world import SERVICER, Demo

CUSTOMER = "wmDemoCustomer0000000000000001"
TO_SERVICER = "我想改一下收货地址"
FROM_SERVICER = "好的，请把新地址发给我。"
TAKE_AFTER = 40        # seconds the customer waits in the pool
SERVICE_LENGTH = 180   # seconds the servicer has the customer


def texts(sent: Optional[List[Dict[str, Any]]]) -> Optional[List[Tuple[Optional[str], Optional[str]]]]:
    """What the bot sent, as (text, the event code's kind) pairs; ``None`` when the bot did not handle it."""
    if sent is None:
        return None
    return [(message.get("text", {}).get("content"), message["on_event"]) for message in sent]


def welcome(demo: Demo) -> None:
    demo.echo(f"\n微信客服: the same bot and rules.yaml; WeCom (the sandbox) calls the bot at {demo.world.wecom_url}, "
              "the bot pulls with sync_msg and answers through WeCom's API")
    demo.step("微信客服: a customer opens the kf account's chat (enter_session): rule kf-welcome answers")
    rule = next(rule for rule in demo.plugin.rules.rules if rule.name == "kf-welcome")
    demo.echo(f"   rule kf-welcome: {rule.filter!r}")
    sent = demo.customer_enters(CUSTOMER, scene="demo")
    demo.expect(texts(sent) == [(rule.action.text, "welcome")],
                "welcomed with the event's welcome_code (send_msg_on_event), the reply of rules.yaml")


def bot_answers(demo: Demo) -> None:
    demo.step("the customer writes: the bot's own handler answers, sent with kf/send_msg")
    sent = demo.customer_says(CUSTOMER, "你好")
    demo.expect(texts(sent) == [(GREETING, None)], "the bot greets back, as on the Official Account")
    state = demo.service_state(CUSTOMER)
    demo.expect(state == (State.NEW, None), "their message started a session, the bot answers in it")


def hand_off(demo: Demo) -> None:
    demo.step('"转人工", the same rule ask-for-human: service_state/trans puts the customer in the pool')
    before = demo.sandbox.wecom.service_state(demo.world.kfid, CUSTOMER)
    sent = demo.customer_says(CUSTOMER, "转人工")
    state = demo.service_state(CUSTOMER, before)
    demo.expect(sent == [] and state == (State.POOL, None), "nothing sent; WeCom has the customer in its pool")
    conversation = demo.plugin.conversation(CUSTOMER)
    demo.echo(f"   kf.conversation({CUSTOMER}): {conversation.stage.value}, reason {conversation.reason}")
    demo.expect(conversation.stage is Stage.QUEUED and conversation.reason == "ask-for-human",
                "the bot knows the customer waits for a servicer, handed off by ask-for-human")


def taken(demo: Demo) -> None:
    demo.step(f"{TAKE_AFTER} s later servicer {SERVICER} takes the customer from the pool (session_status_change)")
    demo.world.clock.skip(TAKE_AFTER)
    before = demo.sandbox.wecom.service_state(demo.world.kfid, CUSTOMER)
    item = demo.sandbox.wecom.servicer_takes(demo.world.kfid, CUSTOMER, SERVICER)
    event = item["event"]
    demo.echo(f"   WeCom → bot: kf_msg_or_event; sync_msg has {event['event_type']}, change_type "
              f"{event['change_type']} (from the pool), new_servicer_userid {event['new_servicer_userid']}")
    demo.expect(demo.pulled(item["msgid"]), "the bot pulled the event")
    state = demo.service_state(CUSTOMER, before)
    stage = demo.stage(CUSTOMER)
    demo.expect(state == (State.HUMAN, SERVICER) and stage is Stage.WITH_AGENT
                and demo.plugin.conversation(CUSTOMER).agent == SERVICER,
                f"WeCom and the bot agree: {SERVICER} has the customer")


def with_servicer(demo: Demo) -> None:
    demo.step("with the servicer: the bot pulls the customer's messages but sends nothing")
    sends, handled = len(demo.sandbox.wecom.sent), dict(demo.stats)
    said = demo.customer_says(CUSTOMER, TO_SERVICER)
    answer = demo.sandbox.wecom.servicer_says(demo.world.kfid, CUSTOMER, FROM_SERVICER)
    demo.echo(f"   {SERVICER} → {CUSTOMER}: {FROM_SERVICER} (in WeCom's client)")
    demo.expect(said == [] and demo.pulled(answer) and len(demo.sandbox.wecom.sent) == sends
                and dict(demo.stats) == handled, "the bot sent nothing and its own handlers did not run")
    refused: Optional[SessionStateError] = None
    try:
        demo.world.wecom.api.send_text(demo.world.kfid, CUSTOMER, "机器人插话")
    except SessionStateError as exc:
        refused = exc
    shown = f"{refused.errcode} on {refused.path}: {refused.meaning}" if refused else "(no refusal)"
    demo.echo(f"   had the bot sent a message, WeCom would answer {shown}")
    demo.expect(refused is not None and refused.errcode == 95018,
                "WeCom refuses the bot's messages while a servicer has the customer (95018)")


def ended(demo: Demo) -> None:
    demo.step(f"{SERVICER} ends the session (session_status_change): the customer is back with the bot")
    demo.world.clock.skip(SERVICE_LENGTH)
    before = demo.sandbox.wecom.service_state(demo.world.kfid, CUSTOMER)
    item = demo.sandbox.wecom.servicer_ends(demo.world.kfid, CUSTOMER)
    event = item["event"]
    demo.echo(f"   WeCom → bot: kf_msg_or_event; sync_msg has {event['event_type']}, change_type "
              f"{event['change_type']} (ended), old_servicer_userid {event['old_servicer_userid']}")
    demo.expect(demo.pulled(item["msgid"]), "the bot pulled the event")
    state = demo.service_state(CUSTOMER, before)
    demo.expect(state == (State.ENDED, None) and demo.stage(CUSTOMER) is Stage.BOT, "the bot has the customer back")
    sent = demo.customer_says(CUSTOMER, "你好")
    demo.service_state(CUSTOMER)
    demo.expect(texts(sent) == [(GREETING, None)], "their next message starts a new session: the bot answers again")
    mine = [record for record in demo.plugin.handoffs(demo.started) if record.openid == CUSTOMER]
    for record in mine:
        outcome = record.outcome.value if record.outcome else "open"
        demo.echo(f"   kf.handoffs: {record.openid}: {record.reason}, waited {record.waited or 0:.0f} s, "
                  f"{outcome} by {record.agent}")
    demo.expect(len(mine) == 1 and (mine[0].reason, mine[0].agent, mine[0].outcome, mine[0].waited)
                == ("ask-for-human", SERVICER, Ending.ACCEPTED, TAKE_AFTER),
                f"the hand-off's record: by ask-for-human, waited {TAKE_AFTER} s, accepted by {SERVICER}")


STEPS = (welcome, bot_answers, hand_off, taken, with_servicer, ended)
