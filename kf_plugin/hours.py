"""Business hours: when customer service takes hand-offs.

::

    BusinessHours.parse(timezone="Asia/Shanghai", weekdays="mon-fri", opens="09:00", closes="18:00",
                        closed_dates=["2026-10-01"], closed_text="客服工作时间：工作日 9:00–18:00")
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import FrozenSet, Iterable, Optional, Set, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["BusinessHours", "parse_weekdays"]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _day(name: str) -> int:
    short = name.strip().lower()[:3]
    if short not in WEEKDAYS:
        raise ValueError(f"unknown weekday {name.strip()!r} (use {', '.join(WEEKDAYS)})")
    return WEEKDAYS.index(short)


def parse_weekdays(spec: Union[str, Iterable[str]]) -> FrozenSet[int]:
    """``"mon-fri"``, ``"mon,wed,fri"``, ``"fri-mon"`` or a list of names → weekday numbers (Monday = 0).

    :raises ValueError: an unknown day name, or no day at all.
    """
    parts = spec.replace(",", " ").split() if isinstance(spec, str) else [str(p) for p in spec]
    days: Set[int] = set()
    for part in parts:
        if "-" in part:
            first, last = (_day(p) for p in part.split("-", 1))
            days.update(range(first, last + 1) if first <= last else [*range(first, 7), *range(last + 1)])
        else:
            days.add(_day(part))
    if not days:
        raise ValueError("at least one weekday is needed")
    return frozenset(days)


def _time(value: str, what: str) -> dt.time:
    try:
        hours, minutes = str(value).split(":")
        if (hours, minutes) == ("24", "00"):
            return dt.time.max
        return dt.time(int(hours), int(minutes))
    except ValueError:
        raise ValueError(f"{what} must be a time like \"09:00\", not {value!r}") from None


@dataclass(frozen=True)
class BusinessHours:
    """Open on ``weekdays`` (Monday = 0) from ``opens`` to ``closes``, local time in ``zone``, except ``closed_dates``.

    ``closes`` earlier than ``opens`` means the day's hours run past midnight; ``time.max`` is the
    end of the day; ``opens == closes`` means open around the clock. :meth:`parse` reads the string
    forms of the rule file.
    """

    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    weekdays: FrozenSet[int] = frozenset(range(5))
    opens: dt.time = dt.time(9, 0)
    closes: dt.time = dt.time(18, 0)
    closed_dates: FrozenSet[dt.date] = frozenset()
    closed_text: Optional[str] = None

    @classmethod
    def parse(cls, timezone: str = "Asia/Shanghai", weekdays: Union[str, Iterable[str]] = "mon-fri",
              opens: str = "09:00", closes: str = "18:00", closed_dates: Iterable[Union[str, dt.date]] = (),
              closed_text: Optional[str] = None) -> "BusinessHours":
        """Business hours from their string forms: an IANA timezone, ``"mon-fri"``, ``"09:00"``, ``"2026-10-01"``.

        :raises ValueError: unknown timezone, weekday or time format.
        """
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {timezone!r} (use an IANA name like Asia/Shanghai)") from None
        dates = []
        for value in closed_dates:
            try:
                dates.append(value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)))
            except ValueError:
                raise ValueError(f"closed date {value!r} is not a date like 2026-10-01") from None
        return cls(zone, parse_weekdays(weekdays), _time(opens, "opens"), _time(closes, "closes"),
                   frozenset(dates), closed_text)

    @property
    def timezone(self) -> str:
        """The IANA name of :attr:`zone`."""
        return self.zone.key

    def is_open(self, when: Union[float, dt.datetime]) -> bool:
        """Whether customer service is open at ``when`` (a unix time or an aware datetime)."""
        moment = (dt.datetime.fromtimestamp(when, self.zone) if isinstance(when, (int, float))
                  else when.astimezone(self.zone))
        clock = moment.time()
        if self.opens == self.closes:
            day: Optional[dt.date] = moment.date()  # open around the clock
        elif self.opens < self.closes:
            day = moment.date() if self.opens <= clock < self.closes else None
        elif clock >= self.opens:
            day = moment.date()
        elif clock < self.closes:
            day = moment.date() - dt.timedelta(days=1)  # still the previous day's late shift
        else:
            day = None
        return day is not None and day.weekday() in self.weekdays and day not in self.closed_dates
