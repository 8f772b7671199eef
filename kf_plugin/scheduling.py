"""Background jobs on APScheduler: the bot's own scheduler, or one kf_plugin starts.

Nothing starts at import, nor in init_app: :meth:`Jobs.ensure_started` runs on
the first request a process serves. So the Werkzeug reloader's parent (which
serves none) never runs jobs, and gunicorn workers forked from a ``--preload``
master each start their own scheduler instead of inheriting a dead one.

The jobs are bound methods of live objects (a client, a cache): they cannot be
pickled, so they go to a memory job store of their own (alias ``kf_plugin``),
whatever the bot's scheduler keeps its own jobs in.
"""
from __future__ import annotations

import atexit
import datetime as dt
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler

__all__ = ["Jobs", "JOBSTORE"]

#: The alias of the memory job store kf_plugin's jobs are kept in.
JOBSTORE = "kf_plugin"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Spec:
    func: Callable[[], Any]
    seconds: float


class Jobs:
    """Interval jobs of one plugin.

    ``scheduler``: the host bot's APScheduler scheduler; jobs are added to it
    and it is left to the bot to start and stop. Without one, a
    ``BackgroundScheduler`` is created per process, started on first use and
    shut down at exit.
    """

    def __init__(self, scheduler: Optional[BaseScheduler] = None):
        self._given = scheduler
        self._own: Optional[BackgroundScheduler] = None
        self._specs: Dict[str, _Spec] = {}
        self._pid: Optional[int] = None
        self._lock = threading.Lock()

    @property
    def scheduler(self) -> Optional[BaseScheduler]:
        """The scheduler the jobs run on in this process (``None`` before :meth:`ensure_started`)."""
        return self._given if self._given is not None else self._own

    def add(self, job_id: str, func: Callable[[], Any], seconds: float) -> None:
        """Run ``func`` every ``seconds`` (and once at start); replaces a job with the same id."""
        with self._lock:
            self._specs[job_id] = _Spec(func, seconds)
            if self._pid == os.getpid():
                self._schedule(self.scheduler, job_id, self._specs[job_id])

    def ensure_started(self) -> None:
        """Start the jobs in this process if they are not running yet (cheap when they are).

        Never raises: it runs on a push's path, and the jobs only renew ahead of time what the
        request path fetches on demand. A failure is logged once per process and not retried.
        """
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            try:
                self._start()
            except Exception:  # whatever the bot's scheduler raises, the push must still be answered
                log.exception("kf_plugin's background jobs could not be started in process %d; the access token "
                              "and the online agents are fetched when a push needs them", os.getpid())
            self._pid = os.getpid()

    def _start(self) -> None:
        if self._given is None:
            # After a fork the parent's scheduler object has no thread behind it: make a new one.
            self._own = BackgroundScheduler(daemon=True)
        for job_id, spec in self._specs.items():
            self._schedule(self.scheduler, job_id, spec)
        if self._own is not None:
            self._own.start()
            atexit.register(self.shutdown)

    @staticmethod
    def _schedule(scheduler: BaseScheduler, job_id: str, spec: _Spec) -> None:
        try:
            scheduler.add_jobstore(MemoryJobStore(), JOBSTORE)
        except ValueError:  # this process added it already
            pass
        scheduler.add_job(spec.func, "interval", seconds=spec.seconds, id=job_id, name=job_id, jobstore=JOBSTORE,
                          replace_existing=True, coalesce=True, max_instances=1,
                          misfire_grace_time=max(1, int(spec.seconds)),
                          next_run_time=dt.datetime.now(dt.timezone.utc))

    def shutdown(self) -> None:
        """Stop the scheduler kf_plugin started (never the bot's own)."""
        own = self._own
        if own is not None and own.running:
            own.shutdown(wait=False)
