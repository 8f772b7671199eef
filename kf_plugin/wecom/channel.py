"""微信客服 for one app: the callback WeCom calls, the pull it starts, and the answers the rules give.

WeCom's callback only says "there is something new" (``kf_msg_or_event``): it is answered at once and the
:class:`~kf_plugin.wecom.puller.Puller` fetches the messages in the background, one puller per kf account
across every worker. Each customer message goes through the same rules, ``@kf.escalate_when`` predicates,
handlers and ``after_unanswered`` triggers as the Official Account's pushes
(:func:`~kf_plugin.wecom.messages.wecom_message`), and what they answer is sent through the API:

- a text reply → ``kf/send_msg`` (or, answering ``enter_session``, ``send_msg_on_event`` with its welcome code);
- a transfer → ``service_state/trans`` to the rule's ``servicer`` (state 3), or to the pool (state 2) when it
  names none; a servicer who cannot take the customer (95014) → the pool with ``fallback_to_pool``, else the
  rule file's fallback text (a handler's own transfer: its ``kf_account`` as the servicer, else the pool);
- nothing → nothing; for ``enter_session``, the rule file's ``welcome_text`` when it has one.

The codes WeCom gives with a move (``trans`` into the pool or to a servicer, ``session_status_change`` 1 taken
and 3 ended) send the rule file's ``queue_text``, ``taken_text`` and ``end_text``
(:class:`~kf_plugin.wecom.texts.WeComTexts`). The system events no rule answers (a failed send, a recall, a
servicer's status) go to the ``@kf.on_wecom_event`` hooks (:mod:`kf_plugin.wecom.events`).

The hand-off lifecycle is the Official Account's (:class:`~kf_plugin.conversations.Conversations`), keyed
by ``external_userid``: a hand-off queues the customer, ``session_status_change`` moves them (taken from the
pool or transferred: with a servicer; ended: back with the bot), and while they wait or a servicer has them
the bot sends nothing (WeCom would refuse it with 95018).
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Tuple

from wechatpy.replies import BaseReply

from ..config import Settings
from ..conversations import Conversations
from ..errors import KfError
from ..lifecycle import Change, Conversation, Stage
from ..metrics import open_metrics
from ..replies import ServicerTransfer, TransferReply
from ..rules import DEFAULT_FALLBACK_TEXT, RuleSet
from ..state import MemoryTokenStore, TokenStore
from ..state.failover import FailoverTokenStore
from ..state.shared import SharedState
from ..swapping import SwapGate
from ..window import WindowTracker
from .api import State, WeComKf
from .callback import WeComCallback
from .client import WeComClient, token_store_name
from .crypto import WeComCipher
from .errors import SendWindowError, ServicerUnavailableError
from .events import WECOM_HOOK_EVENTS, WeComEvent, wecom_event
from .messages import CUSTOMER, SERVICER, WeComMessage, wecom_message
from .puller import HANDLERS, Puller
from .state import open_pull_state
from .texts import WeComTexts

__all__ = ["WeComAnswers", "WeComChannel", "open_wecom", "SESSION_CHANGES"]

log = logging.getLogger(__name__)

#: ``session_status_change``'s ``change_type`` → the lifecycle's change (4, reopened, moves nothing here).
SESSION_CHANGES = {"1": "accept", "2": "switch", "3": "close"}
#: ``route(message, conversation)``: the answer of the rules, predicates, handlers and triggers to a message of
#: a customer with the bot.
Route = Callable[[WeComMessage, Conversation], Optional[BaseReply]]
#: ``events(event)``: runs the ``@kf.on_wecom_event`` hooks of a system event.
Events = Callable[[WeComEvent], None]


class WeComAnswers:
    """Handles the messages the puller fetched: ``route(message, conversation)`` is the plugin's answering
    (rules, predicates, the bot's handlers, triggers); ``conversations`` the app's hand-off lifecycle; ``window``
    tracks each customer's sends (5 within 48 hours of their last message), so a send WeCom would refuse
    (95001) is not tried; ``events`` runs the system events' hooks. :attr:`texts` are the rule file's (see
    :meth:`use_rules`)."""

    def __init__(self, api: WeComKf, route: Route, conversations: Conversations,
                 window: Optional[WindowTracker] = None, events: Optional[Events] = None):
        self.api = api
        self.route = route
        self.conversations = conversations
        self.window = window
        self.events = events
        self.texts = WeComTexts()
        self.fallback_text = DEFAULT_FALLBACK_TEXT

    def use_rules(self, rules: RuleSet) -> None:
        """Put ``rules``' ``wecom:`` texts in force (each time rules are loaded or reloaded)."""
        self.texts = rules.wecom
        self.fallback_text = rules.fallback_text or DEFAULT_FALLBACK_TEXT

    def handle(self, item: Mapping[str, Any]) -> None:
        """One ``msg_list`` item of ``sync_msg`` (the puller's handler)."""
        message = wecom_message(item)
        event = message.field("Event")
        if message.origin == SERVICER:
            return   # a servicer's own words: nothing for the bot
        if event in WECOM_HOOK_EVENTS:
            self._system_event(item)
            return
        if not message.source or not message.target:
            return   # an item naming no customer: nothing to answer
        if event == "session_status_change":
            self._session_changed(message)
            return
        if message.origin != CUSTOMER and event != "enter_session":
            return
        if self.window is not None and message.origin == CUSTOMER:
            self.window.record(message)   # a customer's message: 5 sends within 48 hours
        conversation = self.conversations.of(message.source)
        if conversation.stage is Stage.WITH_AGENT or self.conversations.quiet(conversation):
            return   # a servicer has them, or they wait for one: WeCom refuses the bot's sends (95018)
        reply = self.route(message, conversation)
        if reply is None and event == "enter_session":   # a rule's or handler's answer wins over the file's
            self._on_event(message.field("WelcomeCode"), self.texts.welcome_for(message.field("EventKey")),
                           message.source, "welcome_text")
        else:
            self._send(message, reply)

    def _system_event(self, item: Mapping[str, Any]) -> None:
        event = wecom_event(item)
        if event is not None and self.events is not None:
            self.events(event)

    def _session_changed(self, message: WeComMessage) -> None:
        change = message.field("ChangeType") or ""
        kind = SESSION_CHANGES.get(change)
        if kind is None:
            return
        servicer = message.field("NewServicer") or None
        at = float(message.field("CreateTime") or 0)
        self.conversations.apply(message.source, Change(kind, at=at, agent=servicer if kind != "close" else None))
        if change == "1":   # taken from the pool: one message within 48 hours
            self._on_event(message.field("MsgCode"), self.texts.taken_text, message.source, "taken_text")
        elif change == "3":   # ended: one message within 20 seconds
            self._on_event(message.field("MsgCode"), self.texts.end_text, message.source, "end_text")

    def _on_event(self, code: Optional[str], text: Optional[str], customer: str, what: str) -> None:
        """Send ``text`` with an event's ``code`` (one message, outside the 5 within 48 hours); nothing without
        either. WeCom refusing it (the code expired, the session moved on) is logged, never raised."""
        if not code or not text:
            return
        try:
            self.api.send_on_event(code, "text", {"content": text})
        except KfError as exc:
            log.warning("could not send the %s to 微信客服 customer %s: %s", what, customer, exc)

    def _send(self, message: WeComMessage, reply: Optional[BaseReply]) -> None:
        if reply is None:
            return
        kfid, customer = message.target, message.source
        try:
            if isinstance(reply, ServicerTransfer):
                self._hand_off(kfid, customer, reply.servicer, reply.to_pool)
            elif isinstance(reply, TransferReply):   # a handler's own transfer: its kf_account as the servicer
                self._hand_off(kfid, customer, reply.kf_account, to_pool=True)
            elif reply.type == "text":
                code = message.field("WelcomeCode")
                if code:   # the answer to the event itself: outside the 5-message quota
                    self.api.send_on_event(code, "text", {"content": reply.content})
                else:
                    self._send_text(kfid, customer, reply.content)
            else:
                log.warning("a %s reply has no 微信客服 equivalent; %s was sent nothing", reply.type, customer)
        except KfError as exc:
            log.warning("could not answer 微信客服 customer %s: %s", customer, exc)

    def _send_text(self, kfid: str, customer: str, content: str) -> None:
        """:raises KfError: the window says WeCom would refuse it (before any call), or WeCom refused it."""
        if self.window is not None:
            self.window.check(customer)
        try:
            self.api.send_text(kfid, customer, content)
        except SendWindowError:
            if self.window is not None:   # WeCom knows better: the customer's sends are used up
                self.window.store.revoke(customer, self.window.clock(), exhausted=True)
            raise
        if self.window is not None:
            self.window.sent(customer)

    def _hand_off(self, kfid: str, customer: str, servicer: Optional[str], to_pool: bool) -> None:
        """To the named servicer (state 3), or to the pool (state 2) when none is named or (``to_pool``) they
        cannot take it, with the file's ``taken_text`` or ``queue_text`` on the code the move gives. When WeCom
        takes neither, the customer's request is refused (they are back with the bot); a servicer who cannot
        take them while the pool may not either → the file's fallback text."""
        clock = self.conversations.clock
        try:
            state, code = self._trans(kfid, customer, servicer, to_pool)
        except KfError as exc:
            self.conversations.apply(customer, Change("refuse", at=clock()))
            if not isinstance(exc, ServicerUnavailableError):
                raise
            self._send_text(kfid, customer, self.fallback_text)
            return
        if state is State.HUMAN:   # WeCom sends no event for a move made through the API
            self.conversations.apply(customer, Change("accept", at=clock(), agent=servicer))
            self._on_event(code, self.texts.taken_text, customer, "taken_text")
        else:
            self._on_event(code, self.texts.queue_text, customer, "queue_text")

    def _trans(self, kfid: str, customer: str, servicer: Optional[str],
               to_pool: bool) -> Tuple[State, Optional[str]]:
        """The state the customer was moved to, and the ``msg_code`` WeCom gave (the first move of a session
        into the pool or to a servicer gives one).

        :raises ServicerUnavailableError: the servicer cannot take them and the pool may not.
        """
        if servicer:
            try:
                return State.HUMAN, self.api.trans(kfid, customer, State.HUMAN, servicer)
            except ServicerUnavailableError as exc:
                if not to_pool:
                    raise
                log.info("servicer %s cannot take %s (%s): the pool takes them", servicer, customer, exc.errcode)
        return State.POOL, self.api.trans(kfid, customer, State.POOL)


@dataclass(frozen=True)
class WeComChannel:
    """What an app runs for 微信客服: the API, the callback (its view calls ``callback.handle``), the puller
    and the answers it hands each message to."""

    api: WeComKf
    callback: WeComCallback
    puller: Puller
    answers: WeComAnswers

    def shutdown(self) -> None:
        self.puller.shutdown()


def open_wecom(settings: Settings, shared: SharedState, route: Route, conversations: Conversations,
               window: Optional[WindowTracker] = None, events: Optional[Events] = None,
               gate: Optional[SwapGate] = None) -> WeComChannel:
    """The 微信客服 channel of an app whose settings configure it (:attr:`Settings.has_wecom`), sharing the app's
    state: its Redis (the token, the pull leases, cursors and seen messages), its hand-off lifecycle and its
    window tracker (customers and users are told apart by their ids). ``events`` runs the system events'
    hooks. ``gate``: each message is handled inside its ``reading()`` (a swap of the rules never lands in one)."""
    corpid = settings.wecom_corpid or ""
    tokens = _token_store(shared, corpid, settings)
    # A connection for each handler thread, and for the pull's own sync_msg.
    client = WeComClient(corpid, settings.wecom_secret or "", api_base_url=settings.wecom_api_base_url,
                         timeout=settings.api_timeout, token_store=tokens, connections=HANDLERS + 1)
    client.measure(open_metrics(settings.measures))   # the process's one sink, the app's services' too
    api = WeComKf(client)
    failover = getattr(shared.replay, "failover", None)
    pull = open_pull_state(shared.redis, corpid, settings.redis_prefix, failover=failover)
    answers = WeComAnswers(api, route, conversations, window, events)
    handle = answers.handle if gate is None else functools.partial(_through, gate, answers.handle)
    puller = Puller(api.sync_msg, pull.cursors, tokens, handle, seen=pull.seen, clock=conversations.clock)
    cipher = WeComCipher(settings.wecom_token or "", settings.wecom_aes_key or "", corpid)
    callback = WeComCallback(cipher, puller.notify, max_clock_skew=settings.max_clock_skew,
                             max_body=settings.max_body, clock=conversations.clock)
    return WeComChannel(api, callback, puller, answers)


def _through(gate: SwapGate, handle: Callable[[Mapping[str, Any]], None], item: Mapping[str, Any]) -> None:
    with gate.reading():
        handle(item)


def _token_store(shared: SharedState, corpid: str, settings: Settings) -> TokenStore:
    """The corp's token and leases: in Redis next to the Official Account's (never under its key), else here."""
    if shared.redis is None:
        return MemoryTokenStore()
    from ..state.redis_tokens import RedisTokenStore
    failover = getattr(shared.replay, "failover", None)
    return FailoverTokenStore(RedisTokenStore(shared.redis, token_store_name(corpid), settings.redis_prefix,
                                              settings.token_session_prefix), MemoryTokenStore(), failover)
