"""Rules that change while the bot runs: each process re-reads its rule file when the file changes, when the
process gets SIGHUP, or when ``kf-plugin reload`` asks every worker through Redis.

:class:`RuleWatch` does it off the request path, in a background job every ``KF_RULES_WATCH`` seconds: a
``stat`` of the file (modification time and size; the content's SHA-256 decides once they differ), the SIGHUP
flag, and a read of the reload counter in Redis (:mod:`kf_plugin.state.redis_rules`). A file that changed is
validated completely, then put in force in one swap; a bad one is logged with its file, line and rule, recorded
for ``kf-plugin rules status``, and the rules in force stay. The job then writes this worker's report: at once
when it changed, else once a third of its time to live has passed (every other check by default).

The SIGHUP handler only raises a flag (a signal handler runs between two bytecodes of the main thread, which
may hold any lock at that moment), so the job applies it at its next run.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import signal
import socket
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from .errors import KfError
from .loader import load_rules_bytes, read_rule_bytes
from .rules import RuleSet
from .state.redis_rules import RuleVersions, WorkerReport

__all__ = ["RuleFileVersion", "RuleWatch", "install_sighup", "no_rule_file", "read_rule_file", "report_ttl"]

log = logging.getLogger(__name__)

#: A file's modification time (ns) and size, or ``None`` when it cannot be stat'ed.
Stamp = Optional[Tuple[int, int]]
Stat = Callable[[str], Any]


@dataclass(frozen=True)
class RuleFileVersion:
    """A rule file as it was read: its path, the SHA-256 of its bytes, and its stamp taken before the read
    (so a change during the read is seen at the next check)."""

    path: str
    digest: str
    stamp: Stamp


def _stamp(path: str, stat: Stat) -> Stamp:
    try:
        result = stat(path)
    except OSError:
        return None
    return int(result.st_mtime_ns), int(result.st_size)


def read_rule_file(path: str, stat: Stat = os.stat) -> Tuple[RuleSet, RuleFileVersion]:
    """Read and validate the rule file at ``path``: its rules, and which version of the file they are.

    :raises RuleFileError: the file cannot be read or is invalid (each problem with its line and rule).
    """
    stamp = _stamp(path, stat)
    data = read_rule_bytes(path)
    return load_rules_bytes(data, path), RuleFileVersion(path, hashlib.sha256(data).hexdigest(), stamp)


def no_rule_file() -> KfError:
    """The error of a reload asked of rules that were not read from a file."""
    return KfError("there is no rule file to reload: the rules were given in Python; set KF_RULES to the rule "
                   "file (or call kf.load_rules(path)) to load them from a file that can be reloaded")


def report_ttl(every: float) -> float:
    """Seconds a worker's report lives: three watch intervals, and never less than ten seconds."""
    return max(10.0, 3 * every)


