"""The WeCom puller against a fake ``sync_msg`` that pages through a list with real cursors.

Shared state runs once per engine (``shared`` fixture): memory (two "workers" sharing one process's stores)
and Redis (skipped without it, except in CI). Leases follow a fake clock, so a lease lapses when a test moves
the clock, never by waiting.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest

from kf_plugin.errors import WeChatAPIError
from kf_plugin.state.base import TokenStore
from kf_plugin.state.memory import MemoryTokenStore
from kf_plugin.wecom.puller import HANDLERS, INVALID_SYNC_TOKEN, LEASE_PREFIX, Puller, customer_of
from kf_plugin.wecom.state import CursorStore, MemoryCursorStore, MemorySeenStore, SeenStore

from ..conftest import FakeClock

KFID = "wkAJ2GCAAAZSfhHCt7IFSvLKtMPxyJTw"
CORPID = "ww1234567890abcdef"
T0 = 1_700_000_000.0
JOIN = 10.0


def eventually(predicate: Callable[[], bool], limit: float = JOIN) -> bool:
    """Poll ``predicate`` until it holds or ``limit`` seconds pass (for threads, not for timing)."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)
    return True


class Killed(BaseException):
    """A worker dying in the middle of a handler (as SystemExit or KeyboardInterrupt would end it)."""


@dataclass(frozen=True)
class Page:
    """A sync_msg page as the API module gives it (a frozen dataclass)."""

    next_cursor: str
    has_more: int
    messages: Tuple[Dict[str, Any], ...]


class FakeSync:
    """Plays sync_msg: each account's messages in a list; a cursor is ``c<index after the page>``; only
    tokens in ``tokens`` are accepted (else 95007); ``failures`` are raised by the next calls, in order."""

    def __init__(self, clock: FakeClock, page_size: int = 3):
        self.clock = clock
        self.page_size = page_size
        self.messages: Dict[str, List[Dict[str, Any]]] = {}
        self.calls: List[Tuple[str, Optional[str], Optional[str], int]] = []
        self.tokens = {"T-valid"}
        self.failures: List[Exception] = []
        self._lock = threading.Lock()

    def add(self, user: str, text: str = "hi", age: float = 0.0, open_kfid: str = KFID) -> str:
        with self._lock:
            queue = self.messages.setdefault(open_kfid, [])
            msgid = f"{open_kfid[-4:]}-m{len(queue) + 1}"
            queue.append({"msgid": msgid, "open_kfid": open_kfid, "external_userid": user,
                          "send_time": int(self.clock() - age), "origin": 3, "msgtype": "text",
                          "text": {"content": text}})
            return msgid

    def __call__(self, open_kfid: str, cursor: Optional[str], token: Optional[str], limit: int) -> Page:
        with self._lock:
            self.calls.append((open_kfid, cursor, token, limit))
            if self.failures:
                raise self.failures.pop(0)
            if token is not None and token not in self.tokens:
                raise WeChatAPIError(INVALID_SYNC_TOKEN, "invalid msg token")
            queue = self.messages.get(open_kfid, [])
            start = int(cursor[1:]) if cursor else 0
            batch = tuple(dict(m) for m in queue[start:start + min(limit, self.page_size)])
            end = start + len(batch)
            return Page(f"c{end}", int(end < len(queue)), batch)


class Recorder:
    """A handler that records the msgids it handled (after ``before`` ran, which may block or kill)."""

    def __init__(self, before: Optional[Callable[[Dict[str, Any]], None]] = None):
        self.before = before
        self.handled: List[str] = []
        self._lock = threading.Lock()

    def __call__(self, message: Dict[str, Any]) -> None:
        if self.before is not None:
            self.before(message)
        with self._lock:
            self.handled.append(message["msgid"])


