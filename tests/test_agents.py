"""Picking an agent, and the online-agent cache against the sandbox."""
import threading

import pytest

from kf_plugin.admin import OnlineAgent
from kf_plugin.agents import AgentDirectory, pick_agent

from .conftest import FakeClock


def agent(name, cases=0, status=1):
    return OnlineAgent(name, status, None, cases)


ONLINE = [agent("a@x", 3), agent("b@x", 1), agent("c@x", 1), agent("d@x", 0, status=0)]


@pytest.mark.parametrize("online, designated, pool, expected", [
    (ONLINE, None, True, "b@x"),           # fewest cases, ties by name; offline d@x is ignored
    (ONLINE, "a@x", False, "a@x"),         # designated and online
    (ONLINE, "a@x", True, "a@x"),
    (ONLINE, "d@x", False, None),          # designated but status 0
    (ONLINE, "d@x", True, "b@x"),          # … then the pool
    (ONLINE, "zz@x", False, None),
    ([], None, True, None),
    ([agent("d@x", status=0)], None, True, None),
])
def test_pick_agent(online, designated, pool, expected):
    assert pick_agent(online, designated, pool) == expected


@pytest.fixture
def directory(api, admin):
    api.sandbox.add_agent("wang@gh_test", "小王", wx="wang_wx", online=True)
    return AgentDirectory(admin, max_age=60, clock=FakeClock(0))


def test_reads_are_served_from_the_cache(api, directory):
    assert [a.kf_account for a in directory.online()] == ["wang@gh_test"]
    for _ in range(5):
        directory.online()
    assert len(api.sandbox.calls_to("/cgi-bin/customservice/getonlinekflist")) == 1


def test_a_stale_list_is_refreshed(api, directory):
    directory.online()
    api.sandbox.set_online("wang@gh_test", False)
    directory.clock.advance(61)
    assert directory.online() == []


def test_a_failed_refresh_keeps_the_last_list_until_it_is_too_old(api, directory, caplog):
    directory.refresh()
    api.sandbox.faults.http_error(502, path="/cgi-bin/customservice/getonlinekflist", times=100)
    directory.clock.advance(30)
    assert [a.kf_account for a in directory.refresh()] == ["wang@gh_test"]
    assert "keeping the list from 30 s ago" in caplog.text
    directory.clock.advance(31)
    assert directory.online(budget=1) is None


def test_concurrent_stale_reads_make_one_call(api, directory):
    api.sandbox.faults.add_latency(0.3, path="/cgi-bin/customservice/getonlinekflist", times=1)
    barrier = threading.Barrier(10)
    results = []

    def read():
        barrier.wait()
        results.append(directory.online(budget=5))

    threads = [threading.Thread(target=read) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(api.sandbox.calls_to("/cgi-bin/customservice/getonlinekflist")) == 1
    assert all(r is not None and r[0].kf_account == "wang@gh_test" for r in results)


def test_a_reader_waits_no_longer_than_its_budget(api, directory):
    api.sandbox.faults.add_latency(1.0, path="/cgi-bin/customservice/getonlinekflist", times=1)
    assert directory.online(budget=0.05) is None        # not known yet; the refresh goes on
    assert directory.refresh()[0].kf_account == "wang@gh_test"


def test_readers_stop_waiting_for_a_slow_refresh(api, directory, monkeypatch):
    api.sandbox.faults.add_latency(1.0, path="/cgi-bin/customservice/getonlinekflist", times=1)
    waits = []
    real_wait = threading.Event.wait

    def recorded_wait(event, timeout=None):
        if timeout is not None:     # Thread.start() waits too, without a timeout
            waits.append(timeout)
        return real_wait(event, timeout)

    monkeypatch.setattr(threading.Event, "wait", recorded_wait)
    assert directory.online(budget=0.2) is None          # the first reader waits (up to) its budget
    for _ in range(5):
        assert directory.online(budget=0.2) is None      # later readers find the refresh already late …
    assert 0 < waits[0] <= 0.2 and waits[1:] == [0.0] * 5   # … and do not wait for it again
    monkeypatch.undo()
    assert directory.refresh()[0].kf_account == "wang@gh_test"
