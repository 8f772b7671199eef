"""How the webhook answers a push: the hand-off lifecycle first, then the kf rules, then the bot's handlers.

The kf rules answer on the request thread (their API calls are bounded by ``KF_HANDOFF_BUDGET``); the bot's
own handlers, which may be slow, run as :class:`~kf_plugin.webhook.Slow` work under the reply deadline, with
the ``@kf.escalate_when`` predicates before them and the ``after_unanswered`` triggers after them. A rule
that opens no session is answered before the push's claim (:meth:`Answering.plan`), so its reply is stored
with the claim in one step. A 微信客服 message, pulled in the background with no reply deadline, goes the same
way on the puller's thread (:meth:`Answering.answer_pulled`).
"""
from __future__ import annotations

import concurrent.futures
import contextvars
import functools
import logging
from contextvars import ContextVar
from typing import Any, Callable, List, Optional, Union

from wechatpy.replies import BaseReply

from .filters import ALL
from .lifecycle import Conversation
from .messages import msg_type_of
from .replies import to_reply
from .router import Match, MessageRouter
from .rules import Rule, Transfer, rule_of
from .services import Services
from .webhook import Planned, Slow

__all__ = ["Answering", "Escalation", "SERVING", "CONVERSATION"]

log = logging.getLogger(__name__)

#: The services of the push being handled, for the rules' hand-offs and the hooks.
SERVING: ContextVar[Optional[Services]] = ContextVar("kf_plugin_serving", default=None)
#: Where the sender of the push being handled is, as its claim read it.
CONVERSATION: ContextVar[Optional[Conversation]] = ContextVar("kf_plugin_conversation", default=None)


class Escalation:
    """A ``@kf.escalate_when`` predicate: ``predicate(message)`` true → hand off with ``rule``'s action."""

    def __init__(self, predicate: Callable[[Any], Any], rule: Optional[Rule] = None):
        self.predicate = predicate
        name = getattr(predicate, "__name__", repr(predicate))
        self.rule = rule if rule is not None else Rule(f"escalate_when:{name}", ALL, Transfer())

    def holds(self, message: Any, executor: Optional[concurrent.futures.Executor], budget: float) -> bool:
        """Whether the predicate holds, asked within ``budget`` seconds (on ``executor``; late or failing:
        no)."""
        if executor is None:
            return self._ask(message)
        future = executor.submit(contextvars.copy_context().run, self._ask, message)
        try:
            return future.result(timeout=budget)
        except concurrent.futures.TimeoutError:
            log.warning("escalate_when %s took more than %.1f s; the bot's handlers answer instead",
                        self.rule.name, budget)
        except Exception as exc:   # the background queue is full: the predicate was never asked
            log.warning("escalate_when %s could not be asked (%s); the bot's handlers answer instead",
                        self.rule.name, exc)
        return False

    def _ask(self, message: Any) -> bool:
        try:
            return bool(self.predicate(message))
        except Exception:  # a bot's predicate failing must not fail the push; it is reported in full
            log.exception("escalate_when %s failed; the bot's handlers answer instead", self.rule.name)
            return False


class Answering:
    """Answers pushes for one plugin: ``router`` (the bot's, with ``rules_router`` included first)."""

    def __init__(self, router: MessageRouter, rules_router: MessageRouter):
        self.router = router
        self.rules_router = rules_router
        self.escalations: List[Escalation] = []

    def route(self, services: Services, router: MessageRouter, message: Any, skip: Optional[MessageRouter] = None,
              conversation: Optional[Conversation] = None) -> Optional[BaseReply]:
        return to_reply(self._match(services, router, message, skip, conversation).result, message)

    def _match(self, services: Services, router: MessageRouter, message: Any, skip: Optional[MessageRouter],
               conversation: Optional[Conversation]) -> Match:
        tokens = SERVING.set(services), CONVERSATION.set(conversation)
        try:
            return router.dispatch_with_handler(message, skip=skip)
        finally:
            CONVERSATION.reset(tokens[1])
            SERVING.reset(tokens[0])

    def plan(self, services: Services, message: Any) -> Optional[Planned]:
        """The answer when it is known before the push's claim: a kf rule matched that opens no session."""
        if not self.router.asks_first(self.rules_router) or self.rules_router.has_middleware:
            return None
        rule = rule_of(next(self.rules_router.candidates(message), None))
        return services.plan_rule(rule, message) if rule is not None else None

    def answer(self, services: Services, message: Any,
               conversation: Optional[Conversation]) -> Union[Optional[BaseReply], Slow]:
        """The answer under the push's claim, for a sender where ``conversation`` says (``None``: read it)."""
        conversations = services.conversations
        current = conversation if conversation is not None else conversations.of(message.source)
        early, current = conversations.before_routing(message, current)
        if early is not None:
            return early.reply
        conversations.remember(message)
        quiet = conversations.quiet(current)
        skip = None
        if quiet or self.router.asks_first(self.rules_router):
            reply = self.route(services, self.rules_router, message, conversation=current)
            if reply is not None:
                conversations.answered(message)
                return reply
            if quiet:
                return conversations.notice(message, current)
            if not (self.router.has_more_than(self.rules_router) or self.escalations or conversations.triggers):
                return None
            skip = self.rules_router
        # Run in a copy of this context: the handlers see the app context there too.
        return Slow(functools.partial(contextvars.copy_context().run, self._handlers, services, message, skip,
                                      current))

    def answer_pulled(self, services: Services, message: Any, conversation: Conversation) -> Optional[BaseReply]:
        """The answer to a 微信客服 message of a customer the bot serves (``conversation``: where they are): the
        kf rules, then the escalation predicates, the bot's handlers and the triggers — all on this thread, since
        nothing waits on the answer."""
        services.conversations.remember(message)
        skip = None
        if self.router.asks_first(self.rules_router):
            reply = self.route(services, self.rules_router, message, conversation=conversation)
            if reply is not None:
                services.conversations.answered(message)
                return reply
            skip = self.rules_router
        return self._handlers(services, message, skip, conversation)

    def _handlers(self, services: Services, message: Any, skip: Optional[MessageRouter],
                  conversation: Conversation) -> Optional[BaseReply]:
        """The escalation predicates, the bot's handlers, then the triggers (on the handler pool)."""
        escalated = self._escalated(services, message)
        if escalated is not None:
            return self._rule_answer(services, escalated, message, conversation)
        match = self._match(services, self.router, message, skip, conversation)
        reply = to_reply(match.result, message)
        answered = reply is not None and not (match.handler is not None and match.handler.filter is ALL)
        trigger = services.conversations.trigger(message, answered)
        if trigger is not None:
            return self._rule_answer(services, trigger, message, conversation)
        return reply

    def _escalated(self, services: Services, message: Any) -> Optional[Rule]:
        """The rule of the first predicate that holds; asked about what users say, not about events (a menu
        click, a session event: a classifier of texts has nothing to read there)."""
        if msg_type_of(message) == "event":
            return None
        budget = services.settings.escalate_budget
        for escalation in self.escalations:
            if escalation.holds(message, services.executor, budget):
                return escalation.rule
        return None

    @staticmethod
    def _rule_answer(services: Services, rule: Rule, message: Any, conversation: Conversation) -> BaseReply:
        token = SERVING.set(services)
        try:
            return services.answer_rule(rule, message, conversation)
        finally:
            SERVING.reset(token)