class Watched:
    """Wraps a store, recording the calls that change it (``acquire``, ``put``) with their arguments."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.calls: List[Tuple[Any, ...]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if name not in ("acquire", "put"):
            return method

        def call(*args: Any) -> Any:
            self.calls.append((name, *args))
            return method(*args)
        return call


@dataclass
class Shared:
    """What every worker of a corp shares: the leases, the cursors, the handled msgids."""

    leases: TokenStore
    cursors: CursorStore
    seen: SeenStore
    clock: FakeClock


@pytest.fixture(params=["memory", "redis"])
def shared(request) -> Shared:
    clock = FakeClock(T0)
    if request.param == "memory":
        return Shared(MemoryTokenStore(clock=clock), MemoryCursorStore(), MemorySeenStore(), clock)
    import redis

    from kf_plugin.state.redis_tokens import RedisTokenStore
    from kf_plugin.wecom.state import RedisCursorStore, RedisSeenStore
    connection = redis.Redis.from_url(request.getfixturevalue("redis_url"))
    return Shared(RedisTokenStore(connection, f"wecom:{CORPID}", clock=clock), RedisCursorStore(connection, CORPID),
                  RedisSeenStore(connection, CORPID), clock)


@pytest.fixture
def memory() -> Shared:
    clock = FakeClock(T0)
    return Shared(MemoryTokenStore(clock=clock), MemoryCursorStore(), MemorySeenStore(), clock)


def worker(shared: Shared, sync: Callable[..., Page], handle: Callable[[Dict[str, Any]], None],
           **options: Any) -> Puller:
    options.setdefault("skip_history", False)
    options.setdefault("sleep", lambda seconds: None)
    return Puller(sync, shared.cursors, shared.leases, handle, seen=shared.seen, clock=shared.clock, **options)


@pytest.fixture
def stop_all():
    """Shuts down every puller a test registers, at its end."""
    pullers: List[Puller] = []
    yield pullers.append
    for puller in pullers:
        assert puller.shutdown(JOIN)


# -- paging and the cursor ---------------------------------------------------------------------------------

def test_a_pull_fetches_pages_until_has_more_is_zero(shared):
    sync, handler = FakeSync(shared.clock), Recorder()
    ids = [sync.add("u1") for _ in range(7)]
    assert worker(shared, sync, handler).pull(KFID, "T-valid")
    assert handler.handled == ids
    assert [call[1] for call in sync.calls] == [None, "c3", "c6"]
    assert shared.cursors.get(KFID) == "c7"


def test_the_cursor_moves_only_after_its_page_is_handled(shared):
    sync = FakeSync(shared.clock)
    for _ in range(7):
        sync.add("u1")
    stored_while_handling: List[Optional[str]] = []
    handler = Recorder(lambda message: stored_while_handling.append(shared.cursors.get(KFID)))
    puller = worker(shared, sync, handler)
    puller.pull(KFID)
    assert stored_while_handling == [None] * 3 + ["c3"] * 3 + ["c6"]
    sync.add("u1")
    puller.pull(KFID)
    assert [call[1] for call in sync.calls][-1] == "c7"   # the next pull starts where the last one ended
    assert puller.stats().pages == 4


def test_a_pull_stops_when_sync_msg_says_has_more_without_a_new_cursor(memory, caplog):
    calls: List[Optional[str]] = []

    def stuck(open_kfid: str, cursor: Optional[str], token: Optional[str], limit: int) -> Page:
        calls.append(cursor)
        return Page("c0", 1, ())
    with caplog.at_level(logging.ERROR):
        assert worker(memory, stuck, Recorder()).pull(KFID)
    assert calls == [None, "c0"]
    assert "has_more without a new cursor" in caplog.text
    assert memory.cursors.get(KFID) == "c0"


# -- one puller an account across workers ------------------------------------------------------------------

def test_a_second_worker_does_not_pull_an_account_being_pulled(shared):
    sync = FakeSync(shared.clock)
    only = sync.add("u1")
    inside, release = threading.Event(), threading.Event()
    first = Recorder(lambda message: (inside.set(), release.wait(JOIN)))
    second = Recorder()
    thread = threading.Thread(target=worker(shared, sync, first).pull, args=(KFID,))
    thread.start()
    assert inside.wait(JOIN)
    assert not worker(shared, sync, second).pull(KFID)   # the lease is held: nothing fetched
    assert len(sync.calls) == 1
    release.set()
    thread.join(JOIN)
    assert worker(shared, sync, second).pull(KFID)       # free again: from the stored cursor, nothing new
    assert (first.handled, second.handled) == ([only], [])


def test_two_workers_notified_together_never_pull_one_account_at_once(shared, stop_all):
    sync = FakeSync(shared.clock, page_size=4)
    active, most = [0], [0]
    lock = threading.Lock()

    def count(message: Dict[str, Any]) -> None:
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.001)   # give another worker's pull the chance to overlap, were it allowed
        with lock:
            active[0] -= 1
    handler = Recorder(count)
    workers = [worker(shared, sync, handler, handlers=1, poll=0.001, sleep=None) for _ in range(2)]
    for puller in workers:
        stop_all(puller)
    ids = []
    for round_ in range(30):
        ids.append(sync.add(f"u{round_ % 3}"))
        for puller in workers:
            puller.notify(KFID, "T-valid")
    # Each worker pulls after its last notify (the dirty flag, or waiting for the other's lease): nothing is left.
    assert eventually(lambda: not any(puller.busy(KFID) for puller in workers))
    assert sorted(handler.handled) == sorted(ids)
    assert most[0] == 1


# -- a worker dying ----------------------------------------------------------------------------------------

def test_a_worker_killed_in_a_handler_loses_no_message_and_repeats_none(shared):
    sync = FakeSync(shared.clock)
    ids = [sync.add("u1") for _ in range(7)]
    handled = Recorder()

    def die_on_fifth(message: Dict[str, Any]) -> None:
        if message["msgid"] == ids[4]:
            raise Killed()
        handled(message)
    with pytest.raises(Killed):
        worker(shared, sync, die_on_fifth).pull(KFID)
    assert shared.cursors.get(KFID) == "c3"          # the page in progress was not stored
    worker(shared, sync, handled).pull(KFID)          # another worker replays that page
    assert handled.handled == ids
    assert shared.cursors.get(KFID) == "c7"


def test_a_hung_workers_lease_lapses_and_another_takes_over_without_repeating(shared):
    sync = FakeSync(shared.clock)
    ids = [sync.add("u1") for _ in range(7)]
    handled = Recorder()
    hung, die = threading.Event(), threading.Event()

    def hang_on_fifth(message: Dict[str, Any]) -> None:
        if message["msgid"] == ids[4]:
            hung.set()
            die.wait(JOIN)
            raise Killed()
        handled(message)
    abandoned = worker(shared, sync, hang_on_fifth)
    outcome: List[BaseException] = []
    thread = threading.Thread(target=lambda: _catch(outcome, abandoned.pull, KFID), daemon=True)
    thread.start()
    assert hung.wait(JOIN)
    assert not worker(shared, sync, handled).pull(KFID)   # still leased
    shared.clock.advance(31)                             # past the 30 s lease: the worker is gone
    assert worker(shared, sync, handled).pull(KFID)
    die.set()
    thread.join(JOIN)
    assert [type(e) for e in outcome] == [Killed]
    assert handled.handled == ids                        # the 5th once, by the worker that took over
    assert shared.cursors.get(KFID) == "c7"


def test_a_slow_worker_that_lost_its_lease_stores_no_cursor(shared, caplog):
    sync = FakeSync(shared.clock)
    ids = [sync.add("u1") for _ in range(7)]
    handled = Recorder()
    slow, go_on = threading.Event(), threading.Event()

    def slow_on_fifth(message: Dict[str, Any]) -> None:
        if message["msgid"] == ids[4] and not slow.is_set():
            slow.set()
            go_on.wait(JOIN)
        handled(message)
    stalled = worker(shared, sync, slow_on_fifth)
    thread = threading.Thread(target=stalled.pull, args=(KFID,), daemon=True)
    thread.start()
    assert slow.wait(JOIN)
    shared.clock.advance(31)
    assert worker(shared, sync, handled).pull(KFID)      # takes over, finishes, stores c7 and lets go
    with caplog.at_level(logging.WARNING, logger="kf_plugin.wecom.puller"):
        go_on.set()
        thread.join(JOIN)
    assert shared.cursors.get(KFID) == "c7"              # the slow worker did not move it back to c6
    assert f"the pull lease of {KFID} lapsed" in caplog.text
    assert sync.calls[-1][1] == "c7"                     # it took the free lease again: from the stored cursor
    # The one message both ran is the price of a worker stalled past its lease; it is said, not hidden.
    assert sorted(handled.handled) == sorted([*ids, ids[4]])
    assert f"WeCom message {ids[4]} of {KFID} was handled twice" in caplog.text


def _catch(outcome: List[BaseException], call: Callable[..., Any], *args: Any) -> None:
    try:
        call(*args)
    except BaseException as exc:  # recorded for the test to look at
        outcome.append(exc)


def test_the_lease_is_renewed_while_a_slow_handler_runs(memory):
    leases = Watched(memory.leases)

    def acquired() -> List[str]:
        return [args[2] for args in leases.calls if args[0] == "acquire"]
    sync = FakeSync(memory.clock)
    sync.add("u1")
    handler = Recorder(lambda message: eventually(lambda: len(acquired()) >= 3))
    assert worker(Shared(leases, memory.cursors, memory.seen, memory.clock), sync, handler,
                  lease_ttl=0.06).pull(KFID)
    assert len(set(acquired())) == 1 and len(acquired()) >= 3
    assert memory.leases.holder(LEASE_PREFIX + KFID) is None     # released at the end


# -- order -------------------------------------------------------------------------------------------------

def test_each_customers_messages_are_handled_in_order_and_never_at_once(shared):
    sync = FakeSync(shared.clock, page_size=20)
    users = [f"u{n}" for n in range(6)]
    sent: Dict[str, List[str]] = {user: [] for user in users}
    for round_ in range(5):
        for user in users:
            sent[user].append(sync.add(user, f"{round_}"))
    got: Dict[str, List[str]] = {user: [] for user in users}
    later_started = {user: threading.Event() for user in users}
    overlaps: List[str] = []
    lock = threading.Lock()

    def check(message: Dict[str, Any]) -> None:
        user = message["external_userid"]
        if message["msgid"] == sent[user][0]:
            # Waits for something that must not happen: a later message of this customer starting meanwhile.
            if later_started[user].wait(0.1):
                overlaps.append(user)
        else:
            later_started[user].set()
        with lock:
            got[user].append(message["msgid"])
    worker(shared, sync, Recorder(check), handlers=8).pull(KFID)
    assert overlaps == []
    assert got == sent


def test_different_customers_are_handled_at_the_same_time(memory):
    sync = FakeSync(memory.clock)
    sync.add("alice")
    sync.add("bob")
    bob_in = threading.Event()
    waited: List[bool] = []

    def alice_waits_for_bob(message: Dict[str, Any]) -> None:
        if message["external_userid"] == "alice":
            waited.append(bob_in.wait(JOIN))
        else:
            bob_in.set()
    worker(memory, sync, Recorder(alice_waits_for_bob), handlers=2).pull(KFID)
    assert waited == [True]


def test_by_default_as_many_customers_as_there_are_handler_threads_wait_on_wecom_at_once(memory):
    """A handler mostly waits on WeCom's answer: a burst of customers must not queue behind a few threads."""
    sync = FakeSync(memory.clock, page_size=1000)
    for number in range(HANDLERS):
        sync.add(f"customer{number}")
    all_in = threading.Barrier(HANDLERS, timeout=JOIN)   # broken unless every customer's handler runs at once
    puller = worker(memory, sync, Recorder(lambda message: all_in.wait()))
    assert puller.handlers == HANDLERS >= 32
    assert puller.pull(KFID)
    assert puller.stats().failed == 0 and puller.stats().handled == HANDLERS
    puller.shutdown()


