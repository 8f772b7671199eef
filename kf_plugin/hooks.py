"""The bot's hooks: on customer-service session events (kf_create_session, kf_close_session, kf_switch_session),
and on every move of a user through the hand-off lifecycle."""
from __future__ import annotations

import contextvars
import logging
from concurrent.futures import Executor
from typing import Any, Callable, Dict, List, Optional

from .lifecycle import CHANGE_KINDS, Transition

__all__ = ["SESSION_EVENTS", "SessionHook", "SessionHooks", "HandoffHook", "HandoffHooks"]

SESSION_EVENTS = ("kf_create_session", "kf_close_session", "kf_switch_session")
SessionHook = Callable[[Any], Any]
HandoffHook = Callable[[Transition], Any]

log = logging.getLogger(__name__)


class SessionHooks:
    """Hooks by session event; each runs once per event, in the background when there is an executor."""

    def __init__(self) -> None:
        self._hooks: Dict[str, List[SessionHook]] = {}

    def on(self, *events: str) -> Callable[[SessionHook], SessionHook]:
        """Decorator registering a hook for ``events`` (``create``, ``close``, ``switch`` or the full names;
        none: all three).

        :raises ValueError: an event that is not a session event.
        """
        names = [e if e.startswith("kf_") else f"kf_{e}_session" for e in events] or list(SESSION_EVENTS)
        unknown = sorted(set(names) - set(SESSION_EVENTS))
        if unknown:
            raise ValueError(f"no such session event: {', '.join(unknown)} (create, close or switch)")

        def register(hook: SessionHook) -> SessionHook:
            for name in names:
                self._hooks.setdefault(name, []).append(hook)
            return hook
        return register

    def run(self, event: Any, executor: Optional[Executor]) -> None:
        """Run the hooks of ``event``: on ``executor`` (in a copy of this context, so ``kf.admin`` there is
        this push's app's) or, without one, here. A hook's exception is logged, never raised."""
        for hook in self._hooks.get(getattr(event, "event", ""), ()):
            if executor is not None:
                executor.submit(contextvars.copy_context().run, _run_hook, hook, event)
            else:
                _run_hook(hook, event)


def _run_hook(hook: Callable[[Any], Any], event: Any) -> None:
    try:
        hook(event)
    except Exception:  # a bot's hook failing must not take the worker down; it is reported in full
        if isinstance(event, Transition):
            log.exception("hand-off hook %r failed on %s", hook, event.change.kind)
        else:
            log.exception("session hook %r failed on %s", hook, getattr(event, "event", "?"))


class HandoffHooks:
    """Hooks by the kind of change that moved a user (``request``, ``accept``, ``switch``, ``close``, ``cancel``,
    ``timeout``, ``lapse``, ``refuse``); each runs once per move, in the background when there is an executor."""

    def __init__(self) -> None:
        self._hooks: Dict[str, List[HandoffHook]] = {}

    def on(self, *kinds: str) -> Callable[[HandoffHook], HandoffHook]:
        """Decorator registering a hook for ``kinds`` (none: every kind).

        :raises ValueError: a kind that is not one of :data:`~kf_plugin.lifecycle.CHANGE_KINDS`.
        """
        unknown = sorted(set(kinds) - set(CHANGE_KINDS))
        if unknown:
            raise ValueError(f"no such hand-off change: {', '.join(unknown)} (one of {', '.join(CHANGE_KINDS)})")

        def register(hook: HandoffHook) -> HandoffHook:
            for kind in kinds or CHANGE_KINDS:
                self._hooks.setdefault(kind, []).append(hook)
            return hook
        return register

    def __bool__(self) -> bool:
        return bool(self._hooks)

    def run(self, transition: Transition, executor: Optional[Executor]) -> None:
        """Run the hooks of ``transition``'s change (as :meth:`SessionHooks.run` runs its hooks)."""
        for hook in self._hooks.get(transition.change.kind, ()):
            if executor is not None:
                executor.submit(contextvars.copy_context().run, _run_hook, hook, transition)
            else:
                _run_hook(hook, transition)
