"""The HTTP side: a Flask app that logs each call, applies faults, checks the token and
dispatches to :mod:`~kf_plugin.testing.sandbox.endpoints` (or to a :class:`SiblingApi`, such as
WeCom's, for the paths it knows); and a werkzeug server for it on a loopback port, in a daemon
thread (:class:`SandboxServer`) or blocking (:func:`run_forever`).
"""
from __future__ import annotations

import json
import logging
import socket
import threading
import time
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Protocol, Sequence, Tuple

from flask import Flask, Response, request
from werkzeug.serving import BaseWSGIServer, ThreadedWSGIServer, WSGIRequestHandler

from .calls import Call, CallLog
from .endpoints import ENDPOINTS, ApiRequest, Endpoint
from .errors import ApiError, errmsg_for, with_rid
from .faults import Fault, Faults
from .sessions import SessionEvent
from .state import SandboxState

if TYPE_CHECKING:
    import requests

__all__ = ["create_app", "SandboxServer", "run_forever", "Announcer", "SiblingApi"]

log = logging.getLogger(__name__)

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]

#: Told the session events an API call caused, before the call's answer goes out; what it returns (if
#: anything) runs once the answer has been sent, so the caller never sees an event before its answer.
Announcer = Callable[[List[SessionEvent]], Optional[Callable[[], None]]]


class SiblingApi(Protocol):
    """Another API served by the same app (WeCom's beside the Official Account's), for the paths it knows.

    The server logs its calls and applies the faults as for any other path; the sibling
    checks its own tokens, applies its own rules and never raises.
    """

    def knows(self, path: str) -> bool:
        """Whether ``path`` is one of this API's."""

    def answer(self, path: str, request: ApiRequest) -> Dict[str, Any]:
        """The answer's JSON fields (``errcode`` and ``errmsg`` included)."""

    def fault_errmsg(self, errcode: int) -> str:
        """The errmsg this API gives ``errcode``, for an injected failure."""


def create_app(state: SandboxState, faults: Faults, calls: CallLog, announcer: Optional[Announcer] = None,
               siblings: Sequence[SiblingApi] = ()) -> Flask:
    """The WSGI app answering every path as the WeChat API would (and the siblings' paths as they do)."""
    app = Flask(__name__)

    @app.route("/", defaults={"path": ""}, methods=_METHODS)
    @app.route("/<path:path>", methods=_METHODS)
    def answer(path: str) -> Response:
        try:
            return _answer(state, faults, calls, announcer, siblings)
        except Exception:  # last resort (an unreadable request body, say): still answer like WeChat
            log.exception("sandbox failed to answer %s %s", request.method, request.path)
            return Response(json.dumps(_error(-1, state)), 200, content_type="application/json; charset=utf-8")

    return app


def _answer(state: SandboxState, faults: Faults, calls: CallLog, announcer: Optional[Announcer],
            siblings: Sequence[SiblingApi]) -> Response:
    api_request, logged_body = _read_request()
    call = calls.received(Call(request.method, request.path, dict(api_request.query), logged_body, state.clock()))
    sibling = next((api for api in siblings if api.knows(request.path)), None)
    plan = faults.plan(request.path)
    if plan.latency:
        time.sleep(plan.latency)  # real time on purpose: the client's timeout is what is being tested
    if plan.fault is not None:
        return _injected(plan.fault, call, calls, state, sibling)
    if sibling is not None:
        return _json(sibling.answer(request.path, api_request), call, calls)
    endpoint = ENDPOINTS.get(request.path)
    if endpoint is None:
        payload = _error(-1, state, f"system error hint: [no such api: {request.path}]")
        return _json(payload, call, calls, status=404)
    payload, events = _handle(endpoint, state, api_request)
    response = _json(payload, call, calls)
    then = announcer(events) if announcer is not None and events else None
    if then is not None:
        response.call_on_close(then)
    return response


def _handle(endpoint: Endpoint, state: SandboxState, api_request: ApiRequest) -> Tuple[Dict[str, Any],
                                                                                      List[SessionEvent]]:
    """The answer's fields, and the session events the call caused (none when it failed)."""
    try:
        with state.lock:
            try:
                if endpoint.needs_token:
                    state.tokens.verify(api_request.query.get("access_token"))
                if endpoint.needs_kf:
                    state.require_kf()
                result = endpoint.handle(state, api_request) or {}
            finally:
                events = state.take_announcements()
        return {"errcode": 0, "errmsg": "ok", **result}, events
    except ApiError as exc:
        return _error(exc.errcode, state, exc.errmsg), []
    except Exception:  # a sandbox bug must look like WeChat's "system error", not kill the server
        log.exception("sandbox failed to answer %s %s", request.method, request.path)
        return _error(-1, state), []