@pytest.mark.parametrize("message, customer", [
    ({"external_userid": "wmA"}, "wmA"),
    ({"msgtype": "event", "event": {"event_type": "enter_session", "external_userid": "wmB"}}, "wmB"),
    ({"msgtype": "event", "event": {"event_type": "servicer_status_change", "servicer_userid": "zhangsan"}}, ""),
    ({"external_userid": None, "event": "not a dict"}, ""),
], ids=["message", "event", "no customer", "malformed"])
def test_customer_of(message, customer):
    assert customer_of(message) == customer


# -- the first run -----------------------------------------------------------------------------------------

def test_a_first_run_skips_history_but_handles_the_customer_writing_now(shared):
    sync = FakeSync(shared.clock)
    for _ in range(5):
        sync.add("old", age=3600)
    recent = [sync.add("new", age=10), sync.add("new", age=0)]
    cursors = Watched(shared.cursors)
    handler = Recorder()
    puller = worker(Shared(shared.leases, cursors, shared.seen, shared.clock), sync, handler, skip_history=True)
    puller.pull(KFID)
    assert handler.handled == recent
    # Stored once the history is behind: a crash before that skips the history again.
    assert cursors.calls == [("put", KFID, "c7")]
    assert puller.stats().skipped == 5
    later = sync.add("old", age=3600)   # not history any more: a stored cursor means every message counts
    puller.pull(KFID)
    assert handler.handled == [*recent, later]


