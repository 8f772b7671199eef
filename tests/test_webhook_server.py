"""The webhook under a real gunicorn, spoken to over raw sockets: what a test client cannot send.

Malformed chunked bodies and a client that goes away mid-body must get a 4xx, never a 500 with a traceback,
signed or not (an unsigned request's body is never read). Slow clients must not stop WeChat's pushes from
being answered under the deployment docs/deployment.md documents (and they do stop them under 4 sync workers).
"""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

from kf_plugin.testing import PushSigner, message_xml

from .conftest import TOKEN

ROOT = Path(__file__).resolve().parents[1]
# The deployment command of docs/deployment.md, as its options are written there (tests/test_project.py checks).
DOCUMENTED = ["--workers", "4", "--worker-class", "gthread", "--threads", "8", "--timeout", "30"]
OLD_SYNC = ["--workers", "4", "--timeout", "30"]

def _own_options() -> List[str]:
    """Options that keep test servers apart: newer gunicorns open a control socket at one path per user."""
    import gunicorn.config
    names = {setting.name for setting in gunicorn.config.KNOWN_SETTINGS}
    return ["--no-control-socket"] if "control_socket_disable" in names else []


class Gunicorn:
    """gunicorn serving tests.server_app on a free loopback port; its log (stderr) in ``log_path``."""

    def __init__(self, options: List[str], log_path: Path):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.log_path = log_path
        self.log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", *options, *_own_options(), "--bind", f"127.0.0.1:{self.port}", "--chdir", str(ROOT),
             "tests.server_app:create_app()"], stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 60
        while not self._answering():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"gunicorn did not start: {log_path.read_text(errors='replace')}")
            time.sleep(0.1)

    def _answering(self) -> bool:
        """Whether a worker answers (an unsigned GET: 403); the port is open before the workers are up."""
        try:
            with self.connect(timeout=10) as connection:
                connection.sendall(request_head("GET", "/wechat", {}))
                return status_of(connection) == 403
        except OSError:
            return False

    def connect(self, timeout: float = 15) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def logged(self, since: int = 0) -> str:
        """The log from character ``since`` on."""
        return self.log_path.read_text(errors="replace")[since:]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)   # quick shutdown: no waiting for workers stuck on a client
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.log.close()


