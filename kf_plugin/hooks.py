"""The bot's hooks on customer-service session events (kf_create_session, kf_close_session, kf_switch_session)."""
from __future__ import annotations

import contextvars
import logging
from concurrent.futures import Executor
from typing import Any, Callable, Dict, List, Optional

__all__ = ["SESSION_EVENTS", "SessionHook", "SessionHooks"]

SESSION_EVENTS = ("kf_create_session", "kf_close_session", "kf_switch_session")
SessionHook = Callable[[Any], Any]

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


def _run_hook(hook: SessionHook, event: Any) -> None:
    try:
        hook(event)
    except Exception:  # a bot's hook failing must not take the worker down; it is reported in full
        log.exception("session hook %r failed on %s", hook, getattr(event, "event", "?"))
