"""WeCom's side of the callback: ``kf_msg_or_event`` POSTed to the bot's URL with WeCom's crypto, and its log.

Each callback is the event XML (``ToUserName`` the corpid, ``CreateTime``, ``MsgType`` event,
``Event`` kf_msg_or_event, ``Token``, ``OpenKfId``) encrypted for the corpid (the receive id),
in WeCom's envelope (``ToUserName``, ``Encrypt``, ``AgentID``), with ``msg_signature``,
``timestamp`` and ``nonce`` in the query. Callbacks go out one at a time, in order, on a
background thread; each waits :attr:`WeComBot.timeout` seconds for an answer and is sent
once (the sandbox does not play WeCom's retries).
"""
from __future__ import annotations

import secrets
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import requests
import xmltodict

from ....replies import cdata
from ....security import PushCipher, sign
from ..pushes import Background, BotUnreachableError
from .state import WeComState

__all__ = ["WeComBot", "Callback", "Notifier", "callback_xml"]


@dataclass(frozen=True)
class Callback:
    """One callback: its account and token, its XML (before encryption), when (sandbox clock), and the bot's
    answer (``status``, ``body``) — or, when there was none, ``error``."""

    open_kfid: str
    token: str
    xml: str
    at: float
    status: Optional[int] = None
    body: Optional[str] = None
    error: Optional[str] = None

    @property
    def fields(self) -> Dict[str, Any]:
        """The callback's XML fields (``Event``, ``Token``, ``OpenKfId``, ...)."""
        return dict(xmltodict.parse(self.xml)["xml"])


def callback_xml(corpid: str, open_kfid: str, token: str, at: float) -> str:
    """The plain XML of a ``kf_msg_or_event`` callback."""
    return (f"<xml><ToUserName>{cdata(corpid)}</ToUserName><CreateTime>{int(at)}</CreateTime>"
            f"<MsgType>{cdata('event')}</MsgType><Event>{cdata('kf_msg_or_event')}</Event>"
            f"<Token>{cdata(token)}</Token><OpenKfId>{cdata(open_kfid)}</OpenKfId></xml>")


class WeComBot:
    """A bot's callback URL as WeCom reaches it: its URL, Token, EncodingAESKey and the corp (the receive id).

    :raises ValueError: a URL that is not http(s), an empty token or corpid, a timeout that is not positive.
    :raises ConfigError: an EncodingAESKey that is not 43 letters and digits.
    """

    def __init__(self, url: str, token: str, encoding_aes_key: str, corpid: str, agentid: str, timeout: float,
                 clock: Callable[[], float]):
        parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"the bot's URL must be http(s)://host[:port]/path, got {url!r}")
        if not isinstance(token, str) or not token:
            raise ValueError("the bot's token must be a non-empty string (the Token of its callback settings)")
        if not isinstance(corpid, str) or not corpid:
            raise ValueError("corpid must be a non-empty string (the receive id of WeCom's crypto)")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.url, self.token, self.corpid, self.agentid = url, token, corpid, agentid
        self.timeout = float(timeout)
        self.clock = clock
        self.cipher = PushCipher(token, encoding_aes_key, corpid)

    def __repr__(self) -> str:
        return f"<WeComBot {self.url} corpid={self.corpid}>"

    def _signed(self, encrypted: str) -> Dict[str, str]:
        timestamp, nonce = str(int(self.clock())), str(secrets.randbelow(10**10))
        return {"msg_signature": sign(self.token, timestamp, nonce, encrypted), "timestamp": timestamp,
                "nonce": nonce}

    def envelope(self, xml: str) -> Tuple[Dict[str, str], bytes]:
        """The query and the body WeCom POSTs for ``xml``."""
        encrypted = self.cipher.encrypt_text(xml)
        body = (f"<xml><ToUserName>{cdata(self.corpid)}</ToUserName><Encrypt>{cdata(encrypted)}</Encrypt>"
                f"<AgentID>{cdata(self.agentid)}</AgentID></xml>")
        return self._signed(encrypted), body.encode("utf-8")

    def _request(self, method: str, **options: Any) -> requests.Response:
        try:
            with requests.Session() as http:
                http.trust_env = False  # a loopback bot must never be reached through a proxy
                return http.request(method, self.url, timeout=self.timeout, **options)
        except requests.RequestException as exc:
            raise BotUnreachableError(self.url, f"{type(exc).__name__}: {exc}") from exc

    def deliver(self, xml: str) -> Tuple[int, str]:
        """POST ``xml``; the bot's status and body (any HTTP status is an answer).

        :raises BotUnreachableError: no answer within the timeout.
        """
        query, body = self.envelope(xml)
        response = self._request("POST", params=query, data=body, headers={"Content-Type": "text/xml"})
        return response.status_code, response.content.decode("utf-8", errors="replace")

    def verify(self) -> bool:
        """WeCom's check of the URL: a GET with an encrypted ``echostr``; whether the bot answered its plaintext.

        :raises BotUnreachableError: no answer within the timeout.
        """
        plaintext = str(secrets.randbelow(10**18))
        encrypted = self.cipher.encrypt_text(plaintext)
        response = self._request("GET", params=dict(self._signed(encrypted), echostr=encrypted))
        return response.status_code == 200 and response.content.decode("utf-8", errors="replace") == plaintext


class Notifier:
    """Sends the callbacks to the connected bot, if any, in the background, and logs them."""

    def __init__(self) -> None:
        self.bot: Optional[WeComBot] = None
        self._log_lock = threading.Lock()
        self._callbacks: List[Callback] = []
        self._background = Background()

    @property
    def callbacks(self) -> List[Callback]:
        with self._log_lock:
            return list(self._callbacks)

    def wait(self, timeout: float) -> None:
        """:raises TimeoutError: callbacks still under way after ``timeout`` seconds."""
        if not self._background.wait(timeout):
            raise TimeoutError(f"the sandbox's WeCom callbacks did not finish within {timeout} s")

    def announce(self, state: WeComState) -> None:
        """Called holding the state's lock after a change: a callback, with a new token, for each item added
        since the last call, queued for the background (nothing when no bot is connected)."""
        items, bot = state.take_fresh(), self.bot
        if bot is None or not items:
            return
        now = state.now()
        callbacks = []
        for item in items:
            token = state.inbox.issue_token(item.open_kfid, now)
            callbacks.append(Callback(item.open_kfid, token, callback_xml(bot.corpid, item.open_kfid, token, now), now))
        self._background.reserve()
        self._background.submit(lambda: self._send_all(bot, callbacks))

    def _send_all(self, bot: WeComBot, callbacks: List[Callback]) -> None:
        for callback in callbacks:
            try:
                status, body = bot.deliver(callback.xml)
                done = Callback(callback.open_kfid, callback.token, callback.xml, callback.at, status, body)
            except BotUnreachableError as exc:
                done = Callback(callback.open_kfid, callback.token, callback.xml, callback.at, error=str(exc))
            with self._log_lock:
                self._callbacks.append(done)
