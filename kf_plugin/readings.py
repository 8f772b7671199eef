"""What the operator's view reads from one account's running services: the status page's figures, and the gauges
that are read rather than counted (queue length, token expiry, Redis fallback).

Nothing here holds an openid whole: :func:`mask` keeps its first and last four characters.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence

from .lifecycle import Conversation, HandoffRecord, Stage
from .metrics import OFFICIAL_ACCOUNT, WECOM, samples
from .rules import Transfer

if TYPE_CHECKING:
    from .services import Services

__all__ = ["GAUGES_INTERVAL", "GAUGES_LEASE", "GAUGES_LEASE_TTL", "Readings", "RuleRow", "AgentRow", "QueuedRow",
           "HandoffRow", "read", "refresh_gauges", "refresh_gauges_in_turn", "mask", "per_hour"]

log = logging.getLogger(__name__)

HOUR = 3600.0
#: How far back the status page looks at hand-offs, and how many it lists.
HANDOFF_HOURS = 24
LAST_HANDOFFS = 20
#: Seconds between the background readings of the gauges (queue, token, Redis) while metrics are on.
GAUGES_INTERVAL = 15.0
#: The lease the workers of one account share, so that one of them reads the queue for its gauge each interval.
GAUGES_LEASE = "gauges"
#: Seconds the lease lasts unless renewed: a little over :data:`GAUGES_INTERVAL`, so that its holder keeps it
#: from one reading to the next (a run a few seconds late included), and a holder that dies is replaced within
#: about one interval.
GAUGES_LEASE_TTL = GAUGES_INTERVAL + 5.0


def mask(openid: str) -> str:
    """An openid as the status page shows it: its first four characters, an ellipsis and its last four (the
    openids of one account begin alike, so the end tells users apart); a short id only by its beginning."""
    return openid[:4] + "…" + (openid[-4:] if len(openid) > 12 else "")


@dataclass(frozen=True)
class RuleRow:
    name: str
    action: str        # "hand-off", "session" or "reply"
    enabled: bool
    hits: int


@dataclass(frozen=True)
class AgentRow:
    account: str
    state: str         # "online" or "busy"
    sessions: int


@dataclass(frozen=True)
class QueuedRow:
    user: str          # masked
    rule: str
    waiting: float     # seconds


@dataclass(frozen=True)
class HandoffRow:
    user: str          # masked
    rule: str
    requested_at: float
    agent: Optional[str]
    waited: Optional[float]
    outcome: str       # an Ending's value, "with agent" or "waiting"


@dataclass(frozen=True)
class Readings:
    """The status page's figures; ``None`` where a figure is unknown (no API credentials, not fetched yet)."""

    now: float
    rules: List[RuleRow]
    agents: Optional[List[AgentRow]]
    queue: List[QueuedRow]
    handoffs: List[HandoffRow]
    per_hour: List[int]                       # requests in each of the last 24 hours, oldest first
    token_expires_in: Dict[str, Optional[float]]   # by channel
    redis: str                                # "not used", "healthy" or "fallback active"
    refusals: Dict[int, int]                  # sends refused before calling WeChat, by errcode avoided


def read(services: "Services") -> Readings:
    """Everything the status page shows about ``services`` (it reads the shared state: Redis when there is one)."""
    now = services.clock()
    records = services.shared.handoffs.records(now - HANDOFF_HOURS * HOUR)
    counted = samples("kf_rule_matches_total", "kf_window_refusals_total")
    hits = {dict(labels).get("rule", ""): value for labels, value in counted["kf_rule_matches_total"].items()}
    refusals = {int(dict(labels)["errcode"]): int(value)
                for labels, value in counted["kf_window_refusals_total"].items()}
    rules = [RuleRow(rule.name, _action(rule.action), rule.enabled, int(hits.get(rule.name, 0)))
             for rule in services.handoff.rules.rules]
    queued = _queued(services)
    services.metrics.queue_length(len(queued))
    return Readings(now, rules, _agents(services),
                    [QueuedRow(mask(c.openid), c.reason or "", max(0.0, now - c.since)) for c in queued],
                    [_handoff(record) for record in sorted(records, key=lambda r: -r.requested_at)[:LAST_HANDOFFS]],
                    per_hour(records, now), _gauges(services), _redis(services),
                    {45015: refusals.get(45015, 0), 45047: refusals.get(45047, 0)})


