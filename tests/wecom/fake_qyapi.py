"""A small stand-in for qyapi.weixin.qq.com, served on a loopback port: gettoken, the token check,
scripted answers per path and faults (errcodes, HTTP errors, non-JSON, held requests)."""
from __future__ import annotations

import contextlib
import itertools
import json
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Union

from flask import Flask, Response, request

from kf_plugin.testing.sandbox import SandboxServer

CORPID = "wx0123456789abcdef"   # older corpids start with wx, as AppIDs do
SECRET = "corp-secret-6f1c2a9e5b7d4c3a8e0f"

Reply = Union[Dict[str, Any], Callable[["Call"], Dict[str, Any]]]


@dataclass
class Call:
    method: str
    path: str
    query: Dict[str, str]
    body: Any
    raw: bytes


@dataclass
class Fault:
    kind: str                    # "errcode", "status", "garbage" or "hold"
    value: int = 0
    before: Optional[Callable[[Call], None]] = None


@dataclass
class FakeQyapi:
    """WeCom's API for one corp; ``url`` is set once it is served."""

    corpid: str = CORPID
    secret: str = SECRET
    lifetime: int = 7200
    #: What an API call with a token WeCom no longer accepts is answered with.
    refused_token_errcode: int = 42001
    url: str = ""
    calls: List[Call] = field(default_factory=list)
    issued: List[str] = field(default_factory=list)
    valid: set = field(default_factory=set)
    answers: Dict[str, Reply] = field(default_factory=dict)
    faults: Dict[str, List[Fault]] = field(default_factory=dict)
    release: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._serial = itertools.count(1)
        self.app = Flask(__name__)
        self.app.add_url_rule("/cgi-bin/<path:rest>", "api", self._handle, methods=["GET", "POST"])

    # -- control ---------------------------------------------------------------------

    def answer(self, path: str, reply: Reply) -> None:
        """Answer calls of ``path`` with ``reply`` (a dict, or a function of the call) besides errcode 0."""
        self.answers[path] = reply

    def fail_next(self, path: str, errcode: int, times: int = 1,
                  before: Optional[Callable[[Call], None]] = None) -> None:
        self._add(path, [Fault("errcode", errcode, before) for _ in range(times)])

    def http_error(self, path: str, status: int, times: int = 1) -> None:
        self._add(path, [Fault("status", status) for _ in range(times)])

    def garbage_next(self, path: str) -> None:
        self._add(path, [Fault("garbage")])

    def hold(self, path: str, times: int = 1) -> None:
        """Keep the next calls of ``path`` unanswered until :attr:`release` is set (the end of the test)."""
        self._add(path, [Fault("hold") for _ in range(times)])

    def invalidate_tokens(self) -> None:
        with self._lock:
            self.valid.clear()

    def accept(self, token: str) -> None:
        with self._lock:
            self.valid.add(token)

    def calls_to(self, path: str) -> List[Call]:
        with self._lock:
            return [call for call in self.calls if call.path == path]

    def _add(self, path: str, faults: List[Fault]) -> None:
        with self._lock:
            self.faults.setdefault(path, []).extend(faults)

    # -- answering -------------------------------------------------------------------

    def _handle(self, rest: str) -> Response:
        raw = request.get_data()
        body = json.loads(raw.decode("utf-8")) if raw else None
        call = Call(request.method, request.path, request.args.to_dict(), body, raw)
        with self._lock:
            self.calls.append(call)
            pending = self.faults.get(call.path) or []
            fault = pending.pop(0) if pending else None
        if fault is not None:
            return self._fault(fault, call)
        if call.path == "/cgi-bin/gettoken":
            return self._token(call.query)
        token = call.query.get("access_token")
        if not token:
            return _json(_error(41001))
        if token not in self.valid:
            return _json(_error(self.refused_token_errcode))
        reply = self.answers.get(call.path, {})
        return _json({"errcode": 0, "errmsg": "ok", **(reply(call) if callable(reply) else reply)})

    def _fault(self, fault: Fault, call: Call) -> Response:
        if fault.before is not None:
            fault.before(call)
        if fault.kind == "hold":
            self.release.wait(10)
            return _json({"errcode": 0, "errmsg": "ok"})
        if fault.kind == "status":
            return Response("<html>bad gateway</html>", fault.value, content_type="text/html")
        if fault.kind == "garbage":
            return Response("<html>not json</html>", 200, content_type="text/html")
        return _json(_error(fault.value))

    def _token(self, query: Dict[str, str]) -> Response:
        if query.get("corpid") != self.corpid:
            return _json(_error(40013))
        if query.get("corpsecret") != self.secret:
            return _json(_error(40001))
        with self._lock:
            # WeCom answers the same token while it lives.
            current = self.issued[-1] if self.issued and self.issued[-1] in self.valid else None
            if current is None:
                current = f"wecom-token-{next(self._serial)}-7d1e9a"
                self.issued.append(current)
                self.valid.add(current)
        return _json({"errcode": 0, "errmsg": "ok", "access_token": current, "expires_in": self.lifetime})


def _error(errcode: int) -> Dict[str, Any]:
    return {"errcode": errcode, "errmsg": f"refused, hint: [1700000000_1_abc], from ip: 127.0.0.1, more info at "
                                          f"https://open.work.weixin.qq.com/devtool/query?e={errcode}"}


def _json(payload: Dict[str, Any]) -> Response:
    return Response(json.dumps(payload, ensure_ascii=False), 200, content_type="application/json; charset=utf-8")


@contextlib.contextmanager
def served(fake: FakeQyapi) -> Iterator[FakeQyapi]:
    """``fake`` on a free loopback port (``fake.url``) for the duration of the block."""
    with SandboxServer(fake.app) as server:
        fake.url = server.url
        try:
            yield fake
        finally:
            fake.release.set()  # held requests end before the server stops
