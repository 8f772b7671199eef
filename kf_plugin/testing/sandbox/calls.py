"""The log of every request the sandbox received, for assertions in tests."""
from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

__all__ = ["Call", "CallLog"]


@dataclass
class Call:
    """One request, in the order received.

    ``body`` is the parsed JSON (None when empty or not JSON); for a multipart upload,
    a dict of field name → file size in bytes (or the value of a plain form field).
    ``errcode`` is what the answer said (None when the answer carried none: dropped
    connection, injected HTTP error); ``status`` the HTTP status (None when dropped);
    ``fault`` the injected fault that answered instead of WeChat's rules
    (``"fail"``, ``"drop"``, ``"http_error"``) or None. ``at`` is the sandbox clock.
    """

    method: str
    path: str
    query: Dict[str, str]
    body: Any
    at: float
    errcode: Optional[int] = None
    status: Optional[int] = None
    fault: Optional[str] = None


class CallLog:
    """Thread-safe; readers get copies, so a snapshot does not change under them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: List[Call] = []

    def received(self, call: Call) -> Call:
        with self._lock:
            self._calls.append(call)
        return call

    def answered(self, call: Call, errcode: Optional[int], status: Optional[int], fault: Optional[str] = None) -> None:
        with self._lock:
            call.errcode, call.status, call.fault = errcode, status, fault

    def snapshot(self, path: Optional[str] = None) -> List[Call]:
        with self._lock:
            return [dataclasses.replace(call) for call in self._calls if path is None or call.path == path]

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()
