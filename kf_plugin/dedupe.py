"""WeChat's retries answered exactly once.

WeChat delivers a push up to three times when it gets no answer within 5 s.
Each push gets a key; the first delivery runs the handler and stores the
rendered reply, later deliveries get that same reply. A retry that arrives
while the first delivery is still being handled waits (bounded) for its result
instead of running the handler again.
"""
from __future__ import annotations

import hashlib
import logging
from typing import Any, Callable

from .state.base import ReplayStore

__all__ = ["push_key", "Deduplicator"]

log = logging.getLogger(__name__)


def push_key(message: Any) -> str:
    """A key that is the same for every delivery of one push.

    Messages: account, sender, MsgId and CreateTime (MsgId alone has been seen
    to collide). Events: account, sender, CreateTime, Event and EventKey.
    """
    data = message._data
    if data.get("MsgId"):
        fields = ("m", data.get("ToUserName"), data.get("FromUserName"), data.get("MsgId"), data.get("CreateTime"))
    else:
        fields = ("e", data.get("ToUserName"), data.get("FromUserName"), data.get("CreateTime"),
                  data.get("Event"), data.get("EventKey"))
    raw = "\x1f".join("" if f is None else str(f) for f in fields)
    return hashlib.blake2b(raw.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


class Deduplicator:
    """Runs a push's handler once and replays its reply to retries.

    ``ttl``: how long a reply is replayed (seconds). ``wait``: how long a retry
    waits for a first delivery that is still being handled.
    """

    def __init__(self, store: ReplayStore, ttl: float = 60.0, wait: float = 4.0):
        self.store = store
        self.ttl = ttl
        self.wait = wait

    def run(self, key: str, produce: Callable[[], str]) -> str:
        """The reply for ``key``: ``produce()``'s for the first delivery, the stored one for retries.

        If ``produce`` raises, the claim is released (a later retry runs it
        again) and the exception propagates.
        """
        if self.store.claim(key, self.ttl):
            return self._produce(key, produce)
        stored = self.store.wait(key, self.wait)
        if stored is not None:
            return stored
        # The first delivery failed and released its claim, or its entry expired.
        if self.store.claim(key, self.ttl):
            return self._produce(key, produce)
        log.warning("a retried push is still being handled after %.1f s; answering it with 'success'", self.wait)
        return ""

    def _produce(self, key: str, produce: Callable[[], str]) -> str:
        try:
            reply = produce()
        except BaseException:
            self.store.release(key)
            raise
        self.store.complete(key, reply, self.ttl)
        return reply
