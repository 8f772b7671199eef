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
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        """Tasks queued and not started yet."""
        return self._queue.qsize()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> "concurrent.futures.Future[Any]":
        self._start_threads()
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            self._queue.put_nowait((future, fn, args, kwargs))
            self._refusing = False
        except queue.Full:
            if not self._refusing:
                log.warning("%d background tasks are waiting (is the WeChat API slow?); refusing new ones until "
                            "some finish", self._queue.maxsize)
            self._refusing = True
            future.set_exception(KfError(f"the background queue is full ({self._queue.maxsize} tasks waiting)"))
        return future

    def _start_threads(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
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
        """Stop the threads after the tasks already queued (or cancel those with ``cancel_futures``)."""
        if cancel_futures:
            while True:
                try:
                    task = self._queue.get_nowait()
                except queue.Empty:
                    break
                if task is not None:
                    task[0].cancel()
        for _ in self._threads:
            try:
                self._queue.put_nowait(None)
            except queue.Full:  # the threads are daemons: they end with the process anyway
                break
        if wait:
            for thread in self._threads:
                thread.join()
