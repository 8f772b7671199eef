"""The hand-off lifecycle as a pure model: where a user is, what moves them, what each hand-off leaves behind.

A user is with the bot, queued for a human, or with an agent (:class:`Stage`). Things that happen to their
hand-off — the bot asks for a human, an agent accepts, WeChat closes the session — are :class:`Change` s;
:func:`advance` says where a change takes the user and what it does to the hand-off's
:class:`HandoffRecord`. Nothing here does I/O: the stores of :mod:`kf_plugin.state.handoffs` apply changes
atomically across workers, and :func:`summarize` turns records into figures.

::

    conv = Conversation("oUser")
    conv, record = advance(conv, None, Change("request", at=100.0, reason="ask-for-human",
                                              handoff_id=new_handoff_id()))
    conv, record = advance(conv, record, Change("accept", at=130.0, agent="wang@gh_test"))
    record.waited   # 30.0
"""
from __future__ import annotations

import difflib
import enum
import math
import random
import statistics
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Tuple

from .frozen import quick_init

__all__ = ["Stage", "Ending", "Conversation", "HandoffRecord", "Change", "Transition", "HandoffSummary",
           "CHANGE_KINDS", "AGENT_REASON", "advance", "new_handoff_id", "summarize"]


class Stage(str, enum.Enum):
    """Where a user is."""

    BOT = "bot"
    QUEUED = "queued"
    WITH_AGENT = "with_agent"


class Ending(str, enum.Enum):
    """How a hand-off ended."""

    ACCEPTED = "accepted"      # an agent served the user and the session closed
    CANCELLED = "cancelled"    # the user left the queue
    TIMED_OUT = "timed_out"    # nobody took the user in time
    LAPSED = "lapsed"          # the session with the agent ran out without a close
    REFUSED = "refused"        # WeChat would not queue the user


#: The reason of a hand-off nobody asked the bot for (an agent opened the session from their console).
AGENT_REASON = "agent"
CHANGE_KINDS = ("request", "accept", "switch", "close", "cancel", "timeout", "lapse", "refuse")


@quick_init
@dataclass(frozen=True)
class Conversation:
    """Where one user is now.

    ``since``: the unix time they entered ``stage`` — or, with an agent, came to the agent they have (a switch
    moves it, so an event from before the switch is recognised as stale); 0 for a user never handed off.
    ``reason``: the rule's name, or the trigger. ``handoff_id``: the open hand-off's record.
    ``noticed_at``: the last queue notice sent to the user.
    """

    openid: str
    stage: Stage = Stage.BOT
    since: float = 0.0
    agent: Optional[str] = None
    reason: Optional[str] = None
    handoff_id: Optional[str] = None
    noticed_at: float = 0.0


_REQUIRED_KEYS = ("id", "openid", "reason", "requested_at")


@quick_init
@dataclass(frozen=True)
class HandoffRecord:
    """One hand-off, from the request to its end; ``outcome`` is ``None`` while it is open."""

    id: str
    openid: str
    reason: str
    requested_at: float
    agent: Optional[str] = None
    accepted_at: Optional[float] = None
    ended_at: Optional[float] = None
    outcome: Optional[Ending] = None

    @property
    def waited(self) -> Optional[float]:
        """Seconds from the request to an agent's accepting it; ``None`` when no agent accepted it (yet)."""
        return None if self.accepted_at is None else self.accepted_at - self.requested_at

    def to_dict(self) -> Dict[str, Any]:
        """The record as JSON-safe values under stable keys (the outcome as its string)."""
        return {"id": self.id, "openid": self.openid, "reason": self.reason, "requested_at": self.requested_at,
                "agent": self.agent, "accepted_at": self.accepted_at, "ended_at": self.ended_at,
                "outcome": None if self.outcome is None else self.outcome.value}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "HandoffRecord":
        """The record :meth:`to_dict` gave; keys it does not know are ignored (a newer version may add some).

        :raises ValueError: a required key is missing, a time is not a number, or the outcome is unknown.
        """
        missing = [key for key in _REQUIRED_KEYS if data.get(key) is None]
        if missing:
            raise ValueError(f"a hand-off record needs {', '.join(missing)} (got keys {sorted(data)})")
        outcome = data.get("outcome")
        if outcome is not None and outcome not in {e.value for e in Ending}:
            raise ValueError(f"hand-off record {data['id']!r}: unknown outcome {outcome!r} "
                             f"(one of {', '.join(e.value for e in Ending)})")
        return cls(str(data["id"]), str(data["openid"]), str(data["reason"]),
                   _time(data, "requested_at"), data.get("agent"), _optional_time(data, "accepted_at"),
                   _optional_time(data, "ended_at"), None if outcome is None else Ending(outcome))


