"""Shared fixtures: apps in plain and safe mode, signed-push clients, a settable clock."""
from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import pytest
from flask import Flask

from kf_plugin import KfPlugin, MessageRouter
from kf_plugin.testing import PushSigner, WeChatTestClient

from .redis_servers import TlsFiles, free_port

# The fixtures of the hand-off lifecycle's push-path tests (workers on the sandbox, memory or Redis), and those
# of the hand-off sweep's tests (a hand-off store of either kind, agents on the sandbox).
pytest_plugins = ["tests.lifecycle_apps", "tests.reconcile_support"]

DATA = Path(__file__).parent / "data"
TOKEN = "test-token"
APPID = "wx0123456789abcdef"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
RULES_YAML = """\
version: 1
fallback_text: "客服暂时不在线，请留言"
rules:
  - name: ask-for-human
    keywords: ["人工", "客服", "转人工"]
  - name: vip-menu
    event: CLICK
    event_key: CONTACT_VIP
    kf_account: "vip1@gh_example"
  - name: complaint
    regex: "投诉|退款"
"""


def sample(name: str) -> str:
    """A file of tests/data as text."""
    return (DATA / name).read_text(encoding="utf-8")


def vectors() -> Dict[str, Any]:
    return json.loads(sample("crypto_vectors.json"))


