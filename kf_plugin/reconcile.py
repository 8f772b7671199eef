"""The background side of the hand-off lifecycle: WeChat's wait queue kept at hand for the push path, and a
sweep that times out users left waiting and makes up for the ``kf_*`` events the bot missed.

Both run as scheduler jobs (``KF_QUEUE_REFRESH``, ``KF_HANDOFF_SWEEP``); a push never waits on either::

    queue = QueueWatch(admin, max_age=10)                      # job: queue.refresh, every 10 s
    position, count = queue.place(openid)                      # on a push: memory only

    reconciler = Reconciler(store, admin, rules.queue, on_transition=hooks, queue=queue)
    reconciler.sweep()                                         # job: every 30 s

WeChat's answers are trusted over the store only where they cannot be misread: ``getsession`` naming an agent
(or none) is the truth about a session, and its errcode 43004 ("require subscribe") says the user unfollowed;
a queued user missing from ``getwaitcase``'s list proves nothing, as WeChat lists at most 100 of them.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar

from .admin import KfAdmin, Session, WaitQueue
from .errors import KfError, WeChatAPIError
from .lifecycle import Change, Conversation, Stage, Transition
from .queueing import QueuePolicy
from .state.handoffs import HandoffStore

__all__ = ["QueueWatch", "Reconciler", "SweepReport", "session_change", "unfollowed_change", "MAX_CHECKS",
           "MAX_ACTIVE", "USER_ERRCODES", "UNFOLLOWED"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: The most ``getsession`` calls one sweep makes (a bigger backlog is checked over several sweeps).
MAX_CHECKS = 50
#: The most users in the queue or with an agent one sweep lists from the store's index: those longest in their
#: stage (the first to time out); a bigger backlog is worked through as its oldest leave. Of them, only the
#: overdue and the ones asked about (``MAX_CHECKS``) have their conversations read.
MAX_ACTIVE = 4 * MAX_CHECKS
#: Errcodes about one user (an openid WeChat does not know, a user who unfollowed): the sweep goes on with the
#: next user. Any other error (rate limit, token, network) would strike every call alike: the sweep stops asking.
USER_ERRCODES = frozenset({40003, 43004})
#: ``getsession``'s errcode for a user who unfollowed the account ("require subscribe"): an answer, not a failure
#: (see :func:`unfollowed_change`). 40003 stays a failure: an openid WeChat does not know may be a wrong AppID.
UNFOLLOWED = 43004


class QueueWatch:
    """WeChat's wait queue (``getwaitcase``) as last fetched, so a push can tell a queued user their place.

    A job calls :meth:`refresh` every ``max_age`` seconds; :meth:`place` answers from memory alone. A failed
    refresh keeps the last queue, which is given up once it is three times ``max_age`` old (two refreshes in a
    row failed): by then the queue has moved on. Thread-safe.

    :raises ValueError: ``max_age`` is not a positive number of seconds.
    """

    def __init__(self, admin: KfAdmin, max_age: float = 10.0, clock: Callable[[], float] = time.time):
        if isinstance(max_age, bool) or not isinstance(max_age, (int, float)) or not max_age > 0:
            raise ValueError(f"max_age must be a positive number of seconds, not {max_age!r}")
        self.admin = admin
        self.max_age = float(max_age)
        self.clock = clock
        self._queue: Optional[WaitQueue] = None
        self._positions: Dict[str, int] = {}
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()

    def refresh(self) -> Optional[WaitQueue]:
        """Fetch the queue now (the job calls this); the queue in force afterwards, ``None`` when unknown.

        Never raises a :class:`~kf_plugin.errors.KfError`: it is logged with its errcode, and the last queue
        kept.
        """
        asked_at = self.clock()   # the answer is at least this fresh
        try:
            fetched = self.admin.waiting()
        except KfError as exc:
            log.warning("could not read WeChat's wait queue (%s); %s", _describe(exc), self._kept())
            return self.queue()
        positions: Dict[str, int] = {}
        for number, user in enumerate(fetched.users, 1):
            positions.setdefault(user.openid, number)
        with self._lock:
            if asked_at >= self._fetched_at:   # a slower refresh that began earlier must not win
                self._queue, self._positions, self._fetched_at = fetched, positions, asked_at
        return self.queue()

    def _kept(self) -> str:
        age = self.age
        return "none known yet" if age is None else f"keeping the queue read {age:.0f} s ago"

    @property
    def age(self) -> Optional[float]:
        """Seconds since the queue in memory was fetched; ``None`` before the first refresh succeeded."""
        with self._lock:
            return None if self._queue is None else self.clock() - self._fetched_at

    def queue(self) -> Optional[WaitQueue]:
        """The queue in memory, ``None`` when unknown or older than three times ``max_age``."""
        with self._lock:
            return self._usable(3 * self.max_age)

    def _usable(self, max_age: float) -> Optional[WaitQueue]:
        if self._queue is None or self.clock() - self._fetched_at > max_age:
            return None
        return self._queue

    def place(self, openid: str) -> Tuple[Optional[int], Optional[int]]:
        """The user's place in the queue (from 1; ``None`` when WeChat did not list them, as it lists 100 at
        most) and how many wait; both ``None`` when the queue is unknown or too old. Never calls the API."""
        with self._lock:
            queue = self._usable(3 * self.max_age)
            if queue is None:
                return None, None
            # WeChat counts everyone it lists; a smaller count would tell a listed user they are past the end.
            return self._positions.get(openid), max(queue.count, len(queue.users))

    def lists(self, openid: str) -> bool:
        """Whether a queue fetched in the last ``max_age`` seconds lists the user as waiting (so no agent had
        taken them then)."""
        with self._lock:
            return self._usable(self.max_age) is not None and openid in self._positions


def session_change(conv: Conversation, session: Optional[Session], at: float) -> Optional[Change]:
    """What WeChat's answer to ``getsession`` at ``at`` says the store missed about ``conv``; ``None``: nothing.

    With an agent but no session: the close was missed. Another agent's session: the switch. Queued, with an
    agent's session: the accept, at the session's start (kept within ``conv.since`` … ``at``, so clocks that
    differ a little never make it look stale). ``at`` is when the question was asked: a change the store
    records after it (a new request, say) is newer than this answer, which then changes nothing.
    """
    if conv.stage is Stage.WITH_AGENT:
        if session is None:
            return Change("close", at=at, agent=conv.agent)
        if session.kf_account != conv.agent:
            return Change("switch", at=at, agent=session.kf_account)
    elif conv.stage is Stage.QUEUED and session is not None:
        started = min(max(float(session.created), conv.since), at) if session.created else at
        return Change("accept", at=started, agent=session.kf_account)
    return None


def unfollowed_change(conv: Conversation, at: float) -> Optional[Change]:
    """What ``getsession`` answering :data:`UNFOLLOWED` at ``at`` says about ``conv``: the user unfollowed and
    the ``unsubscribe`` push was missed. Queued: the hand-off is cancelled. With an agent: WeChat ended the
    session (as :func:`session_change` with no session). ``None`` with the bot."""
    if conv.stage is Stage.QUEUED:
        return Change("cancel", at=at)
    return session_change(conv, None, at)


@dataclass(frozen=True)
class SweepReport:
    """What one :meth:`Reconciler.sweep` did.

    ``transitions``: the ones that moved a user, in the order applied. ``checked``: users whose session WeChat
    told (or that they unfollowed). ``failures``: API calls that failed. ``complete``: ``False`` when the sweep
    stopped early (the API failed for everyone, or the store failed).
    """

    transitions: Tuple[Transition, ...]
    checked: int
    failures: int
    complete: bool


class _StoreFailed(Exception):
    """The store failed during a sweep: logged where caught, the sweep ends."""


@dataclass
class _Sweep:
    """One sweep's progress; API errors are gathered, then logged once per call and errcode."""

    now: float
    transitions: List[Transition] = field(default_factory=list)
    checked: int = 0
    complete: bool = True
    asking: bool = True   # False once the API failed in a way every further call would
    problems: Dict[Tuple[str, str], List[str]] = field(default_factory=dict)
    meanings: Dict[Tuple[str, str], str] = field(default_factory=dict)
    stopped_by: Optional[Tuple[str, str]] = None

    def failed(self, call: str, openid: str, exc: KfError) -> None:
        errcode = exc.errcode if isinstance(exc, WeChatAPIError) else None
        key = (call, "network" if errcode is None else str(errcode))
        self.problems.setdefault(key, []).append(openid)
        self.meanings.setdefault(key, exc.meaning if isinstance(exc, WeChatAPIError) else str(exc))
        if call == "getsession" and errcode not in USER_ERRCODES:
            self.asking = self.complete = False
            self.stopped_by = key

    def log_problems(self) -> None:
        for key, openids in self.problems.items():
            stopped = "; no more sessions asked until the next sweep" if key == self.stopped_by else ""
            log.warning("hand-off sweep: %s failed for %d user(s) with errcode %s (%s), first for %s%s",
                        key[0], len(openids), key[1], self.meanings[key], openids[0], stopped)

    def report(self) -> SweepReport:
        return SweepReport(tuple(self.transitions), self.checked, sum(map(len, self.problems.values())),
                           self.complete)