def _time(data: Mapping[str, Any], key: str) -> float:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"hand-off record {data.get('id')!r}: {key} must be a unix time, not {value!r}")
    return float(value)


def _optional_time(data: Mapping[str, Any], key: str) -> Optional[float]:
    return None if data.get(key) is None else _time(data, key)


@quick_init
@dataclass(frozen=True)
class Change:
    """Something that happened to a user's hand-off.

    ``kind``: one of :data:`CHANGE_KINDS`. ``at``: when (WeChat's CreateTime for its events, our clock
    otherwise). ``agent``: the kf account (accept, switch, close). ``reason`` and ``handoff_id``: for a
    request (``handoff_id`` from :func:`new_handoff_id`; one is made from ``at`` when it is missing).

    :raises ValueError: an unknown kind, or a request without a reason.
    """

    kind: str
    at: float
    agent: Optional[str] = None
    reason: Optional[str] = None
    handoff_id: Optional[str] = None

    def __post_init__(self) -> None:
        if self.kind not in CHANGE_KINDS:
            near = difflib.get_close_matches(self.kind, CHANGE_KINDS, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ValueError(f"no such change {self.kind!r}{hint}: the kinds are {', '.join(CHANGE_KINDS)}")
        if self.kind == "request" and not self.reason:
            raise ValueError("a request needs a reason: the rule's name or the trigger")


@quick_init
@dataclass(frozen=True)
class Transition:
    """What :meth:`~kf_plugin.state.handoffs.HandoffStore.apply` did: the user ``before`` and ``after`` the
    change, and the record it created or updated (``None``: it touched none)."""

    change: Change
    before: Conversation
    after: Conversation
    record: Optional[HandoffRecord]

    @property
    def moved(self) -> bool:
        """Whether the user changed stage or agent."""
        return self.before.stage is not self.after.stage or self.before.agent != self.after.agent


def new_handoff_id(now: Optional[float] = None) -> str:
    """A record id that sorts by time: milliseconds since the epoch (of ``now``, else the clock) and a random part.

    The random part comes from :mod:`random`, which every forked worker reseeds: ids need to differ, not to be
    unguessable, and a system call per hand-off (``os.urandom``) is the dearer part of making one.
    """
    moment = time.time() if now is None else now
    return "%013d-%08x" % (int(moment * 1000), random.getrandbits(32))


# -- advance ----------------------------------------------------------------------------------------------

Step = Tuple[Conversation, Optional[HandoffRecord]]


def advance(conv: Conversation, record: Optional[HandoffRecord], change: Change) -> Step:
    """Where ``change`` takes the user, and the record it creates or updates (``None``: none).

    ``record``: the open hand-off's record (``conv.handoff_id``), if it is still kept; when it is not, one is
    rebuilt from what ``conv`` knows. A change from a second before ``conv.since``'s is stale (it arrived out
    of order) and changes nothing; WeChat dates its events in whole seconds, so an event of the very second a
    hand-off was made in (an agent accepting at once) is taken in the order it arrives. A change that does not
    apply to the user's stage (a second request while queued, a close while with the bot) changes nothing
    either. Events that were missed are made up for: an accept (or switch) while with the bot opens a record
    with the reason :data:`AGENT_REASON`; a close while queued ends it as accepted.
    """
    if math.floor(change.at) < math.floor(conv.since):
        return conv, None
    return _STEPS[change.kind](conv, record, change)


def _request(conv: Conversation, record: Optional[HandoffRecord], change: Change) -> Step:
    if conv.stage is not Stage.BOT:
        return conv, None  # a queued user's repeated request is not a second hand-off
    reason = str(change.reason)
    handoff_id = change.handoff_id or new_handoff_id(change.at)
    return (Conversation(conv.openid, Stage.QUEUED, change.at, reason=reason, handoff_id=handoff_id),
            HandoffRecord(handoff_id, conv.openid, reason, change.at))


def _to_agent(conv: Conversation, record: Optional[HandoffRecord], change: Change) -> Step:
    """An accept or a switch: both take the user to ``change.agent``, whatever stage they were in."""
    if conv.stage is Stage.WITH_AGENT and change.agent in (None, conv.agent):
        return conv, None
    if conv.stage is Stage.BOT:
        handoff_id = change.handoff_id or new_handoff_id(change.at)
        opened = HandoffRecord(handoff_id, conv.openid, AGENT_REASON, change.at)
    else:
        opened = _open_record(conv, record)
    accepted_at = change.at if opened.accepted_at is None else opened.accepted_at
    updated = replace(opened, agent=change.agent, accepted_at=accepted_at)
    return (Conversation(conv.openid, Stage.WITH_AGENT, change.at, change.agent, updated.reason, updated.id),
            updated)


def _close(conv: Conversation, record: Optional[HandoffRecord], change: Change) -> Step:
    if conv.stage is Stage.BOT:
        return conv, None
    return _to_bot(conv, record, change, Ending.ACCEPTED)  # from the queue: the accept was missed


def _lapse(conv: Conversation, record: Optional[HandoffRecord], change: Change) -> Step:
    if conv.stage is not Stage.WITH_AGENT:
        return conv, None
    return _to_bot(conv, record, change, Ending.LAPSED)


def _leaving_queue(ending: Ending) -> Callable[[Conversation, Optional[HandoffRecord], Change], Step]:
    def step(conv: Conversation, record: Optional[HandoffRecord], change: Change) -> Step:
        if conv.stage is not Stage.QUEUED:
            return conv, None
        return _to_bot(conv, record, change, ending)
    return step


def _to_bot(conv: Conversation, record: Optional[HandoffRecord], change: Change, ending: Ending) -> Step:
    opened = _open_record(conv, record)
    ended = replace(opened, agent=opened.agent or change.agent, ended_at=change.at, outcome=ending)
    return Conversation(conv.openid, Stage.BOT, change.at), ended


def _open_record(conv: Conversation, record: Optional[HandoffRecord]) -> HandoffRecord:
    """The open hand-off's record; rebuilt from the conversation when it is no longer kept (expired, or
    forgotten by a worker's bounded memory), so its end is still recorded."""
    if record is not None and record.id == conv.handoff_id:
        return record
    return HandoffRecord(conv.handoff_id or new_handoff_id(conv.since), conv.openid, conv.reason or AGENT_REASON,
                         conv.since, agent=conv.agent,
                         accepted_at=conv.since if conv.stage is Stage.WITH_AGENT else None)


_STEPS: Dict[str, Callable[[Conversation, Optional[HandoffRecord], Change], Step]] = {
    "request": _request, "accept": _to_agent, "switch": _to_agent, "close": _close, "lapse": _lapse,
    "cancel": _leaving_queue(Ending.CANCELLED), "timeout": _leaving_queue(Ending.TIMED_OUT),
    "refuse": _leaving_queue(Ending.REFUSED),
}


# -- figures ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HandoffSummary:
    """Figures over hand-off records; see :func:`summarize`."""

    count: int
    accepted: int
    cancelled: int
    timed_out: int
    lapsed: int
    refused: int
    open: int
    acceptance_rate: Optional[float]
    median_wait: Optional[float]
    p90_wait: Optional[float]

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def summarize(records: Iterable[HandoffRecord]) -> HandoffSummary:
    """How many hand-offs ended each way, how many reached an agent, and how long users waited for one.

    ``acceptance_rate``: of the hand-offs no longer waiting in the queue, the share that reached an agent
    (ended accepted or lapsed, or with an agent now). Waits (accept − request) are those of the records an
    agent accepted; ``p90_wait`` is the nearest-rank 90th percentile, a wait that actually occurred. Each of
    the three is ``None`` when there is nothing to compute it from.
    """
    listed = list(records)
    ended = {ending: sum(1 for r in listed if r.outcome is ending) for ending in Ending}
    reached = sum(1 for r in listed if r.accepted_at is not None or r.outcome in (Ending.ACCEPTED, Ending.LAPSED))
    waiting = sum(1 for r in listed if r.outcome is None and r.accepted_at is None)
    decided = len(listed) - waiting
    waits = sorted(r.waited for r in listed if r.waited is not None)
    return HandoffSummary(
        count=len(listed), accepted=ended[Ending.ACCEPTED], cancelled=ended[Ending.CANCELLED],
        timed_out=ended[Ending.TIMED_OUT], lapsed=ended[Ending.LAPSED], refused=ended[Ending.REFUSED],
        open=sum(1 for r in listed if r.outcome is None),
        acceptance_rate=reached / decided if decided else None,
        median_wait=statistics.median(waits) if waits else None,
        p90_wait=waits[math.ceil(0.9 * len(waits)) - 1] if waits else None)
