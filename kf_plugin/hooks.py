"""The bot's hooks: on customer-service session events (kf_create_session, kf_close_session, kf_switch_session),
on every move of a user through the hand-off lifecycle, and on 微信客服's system events (a failed send, a
recall, a servicer's status).

Each registry keeps its hooks by name and runs those of a name once per occurrence: on an executor when there
is one (in the background, after the push is answered), else where it is called. A hook's exception is logged,
never raised.
"""
from __future__ import annotations

import contextvars
import logging
from concurrent.futures import Executor
from typing import Any, Callable, Dict, Iterable, List, Optional

from .lifecycle import CHANGE_KINDS, Transition
from .wecom.events import WECOM_HOOK_EVENTS, WeComEvent

__all__ = ["SESSION_EVENTS", "SessionHook", "SessionHooks", "HandoffHook", "HandoffHooks", "WeComEventHook",
           "WeComEventHooks"]

SESSION_EVENTS = ("kf_create_session", "kf_close_session", "kf_switch_session")
SessionHook = Callable[[Any], Any]
HandoffHook = Callable[[Transition], Any]
WeComEventHook = Callable[[WeComEvent], Any]

log = logging.getLogger(__name__)


class _Hooks:
    """Hooks by name; ``what`` names the kind of hook in the log."""

    what = "hook"

    def __init__(self) -> None:
        self._hooks: Dict[str, List[Callable[[Any], Any]]] = {}

    def _register(self, names: Iterable[str]) -> Callable[[Callable[[Any], Any]], Any]:
        names = list(names)

        def register(hook: Callable[[Any], Any]) -> Callable[[Any], Any]:
            for name in names:
                self._hooks.setdefault(name, []).append(hook)
            return hook
        return register

    def __bool__(self) -> bool:
        return bool(self._hooks)

    def _run(self, name: str, argument: Any, executor: Optional[Executor]) -> None:
        """Run the hooks of ``name``: on ``executor`` (in a copy of this context, so ``kf.admin`` there is this
        push's app's) or, without one, here."""
        for hook in self._hooks.get(name, ()):
            if executor is not None:
                executor.submit(contextvars.copy_context().run, self._run_hook, hook, name, argument)
            else:
                self._run_hook(hook, name, argument)

    def _run_hook(self, hook: Callable[[Any], Any], name: str, argument: Any) -> None:
        try:
            hook(argument)
        except Exception:  # a bot's hook failing must not take the worker down; it is reported in full
            log.exception("%s %r failed on %s", self.what, hook, name)


class SessionHooks(_Hooks):
    """Hooks by session event; each runs once per event, in the background when there is an executor."""

    what = "session hook"

    def on(self, *events: str) -> Callable[[SessionHook], SessionHook]:
        """Decorator registering a hook for ``events`` (``create``, ``close``, ``switch`` or the full names;
        none: all three).

        :raises ValueError: an event that is not a session event.
        """
        names = [e if e.startswith("kf_") else f"kf_{e}_session" for e in events] or list(SESSION_EVENTS)
        unknown = sorted(set(names) - set(SESSION_EVENTS))
        if unknown:
            raise ValueError(f"no such session event: {', '.join(unknown)} (create, close or switch)")
        return self._register(names)

    def run(self, event: Any, executor: Optional[Executor]) -> None:
        """Run the hooks of ``event`` (a wechatpy session event). A hook's exception is logged, never raised."""
        self._run(getattr(event, "event", ""), event, executor)


class HandoffHooks(_Hooks):
    """Hooks by the kind of change that moved a user (``request``, ``accept``, ``switch``, ``close``, ``cancel``,
    ``timeout``, ``lapse``, ``refuse``); each runs once per move, in the background when there is an executor."""

    what = "hand-off hook"

    def on(self, *kinds: str) -> Callable[[HandoffHook], HandoffHook]:
        """Decorator registering a hook for ``kinds`` (none: every kind).

        :raises ValueError: a kind that is not one of :data:`~kf_plugin.lifecycle.CHANGE_KINDS`.
        """
        unknown = sorted(set(kinds) - set(CHANGE_KINDS))
        if unknown:
            raise ValueError(f"no such hand-off change: {', '.join(unknown)} (one of {', '.join(CHANGE_KINDS)})")
        return self._register(kinds or CHANGE_KINDS)

    def run(self, transition: Transition, executor: Optional[Executor]) -> None:
        """Run the hooks of ``transition``'s change (as :meth:`SessionHooks.run` runs its hooks)."""
        self._run(transition.change.kind, transition, executor)


class WeComEventHooks(_Hooks):
    """Hooks by 微信客服 system event (:data:`~kf_plugin.wecom.events.WECOM_HOOK_EVENTS`); each runs once per
    event, in the background when there is an executor."""

    what = "微信客服 event hook"

    def on(self, *events: str) -> Callable[[WeComEventHook], WeComEventHook]:
        """Decorator registering a hook for ``events`` (none: all of them).

        :raises ValueError: an event that is not one of them.
        """
        unknown = sorted(set(events) - set(WECOM_HOOK_EVENTS))
        if unknown:
            raise ValueError(f"no such 微信客服 event: {', '.join(unknown)} "
                             f"(one of {', '.join(WECOM_HOOK_EVENTS)})")
        return self._register(events or WECOM_HOOK_EVENTS)

    def run(self, event: WeComEvent, executor: Optional[Executor]) -> None:
        """Run the hooks of ``event`` (as :meth:`SessionHooks.run` runs its hooks)."""
        self._run(event.event, event, executor)