@pytest.fixture(scope="module")
def documented(tmp_path_factory) -> Iterator[Gunicorn]:
    server = Gunicorn(DOCUMENTED, tmp_path_factory.mktemp("gunicorn") / "documented.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def old_sync(tmp_path_factory) -> Iterator[Gunicorn]:
    server = Gunicorn(OLD_SYNC, tmp_path_factory.mktemp("gunicorn") / "sync.log")
    yield server
    server.stop()


@pytest.fixture
def stalled_sync(tmp_path) -> Iterator[Gunicorn]:
    """A sync server of the test's own: slow clients leave its workers stuck until the worker timeout."""
    server = Gunicorn(OLD_SYNC, tmp_path / "sync.log")
    yield server
    server.stop()


def signed_target(query: Optional[Dict[str, str]] = None) -> str:
    return "/wechat?" + urllib.parse.urlencode(query if query is not None else PushSigner(TOKEN).sign("<xml/>")[0])


def request_head(method: str, target: str, headers: Dict[str, str]) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def status_of(connection: socket.socket) -> int:
    """The status code of the answer on ``connection`` (``socket.timeout`` when none comes in time)."""
    received = b""
    while b"\r\n" not in received:
        chunk = connection.recv(4096)
        if not chunk:
            raise ConnectionError(f"the server closed the connection after {received!r}")
        received += chunk
    return int(received.split(b" ", 2)[1])


MALFORMED_CHUNKED = {
    "bad-chunk-size": b"zz\r\nhello\r\n0\r\n\r\n",
    "chunk-longer-than-declared": b"5\r\nhello, world\r\n0\r\n\r\n",
    "no-last-chunk": b"5\r\nhello\r\n",
    "truncated": b"40\r\n<xml><ToUserName>",
}


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize("name", MALFORMED_CHUNKED)
def test_a_malformed_chunked_body_is_a_4xx_never_a_traceback(documented, old_sync, name, signed):
    for server in (documented, old_sync):
        target = signed_target() if signed else "/wechat?signature=0&timestamp=1&nonce=1"
        before = len(server.logged())
        with server.connect() as connection:
            connection.sendall(request_head("POST", target, {"Transfer-Encoding": "chunked",
                                                             "Content-Type": "text/xml"}))
            connection.sendall(MALFORMED_CHUNKED[name])
            connection.shutdown(socket.SHUT_WR)      # half-closed: the body ends where it was cut
            status = status_of(connection)
        assert status == (400 if signed else 403), server.logged(before)
        assert "Traceback" not in server.logged(before), server.logged(before)


def test_a_signed_head_is_405(documented):
    with documented.connect() as connection:
        connection.sendall(request_head("HEAD", signed_target(), {}))
        assert status_of(connection) == 405


def probe_status(server: Gunicorn, timeout: float) -> int:
    query, body = PushSigner(TOKEN).sign(message_xml(text="probe"))
    with server.connect(timeout) as connection:
        connection.sendall(request_head("POST", signed_target(query), {"Content-Length": str(len(body))}) + body)
        return status_of(connection)


class SlowClients:
    """``count`` connections each sending a signed push one byte a second, as long as the ``with`` lasts."""

    def __init__(self, server: Gunicorn, count: int = 4):
        self.server = server
        self.count = count
        self.stopping = threading.Event()
        self.sent = [0] * count
        self.threads = [threading.Thread(target=self._trickle, args=(i,), daemon=True) for i in range(count)]

    def _trickle(self, index: int) -> None:
        query, body = PushSigner(TOKEN).sign(message_xml(text="slow"))
        request = request_head("POST", signed_target(query), {"Content-Length": str(len(body))}) + body
        with self.server.connect() as connection:
            for byte in request:
                connection.sendall(bytes([byte]))
                self.sent[index] += 1
                if self.stopping.wait(1.0):      # the client's own pace: 1 byte/s
                    return

    def __enter__(self) -> "SlowClients":
        for thread in self.threads:
            thread.start()
        deadline = time.monotonic() + 30
        while min(self.sent) < 2:                 # every connection is open and has started its request
            if time.monotonic() > deadline or not all(thread.is_alive() for thread in self.threads):
                self.__exit__()
                pytest.fail(f"the slow clients could not start their requests (bytes sent: {self.sent})")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(5)


WECHAT_DEADLINE = 5.0   # seconds WeChat waits for an answer before it gives up on the delivery


def test_four_slow_clients_do_not_stop_a_push_under_the_documented_setup(documented):
    assert probe_status(documented, timeout=WECHAT_DEADLINE - 1) == 200
    with SlowClients(documented):
        assert probe_status(documented, timeout=WECHAT_DEADLINE - 1) == 200


def test_four_slow_clients_stop_every_push_under_four_sync_workers(stalled_sync):
    """What the documented setup replaces: each sync worker waits on one slow client until it times out."""
    assert probe_status(stalled_sync, timeout=WECHAT_DEADLINE - 1) == 200
    with SlowClients(stalled_sync):
        with pytest.raises(socket.timeout):
            probe_status(stalled_sync, timeout=WECHAT_DEADLINE)


@pytest.mark.parametrize("query, expected", [
    ("signature=abc&timestamp=1&nonce=n", {"signature": "abc", "timestamp": "1", "nonce": "n"}),
    ("nonce=first&nonce=second", {"nonce": "first"}),                 # as request.args.get answers
    ("echostr=a%2Bb%20c&openid=", {"echostr": "a+b c", "openid": ""}),
    ("echostr=%E4%BD%A0", {"echostr": "你"}),
    ("echostr=a+b", {"echostr": "a b"}),
    ("&&openid&signature=a=b&", {"openid": "", "signature": "a=b"}),   # nothing escaped: split, not parsed
    ("=x&nonce=1;2", {"": "x", "nonce": "1;2"}),
    ("", {}),
])
def test_the_query_is_read_as_flask_reads_it(query, expected):
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request

    from kf_plugin.view import query_of
    environ = EnvironBuilder(path="/wechat", query_string=query).get_environ()
    assert query_of(environ) == expected == {name: Request(environ).args.get(name) for name in expected}