class FakeClock:
    """A clock the test moves by hand: ``clock()`` is the time, ``clock.advance(s)`` moves it."""

    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def plugins_stop_after_their_test(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every KfPlugin built during a test is shut down at its end: its jobs and thread pools stop.

    Otherwise each app's background jobs run for the rest of the test process, and an earlier test's work
    allocates while a later one counts objects, or draws random numbers while Hypothesis generates examples.
    The plugins of module-scoped fixtures are built before this fixture starts recording; their fixtures stop them.
    """
    built: List[KfPlugin] = []
    init = KfPlugin.__init__

    @functools.wraps(init)
    def recording_init(plugin: KfPlugin, *args: Any, **kwargs: Any) -> None:
        built.append(plugin)
        init(plugin, *args, **kwargs)
    monkeypatch.setattr(KfPlugin, "__init__", recording_init)
    yield
    for plugin in built:
        plugin.shutdown()


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES_YAML, encoding="utf-8")
    return path


@pytest.fixture
def make_app(rules_file: Path) -> Callable[..., Flask]:
    """``make_app(router=None, plugin_options=None, **config)`` → a Flask app with a KfPlugin.

    The plugin is at ``app.extensions["kf_plugin"].plugin``; it is shut down after the test
    (:func:`plugins_stop_after_their_test`).
    """
    def make(router: MessageRouter = None, plugin_options: Dict[str, Any] = None, **config: Any) -> Flask:
        app = Flask("kf_test")
        # The rule watch off: it would take SIGHUP in the test process and tick every 2 s while the test runs.
        # The tests of the watch turn it on.
        app.config.update(KF_TOKEN=TOKEN, KF_APPID=APPID, KF_RULES=str(rules_file), KF_RULES_WATCH=0)
        app.config.update(config)
        KfPlugin(app, router=router, **(plugin_options or {}))
        return app
    return make


@pytest.fixture
def plain_app(make_app) -> Flask:
    return make_app()


@pytest.fixture
def safe_app(make_app) -> Flask:
    return make_app(KF_ENCODING_AES_KEY=AES_KEY)


@pytest.fixture
def plain_client(plain_app) -> WeChatTestClient:
    return WeChatTestClient(plain_app)


@pytest.fixture
def safe_client(safe_app) -> WeChatTestClient:
    return WeChatTestClient(safe_app)


@pytest.fixture
def safe_signer() -> PushSigner:
    return PushSigner(TOKEN, AES_KEY, APPID)


# -- the WeChat API sandbox ---------------------------------------------------------------------------

@dataclass
class Api:
    """A served sandbox: ``sandbox`` to control and inspect it, ``url`` its base, ``clock`` its time."""

    sandbox: Any
    url: str
    clock: FakeClock


@pytest.fixture
def api():
    from kf_plugin.testing.sandbox import Sandbox
    clock = FakeClock(time.time())
    sandbox = Sandbox(clock=clock)
    with sandbox.serve() as server:
        yield Api(sandbox, server.url, clock)


@pytest.fixture
def client(api):
    from kf_plugin.client import KfClient
    return KfClient(api.sandbox.appid, api.sandbox.secret, api_base_url=api.url, timeout=2)


@pytest.fixture
def admin(client):
    from kf_plugin.admin import KfAdmin
    return KfAdmin(client)


# -- Redis ----------------------------------------------------------------------------------------------

CLAIM = "kf-test:claimed-by"


def _claim_database(base_url):
    """A Redis database no other test session is using (15 down to 1), claimed for this session."""
    import redis
    host = redis.Redis.from_url(base_url).connection_pool.connection_kwargs
    for db in range(15, 0, -1):
        # Not from_url(base_url, db=db): the database in the URL would win over db=.
        connection = redis.Redis(host=host.get("host", "127.0.0.1"), port=host.get("port", 6379), db=db,
                                 socket_connect_timeout=1)
        if connection.set(CLAIM, os.getpid(), nx=True, ex=4 * 3600):
            return connection, db
    pytest.fail("every Redis database 1-15 is claimed by another test session; set KF_TEST_REDIS_URL")


@pytest.fixture(scope="session")
def redis_server_url():
    """The Redis the tests may use: KF_TEST_REDIS_URL, or a free database of 127.0.0.1:6379.

    Without one the Redis tests are skipped — except in CI (CI=true), where they must run.
    """
    import redis
    chosen = os.environ.get("KF_TEST_REDIS_URL")
    base = chosen or "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(base, socket_connect_timeout=1).ping()
    except Exception as exc:  # any failure to reach it means "no Redis here"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs Redis at {base}: {exc}")
        pytest.skip(f"no Redis at {base} ({exc}); start redis-server or set KF_TEST_REDIS_URL")
    if chosen:
        yield chosen
        return
    connection, db = _claim_database(base)
    yield f"redis://127.0.0.1:6379/{db}"
    connection.flushdb()


@pytest.fixture
def redis_url(redis_server_url):
    """A Redis URL whose database is empty at the start of the test and emptied after it."""
    import redis
    connection = redis.Redis.from_url(redis_server_url)
    owner = connection.get(CLAIM)

    def empty():
        connection.flushdb()
        if owner is not None:
            connection.set(CLAIM, owner, ex=4 * 3600)
    empty()
    yield redis_server_url
    empty()


class PrivateRedis:
    """A redis-server of one test alone, on a free port, without persistence.

    ``password`` → ``requirepass``; ``unix_socket`` → it also listens on that path; ``tls`` → it speaks
    TLS only (``url`` is then ``rediss://`` naming the CA); ``options``: more redis-server arguments.
    """

    def __init__(self, directory: Path, password: Optional[str] = None, unix_socket: Optional[Path] = None,
                 tls: Optional[TlsFiles] = None, options: Sequence[str] = ()):
        self.directory = directory
        self.password = password
        self.unix_socket = unix_socket
        self.tls = tls
        self.options = list(options)
        self.port = free_port()
        auth = f":{password}@" if password else ""
        if tls is None:
            self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        else:
            self.url = f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={tls.ca}"
        self.process: Optional[subprocess.Popen] = None

    def ping(self) -> bool:
        import redis
        try:
            # from_url: no connection retries with backoff, so a refused connection answers at once
            return bool(redis.Redis.from_url(self.url, socket_connect_timeout=0.2, socket_timeout=0.2).ping())
        except redis.exceptions.RedisError:
            return False

    def arguments(self) -> List[str]:
        """The redis-server command line."""
        options = ["--requirepass", self.password] if self.password else []
        if self.unix_socket is not None:
            options += ["--unixsocket", str(self.unix_socket), "--unixsocketperm", "700"]
        listen = ["--port", str(self.port)]
        if self.tls is not None:
            listen = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.tls.cert),
                      "--tls-key-file", str(self.tls.key), "--tls-ca-cert-file", str(self.tls.ca),
                      "--tls-auth-clients", "no"]
        return [shutil.which("redis-server"), *listen, "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.directory), *options, *self.options]

    def start(self) -> None:
        self.process = subprocess.Popen(self.arguments(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while not self.ping():
            if time.monotonic() >= deadline:
                self.stop()
                pytest.fail(f"redis-server did not answer on port {self.port}")
            time.sleep(0.01)

    def stop(self) -> None:
        self.terminate()
        assert not self.ping()

    def terminate(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def client(self):
        import redis
        return redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=1)


def require_redis_server() -> None:
    """Skips the test without redis-server on the PATH — or fails it in CI (CI=true), where it must run."""
    if shutil.which("redis-server") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI needs redis-server on the PATH")
        pytest.skip("redis-server is not installed")


@pytest.fixture
def start_private_redis(tmp_path):
    """Starts redis-servers of the test's own (stopped at its end): ``start_private_redis(**options)``."""
    require_redis_server()
    servers = []

    def start(**options: Any) -> PrivateRedis:
        server = PrivateRedis(tmp_path, **options)
        servers.append(server)
        server.start()
        return server
    yield start
    for server in servers:
        server.terminate()


@pytest.fixture
def private_redis(start_private_redis) -> PrivateRedis:
    return start_private_redis()
