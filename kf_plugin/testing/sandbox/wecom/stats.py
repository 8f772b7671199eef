"""The statistics endpoints (``get_corp_statistic``, ``get_servicer_statistic``), counted from what happened.

Days are Beijing days; ``start_time`` and ``end_time`` name days (any second of the day
counts as its midnight), from 180 days ago to yesterday (40058 otherwise, or when start
is after end). Each day of the range is listed; its ``statistic`` is there only when the
day counts something. The sandbox counts a subset of WeCom's fields:

- corp (one account with ``open_kfid``, else all): ``session_cnt`` sessions started by a
  customer's message, ``customer_cnt`` customers who wrote, ``customer_msg_cnt`` their messages;
- servicer (``open_kfid`` required; one servicer or all of the account's): ``session_cnt``
  sessions they took, ``customer_cnt`` / ``customer_msg_cnt`` customers who wrote to them and
  their messages.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

from ..tokens import beijing_day
from .errors import INVALID_PARAMETER, WeComError
from .inbox import Item
from .state import WeComState

__all__ = ["corp_statistic", "servicer_statistic", "MAX_AGE_DAYS"]

MAX_AGE_DAYS = 180


def _midnight(day: int) -> int:
    return day * 86400 - 8 * 3600


def _day_of(body: Dict[str, Any], name: str) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise WeComError(INVALID_PARAMETER, f"{name} must be a unix timestamp")
    return beijing_day(value)


def _days(body: Dict[str, Any], now: float) -> range:
    """:raises WeComError: 40058 times missing, reversed, or outside 180 days ago .. yesterday."""
    first, last, today = _day_of(body, "start_time"), _day_of(body, "end_time"), beijing_day(now)
    if first > last:
        raise WeComError(INVALID_PARAMETER, "start_time is after end_time")
    if first < today - MAX_AGE_DAYS or last >= today:
        raise WeComError(INVALID_PARAMETER, f"days must lie between {MAX_AGE_DAYS} days ago and yesterday")
    return range(first, last + 1)


def _listed(days: range, count: Callable[[int], Dict[str, int]]) -> List[Dict[str, Any]]:
    listed = []
    for day in days:
        entry: Dict[str, Any] = {"stat_time": _midnight(day)}
        counts = count(day)
        if any(counts.values()):
            entry["statistic"] = counts
        listed.append(entry)
    return listed


def _counts(messages: Iterable[Item], sessions: int) -> Dict[str, int]:
    listed = list(messages)
    customers: Set[Optional[str]] = {item.external_userid for item in listed}
    return {"session_cnt": sessions, "customer_cnt": len(customers), "customer_msg_cnt": len(listed)}


def _customer_messages(state: WeComState, day: int, accounts: Set[str]) -> List[Item]:
    return [item for item in state.inbox.items
            if item.body.get("origin") == 3 and item.open_kfid in accounts and beijing_day(item.send_time) == day]


def corp_statistic(state: WeComState, body: Dict[str, Any]) -> List[Dict[str, Any]]:
    """:raises WeComError: 95000/95004 a given open_kfid, 40058 the days."""
    if body.get("open_kfid") is not None:
        accounts = {state.directory.account(body.get("open_kfid")).open_kfid}
    else:
        accounts = set(state.directory.accounts)
    days = _days(body, state.now())

    def count(day: int) -> Dict[str, int]:
        started = [s for s in state.session_starts if s[0] in accounts and beijing_day(s[2]) == day]
        return _counts(_customer_messages(state, day, accounts), len(started))
    return _listed(days, count)


def servicer_statistic(state: WeComState, body: Dict[str, Any]) -> List[Dict[str, Any]]:
    """:raises WeComError: 95000/95004 the open_kfid, 40058 a userid not among its servicers, or the days."""
    account = state.directory.account(body.get("open_kfid"))
    userid = body.get("servicer_userid")
    if userid is not None and userid not in account.servicers:
        raise WeComError(INVALID_PARAMETER, f"{userid} is not a servicer of {account.open_kfid}")
    servicers = {userid} if userid is not None else set(account.servicers)
    days = _days(body, state.now())

    def count(day: int) -> Dict[str, int]:
        taken: List[Tuple[str, str, str, float]] = [
            s for s in state.human_starts if s[0] == account.open_kfid and s[1] in servicers
            and beijing_day(s[3]) == day]
        messages = [item for item in _customer_messages(state, day, {account.open_kfid}) if item.servicer in servicers]
        return _counts(messages, len(taken))
    return _listed(days, count)
