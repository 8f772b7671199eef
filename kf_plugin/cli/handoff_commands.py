"""``kf-plugin handoffs``: the hand-offs of a period — who, why, which agent, how long they waited, how it ended.

The records are those the bot keeps (``KF_HANDOFF_RECORDS_FOR``, 30 days by default): as ``flask kf handoffs``
the app's own; otherwise, with ``KF_REDIS_URL``, those every worker shares under ``KF_APPID`` and
``KF_REDIS_PREFIX``. Without Redis a separate process has none. Exit codes: 0 success, 1 Redis could not be
read, 2 bad options or settings.
"""
from __future__ import annotations

import time
from datetime import datetime
from typing import Any, List, Optional, Sequence, Tuple

import click

from ..config import Settings
from ..errors import ConfigError
from ..export import parse_time
from ..lifecycle import HandoffRecord, HandoffSummary, summarize
from ..schema import parse_duration
from ..services import open_shared
from ..state.failover import FailoverHandoffStore
from ..state.handoffs import HandoffStore
from .common import JSON_OPTION, TZ_OPTION, fail, flask_app, local_time, print_json, print_table, settings_source

__all__ = ["handoffs", "parse_moment"]

MEMORY_NOTE = ("note: hand-offs are kept in this process's memory: a separate CLI process knows none (set "
               "KF_REDIS_URL and KF_APPID to read those the bot's workers share)")
COLUMNS = ["ID", "USER", "REASON", "REQUESTED", "AGENT", "WAITED", "OUTCOME"]


class _BadSettings(click.ClickException):
    """A ``KF_*`` setting is invalid: exit 2, as for bad input."""

    exit_code = 2


def parse_moment(text: str, tz: Any, now: float, *, end_of_day: bool = False) -> float:
    """The unix time ``text`` names: a duration ago (``30m``, ``24h``, ``7d``), ``YYYY-MM-DD``,
    ``YYYY-MM-DD HH:MM[:SS]`` (in ``tz``), an ISO 8601 date-time (with its own offset, else in ``tz``), or a unix
    time. A date alone is its first second, or with ``end_of_day`` its last.

    :raises ValueError: none of these forms.
    """
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        return float(parse_time(text, tz, end_of_day=end_of_day))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration ago (30m, 24h, 7d) nor a date or time (YYYY-MM-DD, "
                         "YYYY-MM-DD HH:MM[:SS], ISO 8601 such as 2026-11-28T10:00+08:00, or a unix time)") from None
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)).timestamp()


def _period(since: str, until: Optional[str], tz: Any) -> Tuple[float, float]:
    now = time.time()
    try:
        start = parse_moment(since, tz, now)
        end = parse_moment(until, tz, now, end_of_day=True) if until else now
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since/--until") from None
    if end < start:
        raise click.BadParameter("--until is before --since", param_hint="--since/--until")
    return start, end


def _store() -> Tuple[HandoffStore, bool]:
    """The hand-off store to read — the app's own as ``flask kf``, else the one the settings open — and whether
    it is shared through Redis.

    :raises _BadSettings: a ``KF_*`` setting is invalid.
    """
    app = flask_app()
    state = app.extensions.get("kf_plugin") if app is not None else None
    if state is not None:
        shared = state.services.shared
        return shared.handoffs, shared.redis is not None
    try:
        shared = open_shared(Settings.read(settings_source()[0]))
    except ConfigError as exc:
        raise _BadSettings(str(exc)) from exc
    return shared.handoffs, shared.redis is not None


def _read(store: HandoffStore, start: float, end: float) -> List[HandoffRecord]:
    """The records of the period; an error when Redis could not be read (rather than an empty period)."""
    records = store.records(start, end)
    if isinstance(store, FailoverHandoffStore) and store.failover.degraded:
        raise fail("Redis is unreachable (KF_REDIS_URL): the hand-off records could not be read")
    return records


def duration(seconds: Optional[float]) -> str:
    """``seconds`` for the eye: ``45s``, ``3m05s``, ``2h07m``; ``-`` for none."""
    if seconds is None:
        return "-"
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def _outcome(record: HandoffRecord) -> str:
    if record.outcome is not None:
        return record.outcome.value
    return "queued" if record.accepted_at is None else "with agent"


def _rows(records: Sequence[HandoffRecord], tz: Any) -> List[Sequence[Any]]:
    return [[r.id, r.openid, r.reason, local_time(r.requested_at, tz), r.agent or "-", duration(r.waited),
             _outcome(r)] for r in records]


def summary_line(summary: HandoffSummary) -> str:
    """``12 hand-offs, acceptance rate 75%, median wait 45s, p90 wait 3m10s``."""
    rate = "-" if summary.acceptance_rate is None else f"{summary.acceptance_rate:.0%}"
    return (f"{summary.count} hand-off{'' if summary.count == 1 else 's'}, acceptance rate {rate}, "
            f"median wait {duration(summary.median_wait)}, p90 wait {duration(summary.p90_wait)}")


@click.command("handoffs")
@click.option("--since", default="24h", show_default=True,
              help="A duration ago (30m, 24h, 7d), YYYY-MM-DD, YYYY-MM-DD HH:MM[:SS] (in --tz), an ISO 8601 "
                   "date-time or a unix time.")
@click.option("--until", help="The same forms; a date alone includes the whole day [default: now].")
@JSON_OPTION
@TZ_OPTION
def handoffs(since: str, until: Optional[str], as_json: bool, tz: Any) -> None:
    """The hand-offs requested from --since to --until: id, user, reason, when, agent, wait and outcome, then
    their count, the share that reached an agent (acceptance rate) and the median and 90th-percentile wait."""
    start, end = _period(since, until, tz)
    store, shared = _store()
    records = _read(store, start, end)
    summary = summarize(records)
    if as_json:
        print_json({"handoffs": [r.to_dict() for r in records], "summary": summary.to_dict()})
    else:
        if records:
            print_table(COLUMNS, _rows(records, tz))
        else:
            click.echo(f"no hand-offs requested from {local_time(start, tz)} to {local_time(end, tz)}")
        click.echo(summary_line(summary))
    if not shared:
        click.echo(MEMORY_NOTE, err=True)
