"""The WeCom pull: after a ``kf_msg_or_event`` callback, fetch the kf account's new messages with ``sync_msg``.

One pull per kf account (open_kfid) at a time across every worker: a pull holds a lease (the
:class:`~kf_plugin.state.base.TokenStore` leases the token renewal uses), renewed while it runs, so a worker
that dies blocks the account for one lease at most. A pull fetches pages until ``has_more`` is 0 and stores the
cursor after each page is handled: a crash replays at most that page, and the msgids handled (a
:class:`~.state.SeenStore`) make the replay harmless. A message is recorded as handled once its handler
*returned* — so a worker killed inside a handler leaves that message to be replayed — and also when the handler
raised: the exception is logged and counted, and the message is not retried, because holding the cursor back
for it would stall every later message of the account, and a reply to an old message is worse than none.

Within a page, messages are grouped by customer (``external_userid``): each customer's messages run in order on
one handler thread, different customers in parallel, and the next page starts when the whole page is done, so
a customer's messages are never handled concurrently or out of order (the unit is the conversation: one
customer with one kf account).

A first run (no stored cursor) would get every message of the last 3 days: with ``skip_history`` it pages
through them without handling any but the ``recent`` ones (sent in the last ``recent`` seconds — the message
whose callback started the bot, say) and stores the cursor only at the end. sync_msg has no way to start at
the newest message: paging is the only way to the end, and skipping by ``send_time`` keeps the customer who is
waiting right now.
"""
from __future__ import annotations

import concurrent.futures
import logging
import os
import secrets
import socket
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Protocol, Sequence

from ..errors import WeChatAPIError
from ..state.base import TokenStore
from .state import CursorStore, MemorySeenStore, SeenStore

__all__ = ["Puller", "SyncPage", "PullStats", "INVALID_SYNC_TOKEN", "LEASE_PREFIX", "HANDLERS", "customer_of"]

log = logging.getLogger(__name__)

#: sync_msg's errcode for a callback token it no longer accepts ("invalid msg token": expired after its
#: 10 minutes, or already used).
INVALID_SYNC_TOKEN = 95007
#: The name of an account's pull lease in the TokenStore: ``wecom-pull:{open_kfid}``.
LEASE_PREFIX = "wecom-pull:"
#: Threads handling different customers' messages at once, by default. A handler mostly waits — on WeCom's
#: answer to its send_msg, on Redis — so threads, not cores, bound how many customers are answered at once:
#: with a few threads a burst of customers queues behind WeCom's round trip.
HANDLERS = 32


class SyncPage(Protocol):
    """What ``sync`` returns: one page of ``sync_msg`` (the API module's page fits it)."""

    @property
    def next_cursor(self) -> Optional[str]: ...

    @property
    def has_more(self) -> int: ...

    @property
    def messages(self) -> Sequence[Mapping[str, Any]]: ...


#: ``sync(open_kfid, cursor, token, limit)``: one page of sync_msg.
Sync = Callable[[str, Optional[str], Optional[str], int], SyncPage]
#: ``handle(message)``: one message (or event item) of ``msg_list``, as WeCom gives it.
Handler = Callable[[Dict[str, Any]], None]


@dataclass(frozen=True)
class PullStats:
    """Counters since the puller was made: pages fetched, messages handled (their handler returned or raised),
    ``failed`` (their handler raised), ``duplicates`` (skipped: already handled), ``skipped`` (history of a first
    run), ``errors`` (sync_msg calls that failed)."""

    pages: int = 0
    handled: int = 0
    failed: int = 0
    duplicates: int = 0
    skipped: int = 0
    errors: int = 0


class _LeaseLost(Exception):
    """The pull's lease lapsed and another worker took the account over."""


@dataclass
class _Run:
    """One pull in progress: its account, lease and the callback token it uses (dropped once refused)."""

    open_kfid: str
    lease: str
    owner: str
    token: Optional[str]


@dataclass
class _Pending:
    """An account's background pull in this process: ``dirty`` when a notify came since the pull began."""

    token: Optional[str]
    dirty: bool = True
    thread: Optional[threading.Thread] = field(default=None, repr=False)


