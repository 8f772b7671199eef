"""get_corp_statistic and get_servicer_statistic over HTTP: days, ranges, and what is counted."""
from __future__ import annotations

import pytest

from kf_plugin.testing.sandbox.tokens import beijing_day

from ..conftest import Clock
from .conftest import CUSTOMER, OTHER_CUSTOMER, Kf, errcode

CORP = "/cgi-bin/kf/get_corp_statistic"
SERVICER = "/cgi-bin/kf/get_servicer_statistic"
DAY = 86400


def midnight(now: float, days_ago: int = 0) -> int:
    return (beijing_day(now) - days_ago) * DAY - 8 * 3600


@pytest.fixture
def yesterday(kf: Kf, wecom, kfid, clock: Clock) -> int:
    """Yesterday two customers wrote (three messages, two sessions); zhangsan took one of them, who wrote again."""
    wecom.customer_says(kfid, CUSTOMER, "一")
    wecom.customer_says(kfid, OTHER_CUSTOMER, "二")
    kf.trans(kfid, 3, "zhangsan")
    wecom.customer_says(kfid, CUSTOMER, "三")
    day = midnight(clock.now)
    clock.advance(DAY)
    return day


def test_corp_statistic_counts_sessions_customers_and_messages(kf: Kf, kfid, yesterday: int):
    answer = kf.post(CORP, {"open_kfid": kfid, "start_time": yesterday - DAY, "end_time": yesterday + 3600})
    assert answer["statistic_list"] == [
        {"stat_time": yesterday - DAY},
        {"stat_time": yesterday, "statistic": {"session_cnt": 2, "customer_cnt": 2, "customer_msg_cnt": 3}}]


def test_corp_statistic_without_open_kfid_covers_every_account(kf: Kf, wecom, kfid, yesterday: int, clock: Clock):
    other = wecom.add_account("其他")
    clock.advance(-DAY)
    wecom.customer_says(other, CUSTOMER, "那边")
    clock.advance(DAY)
    [day] = kf.post(CORP, {"start_time": yesterday, "end_time": yesterday})["statistic_list"]
    assert day["statistic"] == {"session_cnt": 3, "customer_cnt": 2, "customer_msg_cnt": 4}


def test_servicer_statistic_counts_what_reached_the_servicer(kf: Kf, kfid, yesterday: int):
    body = {"open_kfid": kfid, "start_time": yesterday, "end_time": yesterday}
    [mine] = kf.post(SERVICER, dict(body, servicer_userid="zhangsan"))["statistic_list"]
    assert mine["statistic"] == {"session_cnt": 1, "customer_cnt": 1, "customer_msg_cnt": 1}
    [theirs] = kf.post(SERVICER, dict(body, servicer_userid="lisi"))["statistic_list"]
    assert "statistic" not in theirs
    [everyone] = kf.post(SERVICER, body)["statistic_list"]
    assert everyone["statistic"] == mine["statistic"]


@pytest.mark.parametrize("days", [(0, 0), (2, 3), (181, 1)])  # today; start after end; beyond 180 days
@pytest.mark.parametrize("path", [CORP, SERVICER])
def test_days_must_lie_between_180_days_ago_and_yesterday(kf: Kf, kfid, clock: Clock, path, days):
    start, end = (midnight(clock.now, ago) for ago in days)
    answer = kf.post(path, {"open_kfid": kfid, "start_time": start, "end_time": end})
    assert errcode(answer) == 40058


@pytest.mark.parametrize("path", [CORP, SERVICER])
def test_times_must_be_timestamps(kf: Kf, kfid, path):
    assert errcode(kf.post(path, {"open_kfid": kfid, "start_time": "yesterday", "end_time": 1})) == 40058


def test_the_oldest_day_is_180_days_ago(kf: Kf, kfid, clock: Clock):
    answer = kf.post(CORP, {"open_kfid": kfid, "start_time": midnight(clock.now, 180),
                            "end_time": midnight(clock.now, 179)})
    assert errcode(answer) == 0 and len(answer["statistic_list"]) == 2


def test_servicer_statistic_needs_the_account_and_one_of_its_servicers(kf: Kf, kfid, clock: Clock):
    days = {"start_time": midnight(clock.now, 1), "end_time": midnight(clock.now, 1)}
    assert errcode(kf.post(SERVICER, days)) == 95000
    assert errcode(kf.post(SERVICER, dict(days, open_kfid=kfid, servicer_userid="nobody"))) == 40058
