"""The decorators a bot registers its hooks with: ``@kf.on_session``, ``@kf.on_handoff``,
``@kf.on_wecom_event`` and ``@kf.escalate_when``.

:class:`HookDecorators` is mixed into :class:`~kf_plugin.extension.KfPlugin`; the registries it fills are the
plugin's own (made in its ``__init__``), shared by every app it serves.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from .answering import Answering, Escalation
from .errors import KfError
from .hooks import HandoffHook, HandoffHooks, SessionHook, SessionHooks, WeComEventHook, WeComEventHooks
from .rules import RuleSet

__all__ = ["HookDecorators"]


class HookDecorators:
    """The hook decorators of :class:`~kf_plugin.extension.KfPlugin` (see each)."""

    _session_hooks: SessionHooks
    _handoff_hooks: HandoffHooks
    _wecom_hooks: WeComEventHooks
    _answering: Answering
    _rules: RuleSet

    def on_session(self, *events: str) -> Callable[[SessionHook], SessionHook]:
        """Decorator: call ``hook(event)`` on customer-service session events.

        ``events``: ``create``, ``close``, ``switch`` (or the full names, e.g.
        ``kf_close_session``); none means all three. Hooks run in the
        background, after the push is answered, so they may call the API::

            @kf.on_session("close")
            def survey(event):
                kf.admin.send_msgmenu(event.source, "本次服务满意吗？", [("1", "满意"), ("2", "不满意")])

        :raises ValueError: an event that is not a session event.
        """
        return self._session_hooks.on(*events)

    def on_handoff(self, *kinds: str) -> Callable[[HandoffHook], HandoffHook]:
        """Decorator: call ``hook(transition)`` each time a user moves through the hand-off lifecycle.

        ``kinds``: the changes to hear (``request``, ``accept``, ``switch``, ``close``, ``cancel``,
        ``timeout``, ``lapse``, ``refuse``); none means all. The hook gets a
        :class:`~kf_plugin.lifecycle.Transition` (``before``, ``after``, ``record``, ``change``) and runs in
        the background, after the push is answered::

            @kf.on_handoff("close", "lapse")
            def back_with_the_bot(transition):
                kf.admin.send_text(transition.after.openid, "本次服务已结束，有问题随时找我")

        :raises ValueError: a kind that is not one of those.
        """
        return self._handoff_hooks.on(*kinds)

    def on_wecom_event(self, *events: str) -> Callable[[WeComEventHook], WeComEventHook]:
        """Decorator: call ``hook(event)`` on 微信客服's system events.

        ``events``: ``msg_send_fail`` (a :class:`~kf_plugin.wecom.events.SendFailed`: ``external_userid``,
        ``open_kfid``, ``fail_msgid``, ``fail_type`` and ``reason`` in words), ``user_recall_msg`` and
        ``servicer_recall_msg`` (a :class:`~kf_plugin.wecom.events.Recalled`), ``servicer_status_change``
        (a :class:`~kf_plugin.wecom.events.ServicerStatusChanged`); none means all four. Hooks run in the
        background, after the puller fetched the event::

            @kf.on_wecom_event("msg_send_fail")
            def undelivered(event):
                log.warning("%s did not get %s: %s", event.external_userid, event.fail_msgid, event.reason)

        :raises ValueError: an event that is not one of those (the message names them).
        """
        return self._wecom_hooks.on(*events)

    def escalate_when(self, predicate: Optional[Callable[[Any], Any]] = None, *,
                      rule: Optional[str] = None) -> Any:
        """Decorator: hand a user off when ``predicate(message)`` is true (a classifier, a model call).

        Asked for messages (not events) no kf rule took, before the bot's handlers, within ``KF_ESCALATE_BUDGET`` s
        (too slow or raising: the handlers answer) — on both channels: a 微信客服 customer it holds for is moved
        to the pool (or the rule's servicer). ``rule``: the name of a rule of the file whose action hands off
        (default: a plain transfer). Use as ``@kf.escalate_when`` or ``@kf.escalate_when(rule=...)``.

        :raises KfError: ``rule`` names no rule in force.
        """
        def register(function: Callable[[Any], Any]) -> Callable[[Any], Any]:
            chosen = None
            if rule is not None:
                chosen = next((r for r in self._rules.rules if r.name == rule), None)
                if chosen is None:
                    raise KfError(f"escalate_when: no rule named {rule!r} is in force")
            self._answering.escalations.append(Escalation(function, chosen))
            return function
        return register(predicate) if predicate is not None else register
