"""Background jobs on APScheduler: the bot's own scheduler, or one kf_plugin starts.

Nothing starts at import, nor in init_app: :meth:`Jobs.ensure_started` runs on
the first request a process serves. So the Werkzeug reloader's parent (which
serves none) never runs jobs, and gunicorn workers forked from a ``--preload``
master each start their own scheduler instead of inheriting a dead one.

The jobs are bound methods of live objects (a client, a cache): they cannot be
pickled, so they go to a memory job store of their own (alias ``kf_plugin``),
whatever the bot's scheduler keeps its own jobs in.

The scheduler kf_plugin starts runs its jobs on daemon threads of its own
(:class:`~kf_plugin.background.Background`), not on a ``concurrent.futures``
pool: at exit the interpreter closes those pools to new work before the
``atexit`` handlers run, and a job falling due in between would be refused
("cannot schedule new futures after interpreter shutdown", logged with a
traceback). Ours take work until :meth:`Jobs.shutdown`, an ``atexit`` handler,
has stopped the scheduler; and an exit never waits for a job still talking to a
slow API.
"""
from __future__ import annotations

import atexit
import datetime as dt
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from apscheduler.executors.pool import BasePoolExecutor
from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler

from .background import Background

__all__ = ["Jobs", "JOBSTORE", "JOB_THREADS"]

#: The alias of the memory job store kf_plugin's jobs are kept in.
JOBSTORE = "kf_plugin"
#: Threads of the scheduler kf_plugin starts. The jobs are short (a token check, a Redis read, an API call
#: within KF_API_TIMEOUT): while a slow API holds one thread, the others keep the other jobs on time.
JOB_THREADS = 4

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Spec:
    func: Callable[[], Any]
    seconds: float


class _JobPool(BasePoolExecutor):
    """The executor of the scheduler kf_plugin starts: a :class:`Background` pool of :data:`JOB_THREADS`.

    Once it is shut down, runs still handed to it (the scheduler's loop ending its last round) are dropped
    quietly: the pool would refuse them, and the scheduler would log each refusal as a failed job.
    """

    def __init__(self) -> None:
        super().__init__(Background(JOB_THREADS, name="kf-jobs"))
        self._stopped = False

    def _do_submit_job(self, job: Job, run_times: List[dt.datetime]) -> None:
        if not self._stopped:   # the scheduler calls this holding self._lock, which shutdown takes
            super()._do_submit_job(job, run_times)

    def shutdown(self, wait: bool = True) -> None:
        if self._lock is not None:   # set when the scheduler starts
            with self._lock:
                self._stopped = True
        super().shutdown(wait)


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
        self._stopped = False
        self._lock = threading.Lock()

    @property
    def scheduler(self) -> Optional[BaseScheduler]:
        """The scheduler the jobs run on in this process (``None`` before :meth:`ensure_started`)."""
        return self._given if self._given is not None else self._own

    def add(self, job_id: str, func: Callable[[], Any], seconds: float) -> None:
        """Run ``func`` every ``seconds`` (and once at start); replaces a job with the same id."""
        with self._lock:
            self._specs[job_id] = _Spec(func, seconds)
            if self._pid == os.getpid() and not self._stopped:
                self._schedule(self.scheduler, job_id, self._specs[job_id])

    def ensure_started(self) -> None:
        """Start the jobs in this process if they are not running yet (cheap when they are).

        Never raises: it runs on a push's path, and the jobs only renew ahead of time what the
        request path fetches on demand. A failure is logged once per process and not retried.
        After :meth:`shutdown` nothing starts.
        """
        if self._pid == os.getpid() or self._stopped:
            return
        with self._lock:
            if self._pid == os.getpid() or self._stopped:
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
            self._own = BackgroundScheduler(daemon=True, executors={"default": _JobPool()})
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
        """Stop the jobs in this process: stop the scheduler kf_plugin started, or take kf_plugin's jobs off
        the bot's scheduler (which stays the bot's to stop).

        Jobs added or started afterwards do not run. It is also the ``atexit`` handler of the scheduler
        kf_plugin started; calling it again does nothing. It does not wait for a run in progress.
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            scheduled = self._pid == os.getpid()
        atexit.unregister(self.shutdown)   # and a stopped plugin is no longer kept alive by the handler
        own = self._own
        if own is not None and own.running:
            own.shutdown(wait=False)   # outside the lock: a job running now may be adding a job
        elif self._given is not None and scheduled:
            for job_id in list(self._specs):
                try:
                    self._given.remove_job(job_id, jobstore=JOBSTORE)
                except JobLookupError:   # the bot's scheduler has been shut down, or has lost it
                    pass
