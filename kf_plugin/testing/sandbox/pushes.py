"""WeChat's side of a push: signed (and in safe mode encrypted) POSTs to a bot's URL, and their log.

A push waits for the bot's answer for :attr:`Bot.timeout` seconds (WeChat waits 5)
and is sent once: the sandbox does not play WeChat's retries (``kf-plugin push
--deliveries`` and :class:`~kf_plugin.testing.WeChatTestClient` do).
"""
from __future__ import annotations

import collections
import logging
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, Optional

import requests
import xmltodict

from ...errors import KfError
from ..client import Answer, PushSigner

__all__ = ["Bot", "BotUnreachableError", "Push", "Background", "DEFAULT_TIMEOUT"]

DEFAULT_TIMEOUT = 5.0  # WeChat's own deadline for an answer

log = logging.getLogger(__name__)


class BotUnreachableError(KfError):
    """The bot's URL did not answer a push: connection refused, timed out, or an answer that does not open.

    ``url`` is the bot's URL.
    """

    def __init__(self, url: str, reason: str):
        self.url = url
        super().__init__(f"the bot at {url} did not answer the push: {reason}")


@dataclass(frozen=True)
class Push:
    """One push sent to the bot: who it came from, its XML (before signing), when (sandbox clock),
    and the bot's :class:`~kf_plugin.testing.Answer` — or, when there was none, ``error``."""

    openid: str
    xml: str
    at: float
    answer: Optional[Answer] = None
    error: Optional[str] = None

    @property
    def fields(self) -> Dict[str, Any]:
        """The push's XML fields (``MsgType``, ``Content``, ``Event``, ``KfAccount``, ...)."""
        return dict(xmltodict.parse(self.xml)["xml"])

    @property
    def msg_type(self) -> str:
        return str(self.fields["MsgType"])

    @property
    def event(self) -> Optional[str]:
        """The event's name for an event push, None for a message."""
        return self.fields.get("Event")


def _check_url(url: object) -> str:
    """:raises ValueError: not an http(s) URL with a host."""
    parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"the bot's URL must be http(s)://host[:port]/path, got {url!r}")
    return str(url)


class Bot:
    """A bot's webhook as WeChat reaches it: its URL, Token, EncodingAESKey (safe mode) and the
    official account's id (``ToUserName`` of every push).

    :raises ValueError: a URL that is not http(s), an empty token or account id, a timeout that is not positive.
    :raises ConfigError: an EncodingAESKey that is not 43 letters and digits.
    """

    def __init__(self, url: str, token: str, encoding_aes_key: Optional[str], appid: str, account_id: str,
                 timeout: float, clock: Callable[[], float]):
        self.url = _check_url(url)
        if not isinstance(token, str) or not token:
            raise ValueError("the bot's token must be a non-empty string (the Token of its WeChat settings)")
        if not isinstance(account_id, str) or not account_id:
            raise ValueError("account_id must be a non-empty string (the official account's id, gh_...)")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.account_id = account_id
        self.timeout = float(timeout)
        self.signer = PushSigner(token, encoding_aes_key, appid, clock=clock)

    def __repr__(self) -> str:
        return f"<Bot {self.url}{' safe mode' if self.signer.cipher else ''}>"

    def deliver(self, xml: str) -> Answer:
        """Sign (and encrypt) ``xml``, POST it, and the bot's answer, its reply decrypted.

        Any HTTP status is an answer; a 200 whose encrypted reply does not open is not.

        :raises BotUnreachableError: no answer within the timeout, or a reply that does not open.
        """
        query, body = self.signer.sign(xml)
        try:
            with requests.Session() as http:
                http.trust_env = False  # a loopback bot must never be reached through a proxy
                response = http.post(self.url, params=query, data=body, timeout=self.timeout,
                                     headers={"Content-Type": "text/xml"})
        except requests.RequestException as exc:
            raise BotUnreachableError(self.url, f"{type(exc).__name__}: {exc}") from exc
        text = response.content.decode("utf-8", errors="replace")
        try:
            opened = self.signer.open_reply(text) if response.status_code == 200 else text
        except (KfError, ValueError) as exc:
            raise BotUnreachableError(self.url, f"its reply does not open: {exc}") from exc
        return Answer(response.status_code, text, response.headers.get("Content-Type", ""), opened)


class Background:
    """Work run one job at a time, in the order submitted, on a daemon thread that ends when idle.

    :meth:`reserve` counts a job before it is submitted, so :meth:`wait` also waits
    for a job whose submission is still to come (an event whose API answer is being sent).
    """

    def __init__(self) -> None:
        self._done = threading.Condition()
        self._jobs: Deque[Callable[[], None]] = collections.deque()
        self._pending = 0
        self._running = False

    def reserve(self) -> None:
        with self._done:
            self._pending += 1

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` after the jobs before it; it must have been :meth:`reserve` d."""
        with self._done:
            self._jobs.append(job)
            if self._running:
                return
            self._running = True
        threading.Thread(target=self._drain, name="kf-sandbox-pushes", daemon=True).start()

    def wait(self, timeout: float) -> bool:
        """Whether every reserved job ran within ``timeout`` seconds."""
        with self._done:
            return self._done.wait_for(lambda: self._pending == 0, timeout)

    def _drain(self) -> None:
        while True:
            with self._done:
                if not self._jobs:
                    self._running = False
                    return
                job = self._jobs.popleft()
            try:
                job()
            except Exception:  # one failing push must not stop the ones queued after it
                log.exception("sandbox failed to push in the background")
            finally:
                with self._done:
                    self._pending -= 1
                    self._done.notify_all()
