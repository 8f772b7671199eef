"""Storage interfaces."""
from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Optional, Tuple

from ..frozen import quick_init
from ..lifecycle import Conversation, Transition


@quick_init
@dataclass(frozen=True)
class Grant:
    """Send rights one interaction gave: ``count`` messages (``None``: no limit) until ``expires_at``."""

    action: str
    count: Optional[int]
    expires_at: float
    used: int = 0

    def usable(self, now: float) -> bool:
        return self.expires_at > now and (self.count is None or self.used < self.count)


#: Seconds a claim stays its worker's without renewal; the worker renews it well before.
DEFAULT_LEASE = 3.0


class Outcome(enum.Enum):
    """What :meth:`ReplayStore.acquire` found."""

    CLAIMED = "claimed"      # the caller handles the push now
    PENDING = "pending"      # somebody else is handling it
    DONE = "done"            # it was answered: the reply is in the claim
    CONFLICT = "conflict"    # its signed query was already used for a different body


@quick_init
@dataclass(frozen=True)
class PushClaim:
    """What the first delivery of a push writes with its claim.

    ``lease``: seconds the claim stays the caller's unless renewed (a worker that
    dies mid-handler holds the push no longer than that); ``ttl``: seconds the
    reply is then kept for retries. ``grant``: the send rights the push gives its
    sender (``(openid, Grant)``), recorded once per push with the first claim.
    ``binding``: ``(query, digest)`` — the signed query a plain push came with
    (its timestamp and nonce) and a digest of its body; the same query with
    another body is a forgery. ``binding_ttl``: how long the binding is kept.
    ``answer``: the push's reply, when the caller knows it without running
    anything that must happen once (a kf rule's transfer, a fixed text): the
    claim then stores it as the push's reply at once, saving the round trip of
    :meth:`ReplayStore.complete` (see :attr:`Claim.answered`). ``openid``: the
    sender, whose hand-off :class:`~kf_plugin.lifecycle.Conversation` the claim
    reads (:attr:`Claim.conversation`); an ``answer`` is then stored only for a
    user with the bot (it was worked out for one). ``handoff``: the transition
    that answer makes (a request taking the user from the bot to the queue),
    stored with it.
    """

    key: str
    ttl: float
    lease: float = DEFAULT_LEASE
    grant: Optional[Tuple[str, Grant]] = None
    now: float = 0.0
    binding: Optional[Tuple[str, str]] = None
    binding_ttl: float = 0.0
    answer: Optional[str] = None
    openid: Optional[str] = None
    handoff: Optional[Transition] = None


@quick_init
@dataclass(frozen=True)
class Claim:
    """The answer of :meth:`ReplayStore.acquire`.

    ``reply``: the stored reply (``DONE``). ``granted``: the push's send rights
    are recorded (by this claim, or by an earlier claim of the same push); when
    ``False`` after ``CLAIMED`` the caller records them itself. ``answered``:
    ``CLAIMED`` with :attr:`PushClaim.answer` stored as the reply (the caller
    completes nothing); when ``False`` after ``CLAIMED`` the caller produces
    the reply and completes the claim as usual. ``conversation``: where
    :attr:`PushClaim.openid` is in the hand-off lifecycle, read with a claim
    (``None``: not asked, or the store keeps no conversations).
    """

    outcome: Outcome
    reply: Optional[str] = None
    granted: bool = False
    answered: bool = False
    conversation: Optional[Conversation] = None


