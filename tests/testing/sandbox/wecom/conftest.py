"""Fixtures for the WeCom sandbox tests: a served sandbox, a small WeCom API client, an account, and a bot."""
from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest
import requests

from kf_plugin.testing.sandbox import Sandbox, SandboxServer, WeComSandbox

from .wecom_bot import AES_KEY, TOKEN, WeComBot

CUSTOMER = "wmCustomerA0000000000000000001"
OTHER_CUSTOMER = "wmCustomerB0000000000000000002"


class Kf:
    """Calls the WeCom paths of the sandbox over HTTP; ``token`` is added to every call but gettoken.

    With the held token (``token=True``), a call answered 42001 gets a new token and is made again,
    as a real client does, so tests can move the clock by days.
    """

    def __init__(self, url: str, wecom: WeComSandbox):
        self.url = url
        self.wecom = wecom
        self.http = requests.Session()
        self.http.trust_env = False  # never route loopback calls through a proxy from the environment
        self.token: Optional[str] = None

    def gettoken(self, corpid: Any = True, corpsecret: Any = True) -> Dict[str, Any]:
        query = {"corpid": self.wecom.corpid if corpid is True else corpid,
                 "corpsecret": self.wecom.secret if corpsecret is True else corpsecret}
        return self.get("/cgi-bin/gettoken", token=None, **{k: v for k, v in query.items() if v is not None})

    def fetch_token(self) -> str:
        answer = self.gettoken()
        assert answer["errcode"] == 0, answer
        self.token = answer["access_token"]
        return self.token

    def _query(self, token: Any, query: Dict[str, Any]) -> Dict[str, Any]:
        token = self.token if token is True else token
        return dict(query, access_token=token) if token is not None else query

    def _call(self, method: str, path: str, token: Any, query: Dict[str, Any], **options: Any) -> Dict[str, Any]:
        answer = self.http.request(method, self.url + path, params=self._query(token, query), timeout=10,
                                   **options).json()
        if token is True and answer["errcode"] == 42001:  # the held token ran out as the clock moved: renew it
            self.fetch_token()
            answer = self.http.request(method, self.url + path, params=self._query(token, query), timeout=10,
                                       **options).json()
        return answer

    def get(self, path: str, token: Any = True, **query: Any) -> Dict[str, Any]:
        return self._call("GET", path, token, query)

    def post(self, path: str, body: Any = None, token: Any = True, **query: Any) -> Dict[str, Any]:
        return self._call("POST", path, token, query, json=body)

    def post_raw(self, path: str, data: bytes, token: Any = True) -> Dict[str, Any]:
        return self._call("POST", path, token, {}, data=data)

    # -- the calls the tests make most ------------------------------------------------------

    def state(self, open_kfid: str, external_userid: str = CUSTOMER) -> Dict[str, Any]:
        return self.post("/cgi-bin/kf/service_state/get", {"open_kfid": open_kfid, "external_userid": external_userid})

    def trans(self, open_kfid: str, state: int, servicer: Optional[str] = None,
              external_userid: str = CUSTOMER) -> Dict[str, Any]:
        body: Dict[str, Any] = {"open_kfid": open_kfid, "external_userid": external_userid, "service_state": state}
        if servicer is not None:
            body["servicer_userid"] = servicer
        return self.post("/cgi-bin/kf/service_state/trans", body)

    def send_text(self, open_kfid: str, text: str, external_userid: str = CUSTOMER, **extra: Any) -> Dict[str, Any]:
        body = {"touser": external_userid, "open_kfid": open_kfid, "msgtype": "text", "text": {"content": text}}
        return self.post("/cgi-bin/kf/send_msg", dict(body, **extra))

    def on_event(self, code: str, text: str = "欢迎", **extra: Any) -> Dict[str, Any]:
        return self.post("/cgi-bin/kf/send_msg_on_event",
                         dict({"code": code, "msgtype": "text", "text": {"content": text}}, **extra))

    def sync(self, **body: Any) -> Dict[str, Any]:
        return self.post("/cgi-bin/kf/sync_msg", body)


def errcode(answer: Dict[str, Any]) -> int:
    return answer["errcode"]


@pytest.fixture
def wecom(sandbox: Sandbox) -> WeComSandbox:
    return sandbox.wecom


@pytest.fixture
def kf(server: Any, wecom: WeComSandbox) -> Kf:
    """A client holding a valid access token."""
    client = Kf(server.url, wecom)
    client.fetch_token()
    return client


@pytest.fixture
def kfid(wecom: WeComSandbox) -> str:
    """An account with two receiving servicers (zhangsan, lisi), one stopped (wangwu), one not activated (zhaoliu)."""
    open_kfid = wecom.add_account("售后客服")
    wecom.add_servicer(open_kfid, "zhangsan")
    wecom.add_servicer(open_kfid, "lisi")
    wecom.add_servicer(open_kfid, "wangwu", receiving=False)
    wecom.add_servicer(open_kfid, "zhaoliu", activated=False)
    return open_kfid


@pytest.fixture
def make_bot(wecom: WeComSandbox) -> Iterator[Callable[..., WeComBot]]:
    """``make_bot(corpid=None, **connect_options)``: a wechatpy WeCom bot on its own loopback port, connected."""
    running: List[SandboxServer] = []
    bots: List[WeComBot] = []

    def make(corpid: Optional[str] = None, status: int = 200, **options: Any) -> WeComBot:
        bot = WeComBot(corpid or wecom.corpid, status=status)
        served = SandboxServer(bot.app)
        running.append(served)
        bots.append(bot)
        bot.url = served.url + "/wecom"
        wecom.connect_bot(bot.url, TOKEN, AES_KEY, **options)
        return bot

    yield make
    for bot in bots:
        bot.hold.set()
    for served in running:
        served.stop()


@pytest.fixture
def bot(make_bot: Callable[..., WeComBot]) -> WeComBot:
    return make_bot()