def customer_of(message: Mapping[str, Any]) -> str:
    """The customer a message belongs to: its ``external_userid`` (an event's own one when the top level has
    none); ``""`` for items of no customer (a servicer's status change)."""
    user = message.get("external_userid")
    if not user:
        event = message.get("event")
        user = event.get("external_userid") if isinstance(event, Mapping) else None
    return user if isinstance(user, str) else ""


class Puller:
    """Pulls each kf account's messages in the background after a callback and hands them to ``handle``.

    ``sync(open_kfid, cursor, token, limit)`` fetches one page (e.g. ``WeComKf.sync_msg``); ``cursors`` keeps
    each account's position; ``leases`` (a TokenStore: one for the corp, shared by its workers) holds the pull
    leases; ``handle(message)`` gets each message as WeCom gives it (a dict). ``seen`` remembers the msgids
    handled (memory by default: give a Redis one to several workers). ``lease_ttl``: seconds a pull's lease
    lasts unless renewed (it is renewed every third of that). ``limit``: messages a page (at most 1000).
    ``handlers``: threads handling different customers' messages at once. A failing page is retried
    ``retries`` times, after ``backoff`` seconds doubling up to ``max_backoff`` (and to half the lease, renewed
    after each wait), the cursor untouched; then the pull gives up until the next callback. ``poll``: seconds
    between tries for a lease another worker holds. ``clock``: unix time (for ``recent``); ``sleep(seconds)``
    waits (by default until :meth:`shutdown`).
    """

    def __init__(self, sync: Sync, cursors: CursorStore, leases: TokenStore, handle: Handler, *,
                 seen: Optional[SeenStore] = None, skip_history: bool = True, recent: float = 120.0,
                 clock: Callable[[], float] = time.time, lease_ttl: float = 30.0, limit: int = 1000,
                 handlers: int = HANDLERS, retries: int = 5, backoff: float = 1.0, max_backoff: float = 15.0,
                 poll: float = 1.0, sleep: Optional[Callable[[float], None]] = None):
        self.sync, self.cursors, self.leases, self.handle = sync, cursors, leases, handle
        self.seen: SeenStore = seen if seen is not None else MemorySeenStore()
        self.skip_history, self.recent, self.clock = skip_history, recent, clock
        self.lease_ttl, self.limit, self.handlers = lease_ttl, limit, handlers
        self.retries, self.backoff, self.max_backoff, self.poll = retries, backoff, max_backoff, poll
        self._stopping = threading.Event()
        self._sleep = sleep if sleep is not None else self._stopping.wait
        self._lock = threading.Lock()
        self._counts: Dict[str, int] = {}
        self._pid = os.getpid()
        self._pending: Dict[str, _Pending] = {}
        self._pool: Optional[concurrent.futures.ThreadPoolExecutor] = None

    # -- the callback side ---------------------------------------------------------------------------------

    def notify(self, open_kfid: str, token: Optional[str] = None) -> None:
        """A callback said ``open_kfid`` has news: pull it in the background (returns at once).

        At most one background pull an account in this process: a notify while one runs makes it pull again
        when it is done (nothing that arrived meanwhile is missed). A pull that finds the account leased by
        another worker waits for that lease, then pulls from the cursor that worker stored.
        """
        with self._lock:
            if self._stopping.is_set():
                log.info("the WeCom puller is shut down; ignoring news for %s", open_kfid)
                return
            self._after_fork()
            pending = self._pending.get(open_kfid)
            if pending is not None:
                pending.dirty = True
                pending.token = token or pending.token
                return
            pending = self._pending[open_kfid] = _Pending(token)
            pending.thread = threading.Thread(target=self._background, args=(open_kfid, pending),
                                              name=f"kf-wecom-pull-{open_kfid}", daemon=True)
            pending.thread.start()

    def busy(self, open_kfid: str) -> bool:
        """Whether a background pull of ``open_kfid`` is running (or waiting for the lease) in this process."""
        with self._lock:
            return open_kfid in self._pending

    def _background(self, open_kfid: str, pending: _Pending) -> None:
        try:
            while True:
                with self._lock:
                    if not pending.dirty or self._stopping.is_set():
                        del self._pending[open_kfid]
                        return
                    pending.dirty, token = False, pending.token
                self._pull_when_free(open_kfid, token)
        except BaseException:  # the thread is being torn down: let a later notify start another one
            with self._lock:
                self._pending.pop(open_kfid, None)
            raise

    def _pull_when_free(self, open_kfid: str, token: Optional[str]) -> None:
        while not self._stopping.is_set():
            try:
                if self.pull(open_kfid, token):
                    return
            except Exception:  # the pull gave up: logged here, retried at the next callback
                log.exception("pulling the WeCom messages of %s failed; the next callback tries again", open_kfid)
                return
            self._sleep(self.poll)

    # -- one pull ---------------------------------------------------------------------------------------------

    def pull(self, open_kfid: str, token: Optional[str] = None) -> bool:
        """Pull ``open_kfid``'s pages until ``has_more`` is 0, in this thread, handling every new message.

        ``False`` (at once) when another pull holds the account's lease. A lease lost on the way (it lapsed
        while a handler or sync_msg outlasted it) ends that pass without storing its cursor; the pull then takes
        the lease again and goes on from the stored cursor (the page is replayed, its handled messages skipped)
        — unless another worker has the lease now, which then pulls instead.

        :raises Exception: what ``sync`` raised when a page failed ``retries`` times after the first try; what
            the cursor store raised. A handler's exception is logged and counted, never raised; a
            ``BaseException`` (``SystemExit``, ``KeyboardInterrupt``) from a handler propagates.
        """
        taken = False
        while not (taken and self._stopping.is_set()):
            run = _Run(open_kfid, LEASE_PREFIX + open_kfid, self._owner(), token)
            if not self.leases.acquire(run.lease, run.owner, self.lease_ttl):
                return taken
            taken = True
            try:
                self._pull_pages(run)
                return True
            except _LeaseLost:
                log.warning("the pull lease of %s lapsed (a handler or sync_msg outlasted it); its page is left "
                            "to be replayed, its handled messages skipped", open_kfid)
                token = run.token
            finally:
                self.leases.release(run.lease, run.owner)
        return True

    def _pull_pages(self, run: _Run) -> None:
        cursor = self.cursors.get(run.open_kfid)
        first_run = cursor is None and self.skip_history
        if first_run:
            log.info("first pull of %s: skipping its history, handling only messages of the last %.0f s",
                     run.open_kfid, self.recent)
        while True:
            page = self._fetch(run, cursor)
            self._count("pages")
            self._handle_page(run, page.messages, first_run)
            self._renew(run)
            stuck = bool(page.has_more) and (not page.next_cursor or page.next_cursor == cursor)
            cursor = page.next_cursor or cursor
            if cursor and (not first_run or not page.has_more or stuck):
                self.cursors.put(run.open_kfid, cursor)
            if stuck:
                log.error("sync_msg of %s said has_more without a new cursor; stopping this pull", run.open_kfid)
            if stuck or not page.has_more or self._stopping.is_set():
                return

    def _fetch(self, run: _Run, cursor: Optional[str]) -> SyncPage:
        """One page, retried with backoff when it fails; the lease renewed after each wait."""
        failures = 0
        while True:
            try:
                return self._sync_once(run, cursor)
            except Exception as exc:  # network errors and errcodes alike: the page is fetched again
                failures += 1
                self._count("errors")
                if failures > self.retries or self._stopping.is_set():
                    raise
                delay = min(self.max_backoff, self.backoff * 2 ** (failures - 1), self.lease_ttl / 2)
                log.warning("sync_msg of %s failed (%s); trying again in %.1f s, the cursor untouched",
                            run.open_kfid, exc, delay)
                self._sleep(delay)
                self._renew(run)

    def _sync_once(self, run: _Run, cursor: Optional[str]) -> SyncPage:
        try:
            return self.sync(run.open_kfid, cursor, run.token, self.limit)
        except WeChatAPIError as exc:
            if run.token is None or exc.errcode != INVALID_SYNC_TOKEN:
                raise
        log.info("sync_msg refused the callback token of %s (%d: expired or used); pulling without it",
                 run.open_kfid, INVALID_SYNC_TOKEN)
        run.token = None
        return self.sync(run.open_kfid, cursor, None, self.limit)

    def _holds(self, run: _Run) -> bool:
        """Extend the pull's lease if it still holds it. ``False`` once it lapsed, even if nobody took it (or
        another worker took it and has released it since): a pull that lost its lease stores no cursor."""
        return self.leases.holder(run.lease) == run.owner and self.leases.acquire(run.lease, run.owner,
                                                                                  self.lease_ttl)

    def _renew(self, run: _Run) -> None:
        if not self._holds(run):
            raise _LeaseLost(run.open_kfid)

    # -- handling ---------------------------------------------------------------------------------------------

    def _handle_page(self, run: _Run, messages: Sequence[Mapping[str, Any]], first_run: bool) -> None:
        """Hand the page's messages over, each customer's in order on one thread; return when all are done."""
        by_customer: "OrderedDict[str, List[Mapping[str, Any]]]" = OrderedDict()
        for message in messages:
            if first_run and not self._is_recent(message):
                self._count("skipped")
                continue
            by_customer.setdefault(customer_of(message), []).append(message)
        if not by_customer:
            return
        pool = self._executor()
        futures = [pool.submit(self._handle_in_order, run.open_kfid, group) for group in by_customer.values()]
        lost = False
        pending = set(futures)
        while pending:
            _, pending = concurrent.futures.wait(pending, timeout=self.lease_ttl / 3)
            if pending and not lost:
                lost = not self._holds(run)
        for future in futures:
            error = future.exception()
            if error is not None:  # a BaseException the handler let out, or a store failing: the page is not done
                raise error
        if lost:
            raise _LeaseLost(run.open_kfid)

    def _handle_in_order(self, open_kfid: str, messages: List[Mapping[str, Any]]) -> None:
        for message in messages:
            self._handle_one(open_kfid, message)

    def _handle_one(self, open_kfid: str, message: Mapping[str, Any]) -> None:
        msgid = message.get("msgid")
        msgid = msgid if isinstance(msgid, str) and msgid else None
        if msgid is not None and self.seen.seen(msgid):
            self._count("duplicates")
            return
        try:
            self.handle(dict(message))
        except Exception:  # logged and counted; the message is recorded as handled all the same (see the module)
            self._count("failed")
            log.exception("the handler failed on WeCom message %s of %s; it is not retried", msgid, open_kfid)
        self._count("handled")
        if msgid is not None and not self.seen.first_time(msgid):
            log.warning("WeCom message %s of %s was handled twice: two workers pulled the account at once "
                        "(a lease lapsed while a handler ran)", msgid, open_kfid)

    def _is_recent(self, message: Mapping[str, Any]) -> bool:
        sent = message.get("send_time")
        return isinstance(sent, (int, float)) and sent >= self.clock() - self.recent

    # -- the process --------------------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        """Whether :meth:`shutdown` was called."""
        return self._stopping.is_set()

    def stats(self) -> PullStats:
        """The counters now."""
        with self._lock:
            return PullStats(**self._counts)

    def shutdown(self, timeout: float = 10.0) -> bool:
        """Stop: no new pull starts; running ones stop after their current page (its cursor stored). Waits up to
        ``timeout`` seconds for them; whether every one ended."""
        self._stopping.set()
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = [p.thread for p in self._pending.values() if p.thread is not None]
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        ended = not any(thread.is_alive() for thread in threads)
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=ended)
        return ended

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            self._after_fork()
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(max(1, self.handlers),
                                                                   thread_name_prefix="kf-wecom-handle")
            return self._pool

    def _after_fork(self) -> None:
        """A forked child has none of its parent's threads: forget their pulls and their pool (under the lock)."""
        if self._pid != os.getpid():
            self._pid, self._pending, self._pool = os.getpid(), {}, None

    def _owner(self) -> str:
        """A lease owner unique to one pull: two pulls of one account in this process exclude each other too."""
        return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + n