class Reconciler:
    """Times out users left in the queue, and makes up for the session events the bot missed.

    :meth:`sweep` is one pass; a job runs it every ``KF_HANDOFF_SWEEP`` seconds. ``policy.timeout`` returns a
    user queued that long to the bot, telling them ``policy.timeout_text`` (with an ``admin``). With an
    ``admin``, users queued or with an agent are checked against ``getsession``: at most ``max_checks`` calls
    a sweep, the overdue first, then those this process asked about least recently (the longest in their stage
    first), so a backlog is covered over several sweeps. Users a fresh ``queue`` lists as waiting need no
    check. ``on_transition`` sees every transition that moved someone. ``turn()``, when given, says whether
    this worker sweeps now (a lease shared by the workers: one of them sweeps an interval, the others skip
    it; changes are atomic anyway, so a user is moved and told once). ``max_active``: the most users one sweep
    lists (see :data:`MAX_ACTIVE`).

    :raises ValueError: ``max_checks`` or ``max_active`` below 1.
    """

    def __init__(self, store: HandoffStore, admin: Optional[KfAdmin], policy: QueuePolicy, *,
                 on_transition: Callable[[Transition], None], queue: Optional[QueueWatch] = None,
                 clock: Callable[[], float] = time.time, max_checks: int = MAX_CHECKS,
                 max_active: int = MAX_ACTIVE, turn: Optional[Callable[[], bool]] = None):
        if max_checks < 1 or max_active < 1:
            raise ValueError(f"max_checks and max_active must be at least 1, not {max_checks} and {max_active}")
        self.store = store
        self.admin = admin
        self.policy = policy
        self.on_transition = on_transition
        self.queue = queue
        self.clock = clock
        self.max_checks = max_checks
        self.max_active = max_active
        self.turn = turn
        self._asked: Dict[str, float] = {}   # openid → when this process last asked WeChat about them
        self._lock = threading.Lock()

    def sweep(self) -> SweepReport:
        """One pass over the users in the queue or with an agent.

        Raises none of the errors of the API (:class:`~kf_plugin.errors.KfError`: logged, each errcode once a
        sweep), of the store (logged; the sweep ends) or of ``on_transition`` (logged).
        """
        with self._lock:
            run = _Sweep(self.clock())
            if not self._my_turn():
                return run.report()
            try:
                self._sweep(run)
            except _StoreFailed:
                run.complete = False
            run.log_problems()
            return run.report()

    def _my_turn(self) -> bool:
        if self.turn is None:
            return True
        try:
            return self.turn()
        except Exception:   # the lease's store failing: sweeping twice is harmless, not sweeping is not
            log.warning("hand-off sweep: could not take the sweep's lease; sweeping anyway", exc_info=True)
            return True

    def _sweep(self, run: _Sweep) -> None:
        """Read who is in a hand-off since when (the store's index), then the conversations of only those the
        sweep may move: the users long enough in their stage to be overdue, and those it asks WeChat about.

        :raises _StoreFailed: logged already."""
        listed = sorted(self._read(self.store.in_handoff, self.max_active, "list the users in a hand-off"), key=_turn)
        timeout = self.policy.timeout
        late = [openid for openid, since in listed if timeout is not None and run.now - since >= timeout]
        convs = self._read(self.store.conversations, late, f"read the conversations of {len(late)} overdue user(s)")
        overdue = self._overdue(convs, run.now)
        if self.admin is not None:
            self._check_sessions(run, listed, overdue)
        for conv in overdue:
            self._time_out(run, conv)

    def _read(self, read: Callable[[Any], List[T]], argument: Any, what: str) -> List[T]:
        """``read(argument)`` of the store; ``what`` it does, for the log ("list the users in a hand-off").

        :raises _StoreFailed: it failed (logged)."""
        try:
            return read(argument)
        except Exception:   # whatever the store raises, the job must live on to the next sweep
            log.exception("hand-off sweep: could not %s; the sweep ends here", what)
            raise _StoreFailed() from None

    def _overdue(self, convs: Sequence[Conversation], now: float) -> List[Conversation]:
        timeout = self.policy.timeout
        if timeout is None:
            return []
        return [conv for conv in convs if conv.stage is Stage.QUEUED and now - conv.since >= timeout]

    # -- sessions -----------------------------------------------------------------------------------------

    def _check_sessions(self, run: _Sweep, listed: Sequence[Tuple[str, float]],
                        overdue: Sequence[Conversation]) -> None:
        """Ask WeChat about the overdue users first (one an agent took is not timed out), then about those
        asked about least recently, up to ``max_checks`` calls; only those users' conversations are read (a
        user whose hand-off ended since the index was read is not asked about). :raises _StoreFailed: as
        :meth:`_apply`."""
        unsure = [user for user in listed if self.queue is None or not self.queue.lists(user[0])]
        late = {conv.openid: conv for conv in overdue}
        never = float("-inf")
        # Forget users no longer in a hand-off, so the memory stays as small as the hand-offs.
        self._asked = {openid: self._asked.get(openid, never) for openid, _ in listed}
        turns = sorted(unsure, key=lambda user: (user[0] not in late, self._asked[user[0]], _turn(user)))
        chosen = [openid for openid, _ in turns[:self.max_checks]]
        unread = [openid for openid in chosen if openid not in late]
        what = f"read the conversations of {len(unread)} user(s) to ask WeChat about"
        read = {conv.openid: conv for conv in self._read(self.store.conversations, unread, what)}
        for openid in chosen:
            conv = late.get(openid) or read[openid]
            if conv.stage is Stage.BOT:
                continue
            if not run.asking:
                return
            self._check(run, conv)
            if run.asking:   # a call that failed for everyone leaves the user first in line for the next sweep
                self._asked[openid] = run.now

    def _check(self, run: _Sweep, conv: Conversation) -> None:
        """:raises _StoreFailed: as :meth:`_apply`."""
        assert self.admin is not None
        asked_at = self.clock()
        try:
            change = session_change(conv, self.admin.session(conv.openid), asked_at)
        except KfError as exc:
            if not (isinstance(exc, WeChatAPIError) and exc.errcode == UNFOLLOWED):
                run.failed("getsession", conv.openid, exc)
                return
            change = unfollowed_change(conv, asked_at)
        run.checked += 1
        if change is not None:
            self._apply(run, conv.openid, change)

    # -- timeouts -----------------------------------------------------------------------------------------

    def _time_out(self, run: _Sweep, conv: Conversation) -> None:
        """:raises _StoreFailed: as :meth:`_apply`."""
        # At the sweep's start: a request the store records after it is newer, and is left alone.
        transition = self._apply(run, conv.openid, Change("timeout", at=run.now))
        text = self.policy.timeout_text
        if not transition.moved or text is None or self.admin is None:
            return
        try:
            self.admin.send_text(conv.openid, text)
        except KfError as exc:   # 45015: the user's 48 hours are over; they are back with the bot all the same
            run.failed("message/custom/send", conv.openid, exc)

    # -- the store and the hooks --------------------------------------------------------------------------

    def _apply(self, run: _Sweep, openid: str, change: Change) -> Transition:
        """:raises _StoreFailed: the store failed (logged)."""
        try:
            transition = self.store.apply(openid, change)
        except Exception:   # whatever the store raises, the job must live on to the next sweep
            log.exception("hand-off sweep: could not apply %s to %s; the sweep ends here", change.kind, openid)
            raise _StoreFailed() from None
        if transition.moved:
            run.transitions.append(transition)
            try:
                self.on_transition(transition)
            except Exception:   # a hook's bug must not stop the sweep
                log.exception("hand-off sweep: the transition hook failed on %s's %s", openid, change.kind)
        return transition


def _turn(user: Tuple[str, float]) -> Tuple[float, str]:
    """Where a user (openid, since) comes in the sweep's turns: the longest in their stage first."""
    return user[1], user[0]


def _describe(exc: KfError) -> str:
    if isinstance(exc, WeChatAPIError):
        return f"errcode {exc.errcode}: {exc.meaning}"
    return str(exc)
