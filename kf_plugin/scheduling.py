"""Background jobs on APScheduler: the bot's own scheduler, or one kf_plugin starts.

Nothing starts at import, nor in init_app: :meth:`Jobs.ensure_started` runs on
the first request a process serves. So the Werkzeug reloader's parent (which
serves none) never runs jobs, and gunicorn workers forked from a ``--preload``
master each start their own scheduler instead of inheriting a dead one.
"""
from __future__ import annotations

import atexit
import datetime as dt
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler

__all__ = ["Jobs"]

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
        """Start the jobs in this process if they are not running yet (cheap when they are)."""
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            if self._given is None:
                # After a fork the parent's scheduler object has no thread behind it: make a new one.
                self._own = BackgroundScheduler(daemon=True)
            for job_id, spec in self._specs.items():
                self._schedule(self.scheduler, job_id, spec)
            if self._own is not None:
                self._own.start()
                atexit.register(self.shutdown)
            self._pid = os.getpid()

    @staticmethod
    def _schedule(scheduler: BaseScheduler, job_id: str, spec: _Spec) -> None:
        scheduler.add_job(spec.func, "interval", seconds=spec.seconds, id=job_id, name=job_id,
                          replace_existing=True, coalesce=True, max_instances=1,
                          misfire_grace_time=max(1, int(spec.seconds)),
                          next_run_time=dt.datetime.now(dt.timezone.utc))

    def shutdown(self) -> None:
        """Stop the scheduler kf_plugin started (never the bot's own)."""
        own = self._own
        if own is not None and own.running:
            own.shutdown(wait=False)
