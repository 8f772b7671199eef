"""The background pool: bounded backlog, results and errors through futures, shutdown (once, then refusing)."""
import threading

import pytest

from kf_plugin.background import Background
from kf_plugin.errors import KfError


def test_results_and_errors_reach_the_future():
    pool = Background(2)
    assert pool.submit(lambda a, b: a + b, 2, b=3).result(timeout=5) == 5
    with pytest.raises(ZeroDivisionError):
        pool.submit(lambda: 1 / 0).result(timeout=5)
    pool.shutdown()


def test_a_full_backlog_refuses_new_work_with_one_warning(caplog):
    release = threading.Event()
    started = threading.Event()
    pool = Background(1, max_pending=3)

    def blocker():
        started.set()
        release.wait(5)

    pool.submit(blocker)
    started.wait(5)                                      # the only thread is busy from here on
    queued = [pool.submit(lambda n=n: n) for n in range(3)]
    refused = [pool.submit(lambda: "never") for _ in range(4)]
    assert pool.pending == 3
    for future in refused:
        with pytest.raises(KfError, match="background queue is full"):
            future.result(timeout=0)
    assert caplog.text.count("refusing new ones") == 1
    release.set()
    assert [f.result(timeout=5) for f in queued] == [0, 1, 2]
    assert pool.submit(lambda: "accepted again").result(timeout=5) == "accepted again"
    pool.shutdown()


def test_shutdown_can_cancel_what_is_queued():
    release = threading.Event()
    started = threading.Event()
    pool = Background(1)
    pool.submit(lambda: (started.set(), release.wait(5)))
    started.wait(5)
    waiting = pool.submit(lambda: "late")
    pool.shutdown(wait=False, cancel_futures=True)
    release.set()
    assert waiting.cancelled()


def test_threads_are_daemons_started_on_first_use():
    pool = Background(3, name="kf-test-pool")
    assert not [t for t in threading.enumerate() if t.name.startswith("kf-test-pool")]
    pool.submit(lambda: None).result(timeout=5)
    threads = [t for t in threading.enumerate() if t.name.startswith("kf-test-pool")]
    assert len(threads) == 3 and all(t.daemon for t in threads)
    pool.shutdown()


def test_after_shutdown_new_work_is_refused_and_a_second_shutdown_only_waits():
    pool = Background(2, name="kf-test-closed")
    assert pool.submit(lambda: "before").result(timeout=5) == "before"
    pool.shutdown(wait=False)
    refused = pool.submit(lambda: "after")
    with pytest.raises(KfError, match="background pool 'kf-test-closed' was shut down"):
        refused.result(timeout=0)                        # at once: no thread would ever run it
    pool.shutdown(cancel_futures=True)                   # again, waiting: the stop signals are not cancelled
    assert not [t for t in threading.enumerate() if t.name.startswith("kf-test-closed")]


def test_a_pool_shut_down_before_its_first_task_starts_no_thread():
    pool = Background(2, name="kf-test-unused")
    pool.shutdown()
    with pytest.raises(KfError, match="was shut down"):
        pool.submit(lambda: None).result(timeout=0)
    assert not [t for t in threading.enumerate() if t.name.startswith("kf-test-unused")]