def refresh_gauges(services: "Services", queue: bool = True) -> None:
    """Read the gauges that are read, not counted, into the metrics: each access token's time left, whether
    Redis fails (this process's own) and — unless ``queue`` is false — the queue's length, from the shared
    state (before a scrape, and every little while in the background: see :func:`refresh_gauges_in_turn`).

    :raises Exception: whatever the shared state raises while the queue is read (the other gauges are read
        first)."""
    _gauges(services)
    if queue:
        services.metrics.queue_length(services.shared.handoffs.count_queued())


def refresh_gauges_in_turn(services: "Services") -> None:
    """The background job of the gauges, every :data:`GAUGES_INTERVAL` seconds in each worker: each refreshes
    its own gauges (tokens, Redis fallback), and the one holding :data:`GAUGES_LEASE` the queue's length too
    (a scrape shows the value a live worker wrote last: one reader is enough, and spares the shared state a
    read per worker). A lease that cannot be taken (its store fails) is logged: the queue is then not read
    this round."""
    try:
        mine = services.take_turn(GAUGES_LEASE, GAUGES_LEASE_TTL)
    except Exception:   # whatever the lease's store raises, the job must live on, and the other gauges be read
        log.warning("gauges: could not take the lease of the queue's reading; the queue is not read this round",
                    exc_info=True)
        mine = False
    refresh_gauges(services, queue=mine)


def _gauges(services: "Services") -> Dict[str, Optional[float]]:
    """The gauges of this process alone (the tokens' time left, the Redis fallback) into the metrics; the
    tokens' seconds left by channel."""
    metrics = services.metrics
    if services.shared.failover is not None:
        metrics.redis_fallback(services.shared.failover.degraded)
    left: Dict[str, Optional[float]] = {}
    if services.admin is not None:
        left[OFFICIAL_ACCOUNT] = services.admin.client.tokens.expires_in()
    if services.wecom is not None:
        left[WECOM] = services.wecom.api.client.tokens.expires_in()
    return left


def per_hour(records: Sequence[HandoffRecord], now: float, hours: int = HANDOFF_HOURS) -> List[int]:
    """How many of ``records`` were requested in each of the last ``hours`` hours before ``now``, oldest first."""
    counts = [0] * hours
    for record in records:
        ago = now - record.requested_at
        if 0 <= ago < hours * HOUR:
            counts[hours - 1 - math.floor(ago / HOUR)] += 1
    return counts


def _action(action: object) -> str:
    if isinstance(action, Transfer):
        return "session" if action.session else "hand-off"
    return "reply"


def _agents(services: "Services") -> Optional[List[AgentRow]]:
    """The agents as the directory knows them: a fresh list (waiting a hand-off's budget for a refresh), else the
    last one."""
    directory = services.agents
    if directory is None:
        return None
    online = directory.online(services.settings.handoff_budget)
    if online is None:
        online = directory.known()
    if online is None:
        return None
    return [AgentRow(agent.kf_account, "online" if agent.status == 1 else "busy", agent.accepted_case)
            for agent in sorted(online, key=lambda a: a.kf_account)]


def _queued(services: "Services") -> List[Conversation]:
    """The users queued for a human (in every worker's shared state), longest waiting first."""
    active = services.shared.handoffs.active()
    return sorted((c for c in active if c.stage is Stage.QUEUED), key=lambda c: c.since)


def _handoff(record: HandoffRecord) -> HandoffRow:
    if record.outcome is not None:
        outcome = record.outcome.value
    else:
        outcome = "with agent" if record.accepted_at is not None else "waiting"
    return HandoffRow(mask(record.openid), record.reason, record.requested_at, record.agent, record.waited, outcome)


def _redis(services: "Services") -> str:
    failover = services.shared.failover
    if failover is None:
        return "not used"
    return "fallback active" if failover.degraded else "healthy"

