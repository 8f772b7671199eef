"""The wait queue kept at hand for the push path (:class:`~kf_plugin.reconcile.QueueWatch`), against the served
sandbox."""
from __future__ import annotations

import threading

import pytest

from kf_plugin.admin import KfAdmin
from kf_plugin.reconcile import QueueWatch

from .reconcile_support import GETWAITCASE, U, V, W


@pytest.fixture
def watch(api, admin) -> QueueWatch:
    return QueueWatch(admin, max_age=10, clock=api.clock)


def test_place_before_any_refresh_is_unknown(api, watch):
    assert watch.place(U) == (None, None) and watch.queue() is None and watch.age is None
    assert api.sandbox.calls_to(GETWAITCASE) == []


def test_place_of_listed_and_unlisted_users(api, watch):
    for openid in (U, V):
        api.sandbox.interact(openid, "message")
        api.sandbox.enqueue(openid)
    api.sandbox.interact(W, "message")
    watch.refresh()
    for _ in range(3):
        assert (watch.place(U), watch.place(V), watch.place(W)) == ((1, 2), (2, 2), (None, 2))
    assert len(api.sandbox.calls_to(GETWAITCASE)) == 1     # place() never calls the API
    assert watch.lists(V) and not watch.lists(W)


def test_users_past_the_first_hundred_have_no_place_but_a_count(api, watch):
    users = [f"oWaiting{n:03d}" for n in range(101)]
    for openid in users:
        api.sandbox.interact(openid, "message")
        api.sandbox.enqueue(openid)
    watch.refresh()
    assert watch.place(users[99]) == (100, 101) and watch.place(users[100]) == (None, 101)


@pytest.mark.parametrize("age, fresh, place", [
    (10, True, (1, 1)),
    (11, False, (1, 1)),            # not fresh enough to skip a session check, still good for a notice
    (30, False, (1, 1)),
    (31, False, (None, None)),      # past three times max_age: given up
])
def test_a_queue_ages(api, watch, age, fresh, place):
    api.sandbox.interact(U, "message")
    api.sandbox.enqueue(U)
    watch.refresh()
    api.clock.advance(age)
    assert watch.place(U) == place and watch.lists(U) is fresh


def test_a_failed_refresh_keeps_the_last_queue_and_logs_the_errcode(api, watch, caplog):
    api.sandbox.interact(U, "message")
    api.sandbox.enqueue(U)
    watch.refresh()
    api.clock.advance(20)
    api.sandbox.faults.fail_next(65400, times=3, path=GETWAITCASE)
    assert watch.refresh() is not None and watch.place(U) == (1, 1)
    assert "errcode 65400: customer service is not enabled" in caplog.text
    assert "keeping the queue read 20 s ago" in caplog.text
    api.clock.advance(11)
    assert watch.refresh() is None and watch.place(U) == (None, None)


def test_a_first_refresh_failing_knows_nothing(api, watch, caplog):
    api.sandbox.faults.fail_next(45009, path=GETWAITCASE)
    assert watch.refresh() is None and "none known yet" in caplog.text


def test_an_older_refresh_finishing_last_does_not_win(api, admin):
    class Slow(KfAdmin):
        """Answers the first read late: the queue as it was before the second read began."""
        def __init__(self):
            super().__init__(admin.client)
            self.first = threading.Event()
            self.release = threading.Event()

        def waiting(self):
            queue = super().waiting()
            if not self.first.is_set():
                self.first.set()
                self.release.wait(5)
            return queue

    slow = Slow()
    watch = QueueWatch(slow, max_age=10, clock=api.clock)
    earlier = threading.Thread(target=watch.refresh)
    earlier.start()
    assert slow.first.wait(5)
    api.sandbox.interact(U, "message")
    api.sandbox.enqueue(U)
    api.clock.advance(1)
    watch.refresh()
    slow.release.set()
    earlier.join(5)
    assert watch.place(U) == (1, 1)


@pytest.mark.parametrize("max_age", [0, -1, float("nan"), True, "10"])
def test_a_bad_max_age_is_refused(admin, max_age):
    with pytest.raises(ValueError, match="max_age must be a positive number of seconds"):
        QueueWatch(admin, max_age=max_age)
