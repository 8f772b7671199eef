"""Fault injection: make the sandbox fail the way the real network and API sometimes do.

Faults that replace the answer (``fail_next``, ``drop_next``, ``http_error``) are
used in the order they were added: the oldest one matching a request answers it.
Latency adds to any answer (every matching latency rule counts, their delays add up).
A rule with ``path=None`` matches every path, token endpoints included.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import List, Optional

__all__ = ["Faults", "Fault", "FaultPlan"]


@dataclass
class Fault:
    """One injected fault; ``remaining`` None means until :meth:`Faults.clear`."""

    kind: str  # "fail", "drop", "http_error" or "latency"
    path: Optional[str]
    remaining: Optional[int]
    errcode: int = 0
    errmsg: Optional[str] = None  # None: WeChat's text for errcode, with a rid
    status: int = 0
    seconds: float = 0.0

    def matches(self, path: str) -> bool:
        return self.path is None or self.path == path


@dataclass(frozen=True)
class FaultPlan:
    """What to do with one request: wait ``latency`` seconds, then answer with ``fault`` (None = normally)."""

    latency: float = 0.0
    fault: Optional[Fault] = None


def _normal_path(path: Optional[str]) -> Optional[str]:
    if path is None:
        return None
    if not isinstance(path, str) or not path.strip("/"):
        raise ValueError(f"path must be an API path such as '/cgi-bin/message/custom/send', got {path!r}")
    return "/" + path.split("?", 1)[0].lstrip("/")


def _check_times(times: Optional[int], allow_forever: bool) -> None:
    if times is None and allow_forever:
        return
    if not isinstance(times, int) or isinstance(times, bool) or times < 1:
        raise ValueError(f"times must be a positive int{' or None' if allow_forever else ''}, got {times!r}")


class Faults:
    """The faults waiting to be applied; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: List[Fault] = []

    def fail_next(self, errcode: int, times: int = 1, path: Optional[str] = None,
                  errmsg: Optional[str] = None) -> None:
        """Answer ``errcode`` to the next ``times`` matching calls instead of handling them.

        ``errmsg`` is answered exactly as given; by default WeChat's text for the
        errcode followed by a rid, as every other error.

        :raises ValueError: errcode not a non-zero int, times not positive, bad path.
        """
        if not isinstance(errcode, int) or isinstance(errcode, bool) or errcode == 0:
            raise ValueError(f"errcode must be a non-zero int, got {errcode!r}")
        _check_times(times, allow_forever=False)
        self._add(Fault("fail", _normal_path(path), times, errcode=errcode, errmsg=errmsg))

    def add_latency(self, seconds: float, path: Optional[str] = None, times: Optional[int] = None) -> None:
        """Wait ``seconds`` (real time) before answering matching calls; ``times=None`` until cleared.

        :raises ValueError: negative seconds, times not positive, bad path.
        """
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise ValueError(f"seconds must be a number ≥ 0, got {seconds!r}")
        _check_times(times, allow_forever=True)
        self._add(Fault("latency", _normal_path(path), times, seconds=float(seconds)))

    def drop_next(self, times: int = 1, path: Optional[str] = None) -> None:
        """Close the connection without any HTTP answer on the next ``times`` matching calls.

        The request has been read, so a client cannot tell whether the call took effect
        (it did not: the sandbox changes nothing).

        :raises ValueError: times not positive, bad path.
        """
        _check_times(times, allow_forever=False)
        self._add(Fault("drop", _normal_path(path), times))

    def http_error(self, status: int = 502, times: int = 1, path: Optional[str] = None) -> None:
        """Answer HTTP ``status`` with a plain-text body (as a failing gateway does) to the next calls.

        :raises ValueError: status not in 400..599, times not positive, bad path.
        """
        if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status (400..599), got {status!r}")
        _check_times(times, allow_forever=False)
        self._add(Fault("http_error", _normal_path(path), times, status=status))

    def clear(self) -> None:
        """Remove every fault, used or not."""
        with self._lock:
            self._faults.clear()

    @property
    def pending(self) -> List[Fault]:
        """The faults not used up yet, oldest first (copies)."""
        with self._lock:
            return [Fault(**vars(f)) for f in self._faults]

    def plan(self, path: str) -> FaultPlan:
        """Take what applies to a request for ``path``, counting it as used."""
        with self._lock:
            latency = 0.0
            replacing: Optional[Fault] = None
            for fault in list(self._faults):
                if not fault.matches(path):
                    continue
                if fault.kind == "latency":
                    latency += fault.seconds
                elif replacing is None:
                    replacing = fault
                else:
                    continue
                self._use(fault)
            return FaultPlan(latency, replacing)

    def _add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _use(self, fault: Fault) -> None:
        if fault.remaining is None:
            return
        fault.remaining -= 1
        if fault.remaining == 0:
            self._faults.remove(fault)