class RuleWatch:
    """Keeps one process's rules in step with its rule file (see the module docstring).

    ``apply(rules, version)`` validates the rules against the plugin's apps and puts them in force, raising
    a :class:`KfError` to refuse them. ``channels()`` gives the reload counters to follow (one per app with
    Redis). ``every``: seconds between checks, for the reports' time to live. ``clock`` and ``stat`` are
    replaceable in tests.
    """

    def __init__(self, apply: Callable[[RuleSet, RuleFileVersion], None],
                 channels: Callable[[], List[RuleVersions]] = list, *, every: float = 2.0,
                 clock: Callable[[], float] = time.time, stat: Stat = os.stat):
        self._apply = apply
        self._channels = channels
        self.every = every
        self.clock = clock
        self.stat = stat
        self.version: Optional[RuleFileVersion] = None   # the file in force (None: rules given in Python)
        self.loaded_at: Optional[float] = None
        self.error: Optional[str] = None
        self.error_at: Optional[float] = None
        self.reload = 0                      # the last reload request handled
        self._seen: Dict[str, int] = {}      # each channel's counter as last read
        self._written: Dict[str, Tuple[WorkerReport, float]] = {}   # each channel's report as last written, when
        self._stamp: Stamp = None
        self._signalled = False
        self._redis_failing = False
        self._ran_in: Optional[int] = None   # the process whose job last ran this watch
        self._lock = threading.Lock()        # one check at a time (the job, kf.reload_rules())

    def loaded(self, version: Optional[RuleFileVersion]) -> None:
        """Record that ``version`` (``None``: rules given in Python) was just put in force."""
        self.version = version
        self._stamp = version.stamp if version is not None else None
        self.loaded_at = self.clock()
        self.error = self.error_at = None

    @property
    def running_here(self) -> bool:
        """Whether the watch job runs in this process (it starts on the first request a process serves)."""
        return self._ran_in == os.getpid()

    def signalled(self) -> None:
        """Ask for a reload at the next check (what the SIGHUP handler calls: it only sets a flag)."""
        self._signalled = True

    def reload_now(self) -> Optional[RuleSet]:
        """Re-read the rule file now; the rules put in force, or ``None`` when the file holds the rules in force.

        :raises KfError: there is no rule file (the rules were given in Python).
        :raises RuleFileError: the file is invalid (recorded; the rules in force stay).
        :raises ConfigError: a rule needs the WeChat API that an app has no credentials for (likewise).
        """
        with self._lock:
            return self._reload(self.version.path if self.version is not None else None)

    def tick(self) -> None:
        """One check (the watch job): never raises, whatever the file or Redis do."""
        with self._lock:
            self._ran_in = os.getpid()
            asked = self._take_requests()
            path = self.version.path if self.version is not None else None
            stamp = _stamp(path, self.stat) if path is not None else None
            if asked or (path is not None and stamp != self._stamp):
                self._stamp = stamp   # a bad file is read once, not at every check
                try:
                    self._reload(path)
                except KfError:
                    pass   # recorded and logged by _reload
                except Exception as exc:  # a bug of ours or of a hook: this worker keeps answering, and says so
                    log.exception("the rules were not reloaded in process %d; the rules in force stay", os.getpid())
                    self.error, self.error_at = f"{type(exc).__name__}: {exc}", self.clock()
            self._report()

    def _reload(self, path: Optional[str]) -> Optional[RuleSet]:
        try:
            if path is None:
                raise no_rule_file()
            rules, version = read_rule_file(path, self.stat)
            if self.version is not None and version.digest == self.version.digest:
                self._stamp, self.error, self.error_at = version.stamp, None, None
                return None   # the same bytes (touched, or edited back): nothing to swap
            self._apply(rules, version)
            self.loaded(version)
        except KfError as exc:
            self.error, self.error_at = str(exc), self.clock()
            log.error("the rules were not reloaded in process %d; the rules in force stay. %s", os.getpid(), exc)
            raise
        log.info("rules reloaded from %s (sha256 %s, %d rules) in process %d", path, version.digest[:12],
                 len(rules.rules), os.getpid())
        return rules

    def _take_requests(self) -> bool:
        """Whether a reload was asked since the last check: SIGHUP, or a new request in a channel."""
        asked, self._signalled = self._signalled, False
        for channel in self._channels():
            number = self._redis(channel.requested)
            if number is None:
                continue
            last = self._seen.get(channel.scope)
            self._seen[channel.scope] = number
            if last is not None and number != last:
                asked, self.reload = True, number
            elif last is None:
                self.reload = number   # a request before this process started: its file is newer already
        return asked

    def _report(self) -> None:
        version = self.version
        report = WorkerReport(socket.gethostname(), os.getpid(), version.path if version else None,
                              version.digest if version else None, self.loaded_at, self.reload, self.error,
                              self.error_at)
        ttl, now = report_ttl(self.every), self.clock()
        for channel in self._channels():
            written = self._written.get(channel.scope)
            if written is not None and written[0] == report and 0 <= now - written[1] < ttl / 3:
                continue   # unchanged, and far from lapsing
            if self._redis(functools.partial(_write, channel, report, ttl)):
                self._written[channel.scope] = (report, now)

    def _redis(self, call: Callable[[], Any]) -> Any:
        """``call()``, or ``None`` when Redis fails (logged once until it answers again)."""
        try:
            result = call()
        except Exception as exc:  # redis-py's errors, whatever client the bot gave: the job must go on
            if not self._redis_failing:
                log.warning("the rule watch cannot reach Redis (%s): kf-plugin reload and rules status do not "
                            "reach process %d until it can; its rule file is still watched", exc, os.getpid())
            self._redis_failing = True
            return None
        self._redis_failing = False
        return result


def _write(channel: RuleVersions, report: WorkerReport, ttl: float) -> bool:
    """Store ``report`` in ``channel`` for ``ttl`` seconds; ``True`` (``RuleWatch._redis`` answers ``None`` when
    Redis fails)."""
    channel.report(report, ttl)
    return True


# -- SIGHUP ---------------------------------------------------------------------------------------------

_WATCHES: "weakref.WeakSet[RuleWatch]" = weakref.WeakSet()


def _on_sighup(signum: int, frame: Any) -> None:
    watches = [watch for watch in list(_WATCHES) if watch.running_here]
    if not watches:
        # A process that serves no requests (the Werkzeug reloader's parent, one that has not served yet): no
        # job would ever read the flag, so SIGHUP does what it did before, and ends the process.
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    for watch in watches:
        watch.signalled()


def install_sighup(watch: RuleWatch) -> bool:
    """Make SIGHUP ask ``watch`` for a reload, where that is safe; whether it will.

    Only from the main thread (Python sets handlers there alone), and only where SIGHUP has no handler yet:
    its default action, which ends the process — and still does in a process where the watch job does not run
    (yet). A handler of the server's (gunicorn's master, uWSGI's
    processes), of the bot's, or an ignored SIGHUP is left alone. No SIGHUP on Windows.
    """
    sighup = getattr(signal, "SIGHUP", None)
    if sighup is None or threading.current_thread() is not threading.main_thread():
        return False
    current = signal.getsignal(sighup)
    if current is not _on_sighup:
        if current is not signal.SIG_DFL:
            return False
        signal.signal(sighup, _on_sighup)
    _WATCHES.add(watch)
    return True