class ReplayStore(ABC):
    """Remembers the reply given to a push, so WeChat's retries get the same answer.

    A key goes through three states: absent → pending (claimed by the worker
    handling the push) → done (holding the rendered reply). A pending claim is
    a lease: the worker renews it while its handler runs, and a claim whose
    lease ran out (its worker died) may be taken over. Every state has a time
    to live, so nothing blocks a key forever.
    """

    #: The window store the first claim of a push records its grant in (``None``: the caller records it).
    window: Optional["WindowStore"] = None

    @abstractmethod
    def acquire(self, push: PushClaim) -> Claim:
        """Claim ``push.key`` if it is absent or its lease ran out; otherwise say what it is.

        Atomic with the claim: the binding is checked and stored, and — for the
        first claim of the push only — the grant is recorded (if this store
        records grants: see :attr:`Claim.granted`). A store may store
        ``push.answer`` as the reply with the claim (:attr:`Claim.answered`) or
        leave the claim pending for the caller to complete.
        """

    def claim(self, key: str, ttl: float) -> bool:
        """Mark ``key`` pending; ``True`` only for the caller that found it absent (or its lease lapsed)."""
        return self.acquire(PushClaim(key, ttl, lease=min(ttl, DEFAULT_LEASE))).outcome is Outcome.CLAIMED

    @abstractmethod
    def complete(self, key: str, reply: str, ttl: float) -> None:
        """Store the reply for ``key`` (``""`` for "nothing to say") and wake waiters."""

    @abstractmethod
    def release(self, key: str) -> None:
        """Forget a pending ``key`` whose handling failed, so a retry may try again."""

    @abstractmethod
    def wait(self, key: str, timeout: float) -> Optional[str]:
        """The stored reply of ``key``, waiting up to ``timeout`` seconds while it is pending.

        ``None`` when the key is absent, its lease ran out, or it is still
        pending when the time is up.
        """


@dataclass(frozen=True)
class WindowRecord:
    """What is known of one user's send rights."""

    grants: Tuple[Grant, ...] = ()


#: A user who writes a lot would otherwise pile up a grant per message for 48 hours.
#: Past this many, the grant that expires first (the one used first anyway) is dropped.
MAX_GRANTS_PER_USER = 8


class WindowStore(ABC):
    """Per-user send rights (the 48-hour window and its quotas).

    Implementations keep each user's record at least until its last grant
    expires, keep at most :data:`MAX_GRANTS_PER_USER` grants a user, and make
    :meth:`consume` atomic.
    """

    @abstractmethod
    def get(self, openid: str, now: float) -> Optional[WindowRecord]:
        """The user's record with expired grants dropped; ``None`` if the user is unknown."""

    @abstractmethod
    def add_grant(self, openid: str, grant: Grant, now: float) -> None:
        """Record new send rights for the user."""

    @abstractmethod
    def consume(self, openid: str, now: float) -> Optional[Grant]:
        """Use one unit of the usable grant that expires first; the grant used, or ``None`` if none is usable."""

    @abstractmethod
    def revoke(self, openid: str, now: float, *, exhausted: bool) -> None:
        """WeChat refused a send: ``exhausted`` (45047) uses every grant up; otherwise (45015) drops them.

        Either way the user becomes known, so strict sends are refused until the next interaction.
        """


@dataclass(frozen=True)
class Token:
    """An access token and when it stops working (unix time)."""

    value: str
    expires_at: float


class TokenStore(ABC):
    """Where the access token lives, plus the locks that make one worker renew it.

    Locks are leases: ``acquire`` succeeds when the lock is free, expired, or
    already held by ``owner`` (then it is extended), so a dead holder blocks
    nobody for longer than ``ttl``.
    """

    @abstractmethod
    def get(self) -> Optional[Token]:
        """The stored token, or ``None``."""

    @abstractmethod
    def put(self, token: Token, now: float) -> None:
        """Store ``token`` until it expires."""

    @abstractmethod
    def invalidate(self, value: str) -> bool:
        """Drop the token only if it is still ``value`` (compare-and-swap); whether it was dropped."""

    @abstractmethod
    def acquire(self, name: str, owner: str, ttl: float) -> bool:
        """Take or extend the lease ``name`` for ``owner``."""

    @abstractmethod
    def release(self, name: str, owner: str) -> None:
        """Give the lease up if ``owner`` holds it."""

    @abstractmethod
    def holder(self, name: str) -> Optional[str]:
        """Who holds the lease ``name`` now."""

    @abstractmethod
    def count(self, name: str, ttl: float) -> int:
        """Add one to the counter ``name`` (which resets ``ttl`` seconds after its first use); the new value."""
