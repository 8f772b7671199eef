"""Work done after the push is answered (notices, session hooks, late replies), with a bounded backlog.

It has threads of its own, apart from the handlers': a slow WeChat API can fill this
pool, but never makes a push wait. While the API is too slow to keep up, work beyond
``max_pending`` is refused (a warning in the log) instead of piling up in memory. The
threads are daemons started on first use in each process: work still queued when the
process exits is dropped rather than holding the exit (a worker restart must not wait
minutes for notices to a slow API), and a forked worker starts threads of its own.
"""
from __future__ import annotations

import concurrent.futures
import logging
import os
import queue
import threading
from typing import Any, Callable, List, Optional

from .errors import KfError

__all__ = ["Background"]

log = logging.getLogger(__name__)


class Background(concurrent.futures.Executor):
    """``workers`` daemon threads working through at most ``max_pending`` queued tasks."""

    def __init__(self, workers: int, max_pending: int = 1000, name: str = "kf-background"):
        self._workers = max(1, workers)
        self._name = name
        self._queue: "queue.Queue[Any]" = queue.Queue(maxsize=max_pending)
        self._threads: List[threading.Thread] = []
        self._pid: Optional[int] = None
        self._refusing = False
        self._closed = False
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        """Tasks queued and not started yet."""
        return self._queue.qsize()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> "concurrent.futures.Future[Any]":
        """Queue ``fn(*args, **kwargs)``; refused (a future holding a :class:`KfError`) when the backlog is full
        or the pool was shut down, never raising: a push's path submits here."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._start_threads()
        with self._lock:   # never between shutdown's last look and its stop signals: that task would never run
            refusal = self._enqueue((future, fn, args, kwargs))
        if refusal is not None:
            future.set_exception(KfError(refusal))
        return future

    def _enqueue(self, task: Any) -> Optional[str]:
        """Queue ``task`` (the lock held); why it was refused, if it was."""
        if self._closed:   # the threads stop, or have stopped: the task would wait forever
            return f"the background pool {self._name!r} was shut down"
        try:
            self._queue.put_nowait(task)
        except queue.Full:
            if not self._refusing:
                log.warning("%d background tasks are waiting (is the WeChat API slow?); refusing new ones until "
                            "some finish", self._queue.maxsize)
            self._refusing = True
            return f"the background queue is full ({self._queue.maxsize} tasks waiting)"
        self._refusing = False
        return None

    def _start_threads(self) -> None:
        if self._pid == os.getpid() or self._closed:
            return
        with self._lock:
            if self._pid == os.getpid() or self._closed:
                return
            self._threads = [threading.Thread(target=self._work, name=f"{self._name}-{n}", daemon=True)
                             for n in range(self._workers)]
            for thread in self._threads:
                thread.start()
            self._pid = os.getpid()

    def _work(self) -> None:
        while True:
            task = self._queue.get()
            if task is None:
                return
            future, fn, args, kwargs = task
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # handed to whoever holds the future
                future.set_exception(exc)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the threads after the tasks already queued (or cancel those with ``cancel_futures``).

        Tasks submitted from then on are refused. Calling it again only waits (``wait``) or cancels again.
        """
        with self._lock:
            stops = 0 if self._closed else len(self._threads)   # one stop signal per thread, sent once
            self._closed = True
            if cancel_futures:
                stops += self._cancel_queued()
            for _ in range(stops):
                try:
                    self._queue.put_nowait(None)
                except queue.Full:  # the threads are daemons: they end with the process anyway
                    break
        if wait:
            for thread in self._threads:
                thread.join()

    def _cancel_queued(self) -> int:
        """Cancel every queued task; how many stop signals were taken out of the queue with them."""
        signals = 0
        while True:
            try:
                task = self._queue.get_nowait()
            except queue.Empty:
                return signals
            if task is None:
                signals += 1
            else:
                task[0].cancel()