def test_without_skip_history_a_first_run_handles_everything(memory):
    sync = FakeSync(memory.clock)
    ids = [sync.add("old", age=86400) for _ in range(4)]
    handler = Recorder()
    worker(memory, sync, handler, skip_history=False).pull(KFID)
    assert handler.handled == ids


# -- errors ------------------------------------------------------------------------------------------------

def test_an_expired_callback_token_is_dropped_and_the_page_fetched_without_it(memory, caplog):
    sync = FakeSync(memory.clock)
    ids = [sync.add("u1") for _ in range(4)]
    handler = Recorder()
    with caplog.at_level(logging.INFO, logger="kf_plugin.wecom.puller"):
        worker(memory, sync, handler).pull(KFID, "T-expired")
    assert [(cursor, token) for _, cursor, token, _ in sync.calls] == [
        (None, "T-expired"), (None, None), ("c3", None)]
    assert handler.handled == ids
    assert "refused the callback token" in caplog.text
    assert "T-expired" not in caplog.text


def test_a_valid_token_is_used_for_every_page(memory):
    sync = FakeSync(memory.clock)
    for _ in range(4):
        sync.add("u1")
    worker(memory, sync, Recorder()).pull(KFID, "T-valid")
    assert [token for *_, token, _ in sync.calls] == ["T-valid", "T-valid"]


