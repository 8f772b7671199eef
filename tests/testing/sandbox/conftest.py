"""Fixtures for the sandbox tests: a hand-moved clock, a served sandbox, small API and control clients, and a bot."""
from __future__ import annotations

import socket
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest
import requests

from kf_plugin.testing.sandbox import Sandbox, SandboxServer

from .wechat_bot import TOKEN as BOT_TOKEN
from .wechat_bot import WeChatBot

START = 1_700_000_000.0  # 2023-11-15 06:13:20 Beijing time: far from a day boundary


class Clock:
    """``clock()`` is :attr:`now`; ``advance(seconds)`` moves it. Nothing sleeps."""

    def __init__(self, now: float = START):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Api:
    """Calls the sandbox over HTTP; ``token`` is added to every call but the token endpoints."""

    def __init__(self, url: str, sandbox: Sandbox):
        self.url = url
        self.sandbox = sandbox
        self.http = requests.Session()
        self.http.trust_env = False  # never route loopback calls through a proxy from the environment
        self.token: Optional[str] = None

    def fetch_token(self) -> str:
        answer = self.get("/cgi-bin/token", token=None, grant_type="client_credential",
                          appid=self.sandbox.appid, secret=self.sandbox.secret)
        assert answer["errcode"] == 0, answer
        self.token = answer["access_token"]
        return self.token

    def _query(self, token: Any, query: Dict[str, Any]) -> Dict[str, Any]:
        token = self.token if token is True else token
        return dict(query, access_token=token) if token is not None else query

    def get(self, path: str, token: Any = True, **query: Any) -> Dict[str, Any]:
        return self.http.get(self.url + path, params=self._query(token, query), timeout=10).json()

    def post(self, path: str, body: Any = None, token: Any = True, **query: Any) -> Dict[str, Any]:
        return self.http.post(self.url + path, json=body, params=self._query(token, query), timeout=10).json()

    def post_raw(self, path: str, data: bytes, token: Any = True, **query: Any) -> Dict[str, Any]:
        return self.http.post(self.url + path, data=data, params=self._query(token, query), timeout=10).json()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sandbox(clock: Clock) -> Sandbox:
    return Sandbox(clock=clock)


@pytest.fixture
def server(sandbox: Sandbox) -> Iterator[Any]:
    with sandbox.serve() as running:
        yield running


@pytest.fixture
def api(server: Any, sandbox: Sandbox) -> Api:
    """A client holding a valid classic token."""
    client = Api(server.url, sandbox)
    client.fetch_token()
    return client


class Control:
    """Calls the control endpoints (``/sandbox/...``) of the served sandbox: ``(status, json)``."""

    def __init__(self, url: str):
        self.url = url + "/sandbox"
        self.http = requests.Session()
        self.http.trust_env = False

    def __call__(self, method: str, path: str, body: Any = None, raw: Optional[bytes] = None) -> Tuple[int, Any]:
        response = self.http.request(method, self.url + path, json=body, data=raw, timeout=10)
        assert response.headers["Content-Type"] == "application/json; charset=utf-8"
        return response.status_code, response.json()


@pytest.fixture
def control(server: Any) -> Control:
    return Control(server.url)


def errcode(answer: Dict[str, Any]) -> int:
    return answer["errcode"]


def closed_port() -> int:
    """A loopback port nothing listens on (bound for a moment, then freed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def make_bot(sandbox: Sandbox, server: Any) -> Iterator[Callable[..., WeChatBot]]:
    """``make_bot(aes_key=None, **connect_options)``: a wechatpy bot on its own loopback port, connected."""
    running: List[Tuple[WeChatBot, SandboxServer]] = []

    def make(aes_key: Optional[str] = None, **options: Any) -> WeChatBot:
        bot = WeChatBot(sandbox, server.url, aes_key)
        served = SandboxServer(bot.app)
        running.append((bot, served))
        bot.url = served.url + "/wechat"
        sandbox.connect_bot(bot.url, BOT_TOKEN, encoding_aes_key=aes_key, **options)
        return bot

    yield make
    for bot, served in running:
        bot.hold.set()
        served.stop()
