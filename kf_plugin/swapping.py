"""One swap of the rules, between pushes and never inside one.

Putting a rule set in force changes several things: the rules the router matches, and what the file says
around them (business hours, fallback and hand-off texts, the queue's policy, the window's quotas, 微信客服's
texts). A push reads them at different moments — the queue policy before its rules are matched, the hand-off
texts after — so a swap made in the middle of a push would answer it half by the old file and half by the new.
:class:`SwapGate` keeps the two apart: each push is handled inside :meth:`SwapGate.reading`, and a swap
(:meth:`SwapGate.swapping`) waits for the pushes in flight to finish while new ones wait for the swap, which
takes microseconds.

What a push hands to the background (a bot's handler that outlasts the reply budget, a hook) runs after the
push has left the gate.
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import Iterator

__all__ = ["SwapGate", "SWAP_WAIT"]

log = logging.getLogger(__name__)

#: Seconds a swap waits for the pushes in flight (longer than any push's reply budget) before going ahead.
SWAP_WAIT = 10.0


class SwapGate:
    """Pushes in flight on one side, a swap of the rules on the other (see the module).

    A thread already reading may read again (a push handled inside another) and may swap (a handler that reloads
    the rules): it does not wait for itself. ``wait``: the most a swap waits for the pushes in flight; past it,
    the swap goes ahead and says so in the log.
    """

    def __init__(self, wait: float = SWAP_WAIT):
        self.wait = wait
        # The pushes take the lock itself (a C-level context manager); the condition on it is for waiting.
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._reading = 0
        self._swapping = False
        self._mine = _Depth()
        self._reader = _Reading(self)

    def _depth(self) -> int:
        return self._mine.depth

    def reading(self) -> "_Reading":
        """``with gate.reading():`` handle a push — not while a swap is being made, and no swap until it is done."""
        return self._reader

    def _enter(self) -> None:
        mine = self._mine
        depth = mine.depth
        if not depth:
            with self._lock:
                while self._swapping:
                    self._changed.wait()
                self._reading += 1
        mine.depth = depth + 1

    def _leave(self) -> None:
        mine = self._mine
        depth = mine.depth - 1
        mine.depth = depth
        if not depth:
            with self._lock:
                self._reading -= 1
                if self._swapping:   # the swap may be waiting for this push (it counts its own thread's)
                    self._changed.notify_all()

    @contextmanager
    def swapping(self) -> Iterator[None]:
        """Make a swap: new pushes wait, the ones in flight (but this thread's own) are waited for."""
        own = 1 if self._depth() else 0
        with self._changed:
            while self._swapping:   # another swap first
                self._changed.wait()
            self._swapping = True
            deadline = time.monotonic() + self.wait
            while self._reading > own:
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning("the rules are put in force while %d push(es) are still being handled (waited "
                                "%.0f s for them)", self._reading - own, self.wait)
                    break
                self._changed.wait(left)
        try:
            yield
        finally:
            with self._changed:
                self._swapping = False
                self._changed.notify_all()


class _Depth(threading.local):
    """How many pushes this thread is handling inside one another (0: none)."""

    depth = 0


class _Reading:
    """:meth:`SwapGate.reading`'s context: one per gate, its state per thread (a push is handled on every
    request, so no generator is made for it)."""

    __slots__ = ("gate",)

    def __init__(self, gate: SwapGate):
        self.gate = gate

    def __enter__(self) -> None:
        self.gate._enter()

    def __exit__(self, *exc: object) -> None:
        self.gate._leave()
