"""Which rules each worker runs, and the operator's requests to reload them, shared through Redis.

Three keys in one account's scope (``{prefix}{appid}:``, the AppID as the hash tag, so they share a Redis
Cluster slot):

- ``rules:reload``, a counter ``kf-plugin reload`` increments. Each worker reads it in its watch job; a value
  other than the one it read last makes it re-read its rule file. A counter, not a pub/sub message: a worker
  that was disconnected, restarting or failing over to memory when the request was made still sees it at its
  next read, and one GET every few seconds costs Redis nothing.
- ``rules:worker:{host}:{pid}``, a worker's :class:`WorkerReport` (JSON), written by its watch with a time
  to live (again before a third of it has passed, at once when the report changed): a worker that stops drops
  out of ``kf-plugin rules status`` by itself, judged by Redis's clock, whatever the hosts' clocks say.
- ``rules:workers``, the set of the reports' names, for the status to find them (names whose report expired
  are removed when it is read).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, List, Optional

from .redis import scope_of

__all__ = ["RuleVersions", "WorkerReport", "KEEP_REQUESTS"]

#: Seconds the reload counter is kept after its last increment (every key kf_plugin writes expires).
KEEP_REQUESTS = 30 * 86400


@dataclass(frozen=True)
class WorkerReport:
    """What one worker runs: its rule file (``path``; ``None``: rules given in Python) and the SHA-256 of
    the bytes in force (``digest``), when they were loaded (unix time), the last reload request it handled
    (``reload``, 0 for none) and the last error, if the file it last read was refused."""

    host: str
    pid: int
    path: Optional[str]
    digest: Optional[str]
    loaded_at: Optional[float]
    reload: int = 0
    error: Optional[str] = None
    error_at: Optional[float] = None

    @property
    def name(self) -> str:
        return f"{self.host}:{self.pid}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: Any) -> Optional["WorkerReport"]:
        """The report in ``text`` (bytes or str), or ``None`` when it is not one (written by another version)."""
        try:
            data = json.loads(text)
            return cls(**data)
        except (TypeError, ValueError):
            return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RuleVersions:
    """The reload counter and the workers' reports of one account, on a redis-py client (any: a URL's, a
    Sentinel's, a cluster's; ``decode_responses`` either way).

    Every call raises what the client raises when Redis cannot be reached (``redis.exceptions.RedisError``).
    """

    def __init__(self, redis: Any, scope: str):
        self.redis = redis
        self.scope = scope

    @classmethod
    def of(cls, redis: Any, prefix: str, appid: Optional[str]) -> "RuleVersions":
        """The keys of the account ``appid`` (``None``: the scope a plugin without an AppID uses)."""
        return cls(redis, scope_of(prefix, appid or "default"))

    @property
    def counter(self) -> str:
        return f"{self.scope}rules:reload"

    @property
    def index(self) -> str:
        return f"{self.scope}rules:workers"

    def report_key(self, name: str) -> str:
        return f"{self.scope}rules:worker:{name}"

    def request_reload(self) -> int:
        """Ask every worker to re-read its rule file; the request's number (each worker reports it once handled)."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.incr(self.counter)
            pipe.expire(self.counter, KEEP_REQUESTS)
            number, _ = pipe.execute()
        return int(number)

    def requested(self) -> int:
        """The number of the last reload request (0: none yet)."""
        value = self.redis.get(self.counter)
        return int(_text(value)) if value is not None else 0

    def report(self, report: WorkerReport, ttl: float) -> None:
        """Store ``report`` for ``ttl`` seconds (it lapses unless written again)."""
        ms = max(1, int(ttl * 1000))
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self.report_key(report.name), report.to_json(), px=ms)
            pipe.sadd(self.index, report.name)
            pipe.pexpire(self.index, ms)
            pipe.execute()

    def reports(self) -> List[WorkerReport]:
        """The reports of the live workers, by host and pid."""
        names = sorted(_text(name) for name in self.redis.smembers(self.index))
        if not names:
            return []
        values = self.redis.mget([self.report_key(name) for name in names])
        gone = [name for name, value in zip(names, values) if value is None]
        if gone:
            self.redis.srem(self.index, *gone)
        found = [WorkerReport.from_json(value) for value in values if value is not None]
        return sorted((report for report in found if report is not None), key=lambda r: (r.host, r.pid))
