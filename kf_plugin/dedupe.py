"""WeChat's retries answered exactly once.

WeChat delivers a push up to three times when it gets no answer within 5 s.
Each push gets a key; the first delivery claims it, runs the handler and stores
the rendered reply, later deliveries get that same reply. A retry that arrives
while the first delivery is still being handled waits (bounded) for its result
instead of running the handler again; if the worker handling it died, its claim
lapses within a lease and the retry runs the handler itself.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple

from .errors import BadPush
from .frozen import quick_init
from .lifecycle import Conversation, Transition
from .state.base import DEFAULT_LEASE, Grant, Outcome, PushClaim, ReplayStore, WindowStore

__all__ = ["push_key", "body_digest", "Deduplicator", "Known"]

log = logging.getLogger(__name__)

_SEP = "\x1f"


def push_key(message: Any) -> str:
    """A key that is the same for every delivery of one push.

    Messages: account, sender, MsgId and CreateTime (MsgId alone has been seen
    to collide). Events: account, sender, CreateTime, Event and EventKey. A
    message without a MsgId is keyed by all of its fields, so two different
    messages of one sender in the same second stay apart.
    """
    data = message._data
    if data.get("MsgId"):
        fields: Tuple[Any, ...] = ("m", data.get("ToUserName"), data.get("FromUserName"), data.get("MsgId"),
                                   data.get("CreateTime"))
    elif str(data.get("MsgType", "")).lower() == "event":
        fields = ("e", data.get("ToUserName"), data.get("FromUserName"), data.get("CreateTime"),
                  data.get("Event"), data.get("EventKey"))
    else:
        fields = ("c", *(f"{name}={value}" for name, value in sorted(data.items(), key=lambda item: item[0])))
    raw = _SEP.join(["" if f is None else str(f) for f in fields])
    return hashlib.blake2b(raw.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def body_digest(body: bytes) -> str:
    """A short digest of a push's body, to tell one body sent under a signed query from another."""
    return hashlib.blake2b(body, digest_size=16).hexdigest()


@quick_init
@dataclass(frozen=True)
class Known:
    """A push's rendered reply, known before its claim because producing it changes nothing.

    The claim stores it as the reply at once (one round trip fewer), with
    ``handoff``, the request that takes the sender from the bot to the queue
    (when the reply hands off). It is worked out for a sender with the bot:
    for a sender queued or with an agent the claim stays pending and
    ``produce`` runs as for any push, and must do that work itself. ``then``
    (e.g. sending a notice in the background) runs once per push, for the
    delivery whose claim stored the reply; its exception is logged, never raised.
    """

    reply: str
    then: Optional[Callable[[], object]] = None
    handoff: Optional[Transition] = None

    def follow_up(self) -> None:
        if self.then is None:
            return
        try:
            self.then()
        except Exception:  # the reply is stored and goes out; what follows it must not fail the push
            log.exception("the work that follows a push's reply failed")


class Deduplicator:
    """Runs a push's handler once and replays its reply to retries.

    ``ttl``: how long a reply is replayed (seconds); ``keep_for``: at least
    this long (the clock-skew window: a captured request replayed within it
    must still find its push answered). ``wait``: how long a retry waits for a
    first delivery that is still being handled. ``lease``: how long a claim
    outlives its worker. ``window``: where a push's send rights go when the
    replay store does not record them itself.
    """

    def __init__(self, store: ReplayStore, ttl: float = 60.0, wait: float = 4.0, *, keep_for: float = 0.0,
                 lease: float = DEFAULT_LEASE, window: Optional[WindowStore] = None):
        self.store = store
        self.ttl = ttl
        self.wait = wait
        self.keep_for = keep_for
        self.lease = lease
        self.window = window

    @property
    def kept_for(self) -> float:
        """Seconds a reply is kept: ``ttl``, or the clock-skew window if longer."""
        return max(self.ttl, self.keep_for)

    def run(self, key: str, produce: Callable[[Optional[Conversation]], str], *,
            grant: Optional[Tuple[str, Grant]] = None, binding: Optional[Tuple[str, str]] = None,
            now: float = 0.0, known: Optional[Known] = None, openid: Optional[str] = None) -> str:
        """The reply for ``key``: ``produce(conversation)``'s for the first delivery, the stored one for retries.

        ``grant``: the send rights the push gives (``(openid, Grant)``), recorded
        once per push, with its first claim. ``binding``: ``(query, body digest)``
        of a plain push. ``known``: the reply, when it is known before the claim
        (see :class:`Known`). ``openid``: the sender, whose hand-off conversation
        the claim reads and ``produce`` gets (``None`` when the store keeps no
        conversations). If ``produce`` raises, the claim is released (a later
        retry runs it again) and the exception propagates.

        :raises BadPush: (403) the push's signed query was already used with another body.
        """
        # A store records the grant with the claim (one round trip) when its grants land in our window.
        grant_with_claim = grant if self.window is None or self.store.window is self.window else None
        kept_for = self.kept_for
        push = PushClaim(key, kept_for, min(self.lease, kept_for), grant_with_claim, now, binding,
                         2 * self.keep_for, None if known is None else known.reply, openid,
                         None if known is None else known.handoff)
        deadline = time.monotonic() + self.wait
        while True:
            claim = self.store.acquire(push)
            if claim.outcome is Outcome.CLAIMED:
                if grant is not None and not (grant_with_claim and claim.granted) and self.window is not None:
                    self.window.add_grant(grant[0], grant[1], now)
                if claim.answered and known is not None:
                    known.follow_up()
                    return known.reply
                return self._produce(key, functools.partial(produce, claim.conversation))
            if claim.outcome is Outcome.DONE:
                return claim.reply or ""
            if claim.outcome is Outcome.CONFLICT:
                raise BadPush(403, "this signature, timestamp and nonce were already used with a different body")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning("a retried push is still being handled after %.1f s; answering it with 'success'",
                            self.wait)
                return ""
            reply = self.store.wait(key, remaining)
            if reply is not None:
                return reply
            # The first delivery failed and released its claim, its lease lapsed, or the time is up.

    def _produce(self, key: str, produce: Callable[[], str]) -> str:
        try:
            reply = produce()
        except BaseException:
            self.store.release(key)
            raise
        self.store.complete(key, reply, self.kept_for)
        return reply
