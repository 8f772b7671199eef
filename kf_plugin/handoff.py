"""How a matched rule hands a user over: business hours, who is online, transfer or session.

Nothing here makes a push wait on the WeChat API beyond ``budget`` seconds:
the online list comes from :class:`~kf_plugin.agents.AgentDirectory`'s cache,
a session is opened in the background (the answer goes out once it succeeds or
the budget is spent), and notices are sent after the answer.
"""
from __future__ import annotations

import concurrent.futures
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from wechatpy.replies import BaseReply, TextReply

from .admin import KfAdmin
from .agents import AgentDirectory, pick_agent
from .errors import KfError
from .frozen import quick_init
from .messages import channel_of
from .replies import TransferReply, as_custom_message
from .rules import DEFAULT_FALLBACK_TEXT, DEFAULT_HANDOFF_TEXT, Rule, RuleSet, Transfer

__all__ = ["Handoff", "RuleAnswer"]

log = logging.getLogger(__name__)


@quick_init
@dataclass(frozen=True)
class RuleAnswer:
    """What a rule answers: ``reply``; ``then``, to run once it is sent (the rule's notice), or ``None``;
    ``handed_off``: the reply hands the user to customer service (a transfer, or a session opened)."""

    reply: BaseReply
    then: Optional[Callable[[], object]] = None
    handed_off: bool = False


class Handoff:
    """Answers for the rules of ``rules``; see the module docstring.

    Without ``admin`` (no API credentials) only the passive transfer reply is
    possible: agent-aware options then transfer as configured.
    """

    def __init__(self, rules: RuleSet, *, admin: Optional[KfAdmin] = None, agents: Optional[AgentDirectory] = None,
                 executor: Optional[concurrent.futures.Executor] = None, budget: float = 0.3,
                 clock: Callable[[], float] = time.time):
        self.rules = rules
        self.admin = admin
        self.agents = agents
        self.executor = executor
        self.budget = budget
        self.clock = clock

    def respond(self, rule: Rule, message: Any) -> BaseReply:
        """The reply to ``message``, which ``rule`` matched; its notice (if any) is on its way."""
        answer = self.answer(rule, message)
        if answer.then is not None:
            answer.then()
        return answer.reply

    @staticmethod
    def answers_at_once(rule: Rule) -> bool:
        """Whether :meth:`answer` changes nothing for ``rule`` (it opens no session): its reply may then be
        worked out for every delivery of a push and stored with the push's claim."""
        return not (isinstance(rule.action, Transfer) and rule.action.session)

    def answer(self, rule: Rule, message: Any, context: Optional[str] = None) -> RuleAnswer:
        """The answer to ``message``, which ``rule`` matched. A session rule opens its session here, with
        ``context`` as the text the agent is shown."""
        action = rule.action
        if not isinstance(action, Transfer):
            return RuleAnswer(action.respond(message))
        hours = self.rules.business_hours
        if hours is not None and not hours.is_open(self.clock()):
            log.debug("rule %r: outside business hours", rule.name)
            closed = hours.closed_text or self.rules.fallback_text or DEFAULT_FALLBACK_TEXT
            return RuleAnswer(self._text(message, closed))
        if channel_of(message) == "wecom":   # moved by service_state/trans: no Official Account agent or session
            return RuleAnswer(action.respond(message), handed_off=True)
        target = action.kf_account
        if action.needs_agents:
            online = self.agents.online(self.budget) if self.agents is not None else None
            if online is not None:
                chosen = pick_agent(online, action.kf_account, pool=action.fallback_to_pool or not action.kf_account)
                if chosen is None and (action.require_online or action.session):
                    log.debug("rule %r: no suitable agent online", rule.name)
                    return RuleAnswer(self._text(message, self.rules.fallback_text or DEFAULT_FALLBACK_TEXT))
                if action.session:
                    target = chosen
                elif chosen is not None:
                    # Off the designated agent, let WeChat share the user out among those online.
                    target = chosen if chosen == action.kf_account else None
        reply: BaseReply = TransferReply(kf_account=target, message=message)
        if action.session and self.admin is not None and target is not None:
            if self._open_session(message.source, target, context):
                reply = self._text(message, self.rules.handoff_text or DEFAULT_HANDOFF_TEXT)
        if not action.notice:
            return RuleAnswer(reply, handed_off=True)
        notice, openid = action.notice, message.source
        return RuleAnswer(reply, lambda: self._in_background(lambda admin: _notify(admin, openid, notice, target)),
                          handed_off=True)

    @staticmethod
    def _text(message: Any, text: str) -> BaseReply:
        return TextReply(content=text, message=message)

    def _in_background(self, work: Callable[[KfAdmin], object]) -> Optional["concurrent.futures.Future[object]"]:
        """``work(admin)`` on the executor; ``None`` without an executor or without API credentials."""
        if self.executor is None or self.admin is None:
            return None
        return self.executor.submit(work, self.admin)

    def _open_session(self, openid: str, kf_account: str, text: Optional[str]) -> bool:
        """Ask WeChat to open the session, waiting at most the budget; ``False`` only if it refused in time."""
        future = self._in_background(lambda admin: admin.open_session(openid, kf_account, text))
        if future is None:
            return False
        try:
            future.result(timeout=self.budget)
        except concurrent.futures.TimeoutError:
            future.add_done_callback(lambda f: _log_failure(f, f"opening a session for {openid} with {kf_account}"))
            return True
        except KfError as exc:
            log.warning("could not open a session for %s with %s: %s", openid, kf_account, exc)
            return False
        return True

    def deliver_late(self, message: Any, reply: Optional[BaseReply]) -> None:
        """Deliver a reply that came too late for the passive answer, as a customer-service message.

        A late transfer becomes a session with the designated or least busy online agent.
        """
        if reply is None or self.admin is None:
            return
        openid = message.source
        try:
            if reply.type == "transfer_customer_service":
                online = self.agents.online(self.budget) if self.agents is not None else None
                designated = getattr(reply, "kf_account", None)
                agent = pick_agent(online, designated) if online is not None else designated
                if agent is None:
                    log.warning("a late transfer for %s found no online agent to open a session with", openid)
                    return
                self.admin.open_session(openid, agent)
                return
            custom = as_custom_message(reply)
            if custom is None:
                log.warning("a late %s reply to %s has no customer-service equivalent; dropped", reply.type, openid)
                return
            self.admin.send(openid, *custom)
        except KfError as exc:
            log.warning("could not deliver a late reply to %s: %s", openid, exc)



def _notify(admin: KfAdmin, openid: str, text: str, kf_account: Optional[str]) -> None:
    try:
        admin.send_text(openid, text, as_account=kf_account)
    except KfError as exc:
        log.warning("could not send the hand-off notice to %s: %s", openid, exc)


def _log_failure(future: "concurrent.futures.Future[object]", what: str) -> None:
    exc = future.exception()
    if exc is not None:
        log.warning("%s failed after the reply was sent: %s", what, exc)