def test_a_failing_page_is_retried_with_backoff_and_the_cursor_untouched(memory):
    sync = FakeSync(memory.clock)
    ids = [sync.add("u1") for _ in range(4)]
    delays: List[float] = []
    stored: List[Optional[str]] = []
    sync.failures = [WeChatAPIError(-1, "system busy"), OSError("connection reset"), WeChatAPIError(45009)]
    handler = Recorder()
    puller = worker(memory, sync, handler, sleep=lambda s: (delays.append(s), stored.append(memory.cursors.get(KFID))))
    puller.pull(KFID)
    assert delays == [1.0, 2.0, 4.0]
    assert stored == [None, None, None]
    assert handler.handled == ids
    assert puller.stats().errors == 3


def test_a_page_failing_past_the_retries_ends_the_pull_keeping_the_cursor(memory):
    sync = FakeSync(memory.clock)
    for _ in range(4):
        sync.add("u1")
    puller = worker(memory, sync, Recorder(), retries=2)
    sync.page_size = 3
    puller.pull(KFID)
    sync.add("u1")
    sync.failures = [OSError("down")] * 3
    with pytest.raises(OSError):
        puller.pull(KFID)
    assert memory.cursors.get(KFID) == "c4"
    assert memory.leases.holder(LEASE_PREFIX + KFID) is None


