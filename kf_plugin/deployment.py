"""How many worker processes serve this app, to warn when they would keep state apart.

Without ``KF_REDIS_URL`` each process has its own duplicate-push memory: a WeChat retry that reaches
another worker runs the handlers again. Detected: gunicorn (its configuration, found on the call stack
while it loads the app), uWSGI (``uwsgi.numproc``), and ``WEB_CONCURRENCY`` (which gunicorn and several
platforms read as the worker count).
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Any, Mapping, Optional

__all__ = ["worker_count", "warn_if_workers_do_not_share"]

log = logging.getLogger(__name__)
_warned_in: Optional[int] = None   # the process that warned already


def _gunicorn_workers() -> Optional[int]:
    # gunicorn's arbiter sets SERVER_SOFTWARE; its application (loading the app, --preload or not) and
    # its workers (serving a request) hold the parsed configuration as ``self.cfg``.
    if not os.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn/"):
        return None
    frame: Any = sys._getframe(1)
    while frame is not None:
        cfg = getattr(frame.f_locals.get("self"), "cfg", None)
        if cfg is not None and type(cfg).__module__.startswith("gunicorn.") and isinstance(cfg.workers, int):
            return cfg.workers
        frame = frame.f_back
    return None


def _uwsgi_workers() -> Optional[int]:
    uwsgi = sys.modules.get("uwsgi")   # importable only inside a uWSGI process
    numproc = getattr(uwsgi, "numproc", None)
    return numproc if isinstance(numproc, int) else None


def worker_count(environ: Optional[Mapping[str, str]] = None) -> Optional[int]:
    """The number of worker processes the server runs, or ``None`` when it cannot be told."""
    environ = os.environ if environ is None else environ
    for found in (_gunicorn_workers(), _uwsgi_workers()):
        if found is not None:
            return found
    declared = environ.get("WEB_CONCURRENCY", "")
    return int(declared) if declared.isdigit() else None


def warn_if_workers_do_not_share(redis_url: Optional[str]) -> None:
    """Log one warning per process when several workers run without ``KF_REDIS_URL``."""
    global _warned_in
    if redis_url or _warned_in == os.getpid():
        return
    workers = worker_count()
    if workers is not None and workers > 1:
        _warned_in = os.getpid()
        log.warning("%d worker processes serve this app but KF_REDIS_URL is not set: each keeps its own "
                    "memory of pushes, so a WeChat retry that reaches another worker runs the handlers again "
                    "(and the access token and 48-hour window are not shared); set KF_REDIS_URL", workers)
