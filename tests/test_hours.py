import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from kf_plugin.hours import BusinessHours, parse_weekdays

SH = ZoneInfo("Asia/Shanghai")


def at(text, zone=SH):
    return dt.datetime.fromisoformat(text).replace(tzinfo=zone)


@pytest.mark.parametrize("spec, days", [
    ("mon-fri", {0, 1, 2, 3, 4}),
    ("mon,wed,fri", {0, 2, 4}),
    ("Saturday Sunday", {5, 6}),
    ("fri-mon", {4, 5, 6, 0}),
    (["tue", "thu"], {1, 3}),
    (["mon-wed", "sun"], {0, 1, 2, 6}),
])
def test_weekdays(spec, days):
    assert parse_weekdays(spec) == days


@pytest.mark.parametrize("spec", ["mon-frx", "someday", "", []])
def test_bad_weekdays(spec):
    with pytest.raises(ValueError):
        parse_weekdays(spec)


@pytest.mark.parametrize("when, open_", [
    ("2026-11-24 09:00", True),    # Tuesday, opening minute
    ("2026-11-24 08:59", False),
    ("2026-11-24 17:59", True),
    ("2026-11-24 18:00", False),   # closing time is exclusive
    ("2026-11-28 10:00", False),   # Saturday
    ("2026-10-01 10:00", False),   # a closed date (Thursday)
])
def test_office_hours(when, open_):
    hours = BusinessHours.parse(closed_dates=["2026-10-01"])
    assert hours.is_open(at(when)) is open_


def test_unix_time_and_other_zones_are_converted():
    hours = BusinessHours.parse()
    assert hours.is_open(at("2026-11-24 02:00", ZoneInfo("UTC")))      # 10:00 in Shanghai
    assert not hours.is_open(at("2026-11-24 12:00", ZoneInfo("UTC")))  # 20:00 in Shanghai
    assert hours.is_open(at("2026-11-24 10:00").timestamp())


@pytest.mark.parametrize("when, open_", [
    ("2026-11-27 23:00", True),    # Friday night shift
    ("2026-11-28 01:30", True),    # after midnight: still Friday's shift
    ("2026-11-28 02:00", False),
    ("2026-11-27 01:30", False),   # Thursday's shift is not worked
    ("2026-11-28 23:00", False),   # Saturday is not a working day
])
def test_overnight_shift(when, open_):
    hours = BusinessHours.parse(weekdays="fri", opens="22:00", closes="02:00")
    assert hours.is_open(at(when)) is open_


def test_around_the_clock_and_end_of_day():
    assert BusinessHours.parse(weekdays="mon-sun", opens="00:00", closes="00:00").is_open(at("2026-11-29 03:00"))
    assert BusinessHours.parse(opens="20:00", closes="24:00").is_open(at("2026-11-24 23:59"))


@pytest.mark.parametrize("kwargs, error", [
    (dict(timezone="Mars/Base"), "unknown timezone 'Mars/Base'"),
    (dict(opens="9am"), "opens must be a time"),
    (dict(closed_dates=["tomorrow"]), "closed date 'tomorrow'"),
    (dict(weekdays="noday"), "unknown weekday"),
])
def test_invalid_settings(kwargs, error):
    with pytest.raises(ValueError, match=error):
        BusinessHours.parse(**kwargs)