def _read_request() -> Tuple[ApiRequest, Any]:
    """The request for the handlers, and the body as the call log shows it."""
    query = request.args.to_dict()
    if request.mimetype == "multipart/form-data":
        files = {name: storage.read() for name, storage in request.files.items()}
        form: Dict[str, Any] = dict(request.form.items())
        form.update({name: len(data) for name, data in files.items()})
        return ApiRequest(request.method, query, b"", files), form
    raw = request.get_data()
    logged: Any  # the JSON body as sent, whatever its shape
    try:
        logged = json.loads(raw.decode("utf-8")) if raw.strip() else None
    except (UnicodeDecodeError, ValueError):
        logged = None
    return ApiRequest(request.method, query, raw), logged


def _injected(fault: Fault, call: Call, calls: CallLog, state: SandboxState,
              sibling: Optional[SiblingApi]) -> Response:
    if fault.kind == "drop":
        calls.answered(call, None, None, "drop")
        _drop_connection()
        return Response(b"")  # werkzeug's write fails quietly on the shut socket
    if fault.kind == "http_error":
        calls.answered(call, None, fault.status, "http_error")
        return Response(f"{fault.status} {HTTPStatus(fault.status).phrase}", fault.status, mimetype="text/plain")
    if fault.errmsg is not None:
        errmsg = fault.errmsg
    elif sibling is not None:
        errmsg = sibling.fault_errmsg(fault.errcode)
    else:
        errmsg = with_rid(errmsg_for(fault.errcode), state.clock())
    return _json({"errcode": fault.errcode, "errmsg": errmsg}, call, calls, fault="fail")


def _drop_connection() -> None:
    connection = request.environ.get("werkzeug.socket")
    if connection is None:
        raise RuntimeError("drop_next needs the sandbox's own server (sandbox.serve() or sandbox.run())")
    # Shut down rather than close: werkzeug still owns the file descriptor, and a
    # shut socket makes its later write fail with an error it treats as "client went away".
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _error(errcode: int, state: SandboxState, errmsg: Optional[str] = None) -> Dict[str, Any]:
    return {"errcode": errcode, "errmsg": with_rid(errmsg or errmsg_for(errcode), state.clock())}


def _json(payload: Dict[str, Any], call: Call, calls: CallLog, status: int = 200,
          fault: Optional[str] = None) -> Response:
    calls.answered(call, payload["errcode"], status, fault)
    body = json.dumps(payload, ensure_ascii=False)
    return Response(body, status, content_type="application/json; charset=utf-8")


# -- serving ------------------------------------------------------------------------

class _QuietRequestHandler(WSGIRequestHandler):
    """No access log line per request: tests and embedded use would drown in them."""

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        pass


def _listening_socket(host: str, port: int) -> socket.socket:
    # Bound here rather than by werkzeug, whose make_server calls sys.exit() on a busy port.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def _make_server(app: Flask, host: str, port: int, quiet: bool) -> BaseWSGIServer:
    sock = _listening_socket(host, port)
    try:
        handler = _QuietRequestHandler if quiet else None
        return ThreadedWSGIServer(host, port, app, handler, fd=sock.fileno())
    finally:
        sock.close()  # werkzeug works on its own duplicate of the descriptor


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class SandboxServer:
    """A running sandbox server. :attr:`url` is the API base (no trailing slash).

    It serves any Flask app the same way: a bot under test too, for :meth:`Sandbox.connect_bot`.

    Use it as a context manager, or call :meth:`stop`.
    """

    def __init__(self, app: Flask, host: str = "127.0.0.1", port: int = 0):
        self._server = _make_server(app, host, port, quiet=True)
        self.host = host
        self.port: int = self._server.server_address[1]
        self.url = _url(host, self.port)
        self._stopped = False
        # A short poll interval: stop() waits for the serving loop to notice, and tests stop a server each.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name=f"kf-sandbox-{self.port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and free the port (waits for requests in progress); calling it again does nothing."""
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def session(self) -> "requests.Session":
        """A ``requests`` session sending WeChat API URLs here, e.g. ``wechat_client._http = server.session()``."""
        from .redirect import (
            RedirectingSession,  # requests is only needed by those who ask for it
        )
        return RedirectingSession(self.url)

    def __enter__(self) -> "SandboxServer":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<SandboxServer {self.url}{' stopped' if self._stopped else ''}>"


def run_forever(app: Flask, host: str, port: int) -> None:
    """Serve in this thread, with an access log, until Ctrl-C.

    :raises OSError: the address cannot be bound (port in use, say).
    """
    server = _make_server(app, host, port, quiet=False)
    print(f"WeChat API sandbox on {_url(host, server.server_address[1])} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
