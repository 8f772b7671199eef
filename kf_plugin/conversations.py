"""The hand-off lifecycle on a push's path: where the sender is decides who answers.

- With the bot: the kf rules, then the bot's handlers, as always; a rule (or trigger) that hands off moves
  the user to the queue and opens a hand-off record.
- Queued: a ``cancel`` word takes them back to the bot; the kf rules still answer, but a second request for
  a human is not a second hand-off (the queue notice answers it when due); the bot's handlers stay quiet
  unless ``while_queued: bot`` — the push is answered with the queue notice when due, else ``success``.
- With an agent: WeChat does not push their messages while the session forwards them, so one that comes
  means the session lapsed (30 minutes without a close): they are back with the bot.
- The kf_* session events move users between the queue, an agent and the bot; an ``unsubscribe`` cancels a
  queued user's hand-off.

Every move runs the ``@kf.on_handoff`` hooks in the background. The background side (queue timeouts,
reconciling with WeChat's session API) is :mod:`kf_plugin.reconcile`.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple

from wechatpy.replies import BaseReply, TextReply

from .hooks import HandoffHooks
from .lifecycle import Change, Conversation, Stage, Transition, advance, new_handoff_id
from .messages import event_of, msg_type_of, text_of
from .metrics import NO_METRICS, Metrics
from .queueing import ContextTemplate, QueuePolicy
from .rules import Rule, RuleSet
from .state.handoffs import HandoffStore

__all__ = ["Conversations", "Early", "DEFAULT_CANCEL_TEXT"]

log = logging.getLogger(__name__)

DEFAULT_CANCEL_TEXT = "已为您取消转接人工客服。"
_SESSION_CHANGES = {"kf_create_session": "accept", "kf_switch_session": "switch", "kf_close_session": "close"}
# Where the user's place in WeChat's wait queue comes from: (position from 1, count), either unknown.
QueuePlace = Callable[[str], Tuple[Optional[int], Optional[int]]]


@dataclass(frozen=True)
class Early:
    """An answer the lifecycle gives before any rule or handler: ``reply`` (``None``: ``success``)."""

    reply: Optional[BaseReply]


class Conversations:
    """One account's hand-off lifecycle on the push path, over ``store`` (shared by its workers).

    ``place(openid)``: the user's place in WeChat's wait queue as last seen (never an API call on the push's
    path); without it, queue notices use ``notice_fallback``. ``executor`` runs the hooks; ``metrics`` counts
    the moves.
    """

    def __init__(self, store: HandoffStore, hooks: HandoffHooks, *, executor: Optional[Executor] = None,
                 place: Optional[QueuePlace] = None, clock: Callable[[], float] = time.time,
                 metrics: Metrics = NO_METRICS):
        self.store = store
        self.hooks = hooks
        self.executor = executor
        self.place = place
        self.clock = clock
        self.metrics = metrics
        self.policy = QueuePolicy()
        self.context: Optional[ContextTemplate] = None
        self.triggers: Tuple[Rule, ...] = ()

    def use_rules(self, rules: RuleSet) -> None:
        self.policy, self.context, self.triggers = rules.queue, rules.context, rules.unanswered_triggers

    def of(self, openid: str) -> Conversation:
        """Where ``openid`` is now."""
        return self.store.conversation(openid)

    # -- moves ----------------------------------------------------------------------------------------------

    def request(self, message: Any, reason: str) -> Transition:
        """The move a hand-off of ``message``'s sender makes from the bot (worked out, not stored)."""
        at = self.clock()
        change = Change("request", at=at, reason=reason, handoff_id=new_handoff_id(at))
        before = Conversation(message.source)
        after, record = advance(before, None, change)
        return Transition(change, before, after, record)

    def apply(self, openid: str, change: Change) -> Transition:
        """Store ``change`` for ``openid``; the hooks see it if it moved them."""
        transition = self.store.apply(openid, change)
        if transition.moved:
            self.notify(transition)
        return transition

    def notify(self, transition: Transition) -> None:
        """Count ``transition`` and run its hooks (in the background)."""
        self.metrics.transition(transition)
        if self.hooks:
            self.hooks.run(transition, self.executor)

    # -- the push path ---------------------------------------------------------------------------------------

    def before_routing(self, message: Any, conversation: Conversation) -> Tuple[Optional[Early], Conversation]:
        """The answer when the lifecycle decides it (a cancel), else ``None`` (the rules and handlers decide);
        and where the user is now: session events and lapsed sessions move them here first (an ``unsubscribe``
        cancels a queued user's hand-off, yet leaves the push routed as for the user before it)."""
        if msg_type_of(message) == "event":
            return None, self._after_event(message, conversation)
        if conversation.stage is Stage.WITH_AGENT:  # the session no longer forwards: it lapsed
            return None, self.apply(message.source, Change("lapse", at=self.clock())).after
        if conversation.stage is Stage.QUEUED and self.policy.is_cancel(text_of(message)):
            transition = self.apply(message.source, Change("cancel", at=self.clock()))
            if transition.moved:
                reply = TextReply(content=self.policy.cancel_text or DEFAULT_CANCEL_TEXT, message=message)
                return Early(reply), transition.after
        return None, conversation

    def _after_event(self, message: Any, conversation: Conversation) -> Conversation:
        """Where an event push leaves its sender. A kf_* session event moves them. An ``unsubscribe`` of a queued
        user cancels their hand-off (WeChat will not serve someone who unfollowed), yet the push is routed for
        the user as they were, so the rules and handlers answer it as they always did (no queue notice: they no
        longer wait); with an agent, WeChat ends the session itself and its close (or the sweep) tells the store."""
        event = event_of(message) or ""
        change = _SESSION_CHANGES.get(event)
        if change is not None:
            return self.apply(message.source, _session_change(change, message)).after
        if event == "unsubscribe" and conversation.stage is Stage.QUEUED:
            self.apply(message.source, Change("cancel", at=_event_time(message)))
        return conversation

    def quiet(self, conversation: Conversation) -> bool:
        """Whether the bot's own handlers stay quiet for this user (queued, and ``while_queued: quiet``)."""
        return conversation.stage is Stage.QUEUED and self.policy.quiet

    def notice(self, message: Any, conversation: Conversation) -> Optional[BaseReply]:
        """The queue notice for a queued user, when one is configured and due (at most one per
        ``notice_every`` across every worker); else ``None``."""
        policy = self.policy
        if conversation.stage is not Stage.QUEUED or not (policy.notice or policy.notice_fallback):
            return None
        if not self.store.mark_noticed(message.source, self.clock(), policy.notice_every):
            return None
        position, count = self.place(message.source) if self.place is not None else (None, None)
        text = policy.notice_text(position, count)
        return TextReply(content=text, message=message) if text else None

    def context_text(self, reason: str, message: Any) -> Optional[str]:
        """The text shown to the agent of a session hand-off (the file's ``context``), or ``None``."""
        if self.context is None:
            return None
        recent = self.store.recent(message.source) if self.context.uses_recent else []
        return self.context.render(reason, _describe(message), recent, message.source)

    def remember(self, message: Any) -> None:
        """Keep the user's message for ``{recent}`` (only when the context uses it)."""
        if self.context is None or not self.context.uses_recent:
            return
        text = text_of(message)
        if text:
            self.store.remember(message.source, text, self.clock())

    def answered(self, message: Any) -> None:
        """A rule answered ``message``, or its sender was handed off: their unanswered messages count from 0."""
        if self.triggers:
            self.store.count_unanswered(message.source, True, self.clock())

    def trigger(self, message: Any, answered: bool) -> Optional[Rule]:
        """Count the user's unanswered messages; the ``after_unanswered`` trigger this one sets off, if any."""
        if not self.triggers or msg_type_of(message) == "event":
            return None
        count = self.store.count_unanswered(message.source, answered, self.clock())
        return next((rule for rule in self.triggers if rule.after_unanswered == count), None)


def _session_change(kind: str, message: Any) -> Change:
    """The change a kf_* session event makes, at the event's own time (so late events are recognised)."""
    agent = getattr(message, "to_account", None) if kind == "switch" else getattr(message, "account", None)
    return Change(kind, at=_event_time(message), agent=agent or None)


def _event_time(message: Any) -> float:
    """An event's own time (its CreateTime), so a late or retried event is recognised; the clock without one."""
    return float(getattr(message, "_data", {}).get("CreateTime") or 0) or time.time()


def _describe(message: Any) -> str:
    """The message as the agent's context shows it: its text, or its kind."""
    text = text_of(message)
    if text:
        return text
    return f"[{event_of(message) or msg_type_of(message) or 'message'}]"