def test_backoff_doubles_up_to_its_cap(memory):
    sync = FakeSync(memory.clock)
    sync.failures = [OSError("down")] * 6
    delays: List[float] = []
    worker(memory, sync, Recorder(), retries=6, max_backoff=5.0, sleep=delays.append).pull(KFID)
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_a_handler_exception_is_logged_counted_and_not_retried(memory, caplog):
    sync = FakeSync(memory.clock)
    ids = [sync.add("u1") for _ in range(3)]

    def fail_on_second(message: Dict[str, Any]) -> None:
        if message["msgid"] == ids[1]:
            raise ValueError("the bot broke")
    handler = Recorder(fail_on_second)
    puller = worker(memory, sync, handler)
    with caplog.at_level(logging.ERROR):
        puller.pull(KFID)
    assert handler.handled == [ids[0], ids[2]]
    assert puller.stats().failed == 1 and puller.stats().handled == 3
    assert f"the handler failed on WeCom message {ids[1]}" in caplog.text
    memory.cursors.put(KFID, "c0")   # even a replay of the page does not run it again
    puller.pull(KFID)
    assert handler.handled == [ids[0], ids[2]]
    assert puller.stats().duplicates == 3


# -- notify ------------------------------------------------------------------------------------------------

def test_notify_during_a_pull_makes_it_pull_again(memory, stop_all):
    sync = FakeSync(memory.clock, page_size=10)
    first = sync.add("u1")
    inside, release = threading.Event(), threading.Event()
    handler = Recorder(lambda message: message["msgid"] == first and (inside.set(), release.wait(JOIN)))
    puller = worker(memory, sync, handler, sleep=None)
    stop_all(puller)
    puller.notify(KFID, "T-valid")
    assert inside.wait(JOIN)          # the only page (has_more 0) is being handled
    later = sync.add("u2")            # arrives after that page was fetched
    puller.notify(KFID, "T-valid")
    pulls = [t for t in threading.enumerate() if t.name == f"kf-wecom-pull-{KFID}"]
    assert len(pulls) == 1            # one background pull an account
    release.set()
    assert eventually(lambda: not puller.busy(KFID))
    assert handler.handled == [first, later]


def test_a_notify_while_another_worker_pulls_waits_for_its_lease(memory, stop_all):
    sync = FakeSync(memory.clock)
    ids = [sync.add("u1")]
    memory.leases.acquire(LEASE_PREFIX + KFID, "another-worker", 30)
    waits: List[float] = []

    def other_worker_finishes(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            memory.leases.release(LEASE_PREFIX + KFID, "another-worker")
    handler = Recorder()
    puller = worker(memory, sync, handler, poll=0.5, sleep=other_worker_finishes)
    stop_all(puller)
    puller.notify(KFID)
    assert eventually(lambda: not puller.busy(KFID))
    assert waits == [0.5, 0.5, 0.5]
    assert handler.handled == ids


def test_a_failed_background_pull_is_logged_and_the_next_notify_tries_again(memory, stop_all, caplog):
    sync = FakeSync(memory.clock)
    ids = [sync.add("u1")]
    sync.failures = [OSError("down")] * 2
    handler = Recorder()
    puller = worker(memory, sync, handler, retries=1)
    stop_all(puller)
    with caplog.at_level(logging.ERROR):
        puller.notify(KFID)
        assert eventually(lambda: not puller.busy(KFID))
    assert "the next callback tries again" in caplog.text
    puller.notify(KFID)
    assert eventually(lambda: not puller.busy(KFID))
    assert handler.handled == ids


def test_shutdown_stops_after_the_current_page_and_ignores_later_news(memory):
    sync = FakeSync(memory.clock, page_size=2)
    ids = [sync.add("u1") for _ in range(6)]
    inside, release = threading.Event(), threading.Event()
    handler = Recorder(lambda message: message["msgid"] == ids[0] and (inside.set(), release.wait(JOIN)))
    puller = worker(memory, sync, handler, sleep=None)
    puller.notify(KFID)
    assert inside.wait(JOIN)
    ended: List[bool] = []
    stopper = threading.Thread(target=lambda: ended.append(puller.shutdown(JOIN)))
    stopper.start()
    assert eventually(lambda: puller.stopping)
    release.set()
    stopper.join(JOIN)
    assert ended == [True]
    assert handler.handled == ids[:2]
    assert memory.cursors.get(KFID) == "c2"
    puller.notify(KFID)
    assert not puller.busy(KFID)
