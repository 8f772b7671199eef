"""The 48-hour window: who may be sent customer-service messages, how many, until when.

Each interaction a push reveals grants send rights (WeChat's customer-service message
docs: a message gives 5 messages within 48 h; a menu click, follow or QR scan gives 3
within a minute). A successful payment grants nothing by default: WeChat's announcement
of 2023-05-30 on customer-service message rules cut the message quota from 20 to 5 and
cancelled the payment scenario; a quotas table may grant it again for an account that
still has it.
Sends consult the tracker: in strict mode a send WeChat would refuse is refused
before any HTTP call; a successful send consumes a unit; WeChat's own 45015 and
45047 answers correct the record.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Tuple

from .errors import OutsideWindowError, QuotaExceededError
from .messages import event_of, msg_type_of, sender_of
from .metrics import NO_METRICS, Metrics
from .state import Grant, MemoryWindowStore, WindowStore

__all__ = ["Quota", "DEFAULT_QUOTAS", "ACTIONS", "action_of", "WindowStatus", "WindowTracker"]

HOUR = 3600.0


@dataclass(frozen=True)
class Quota:
    """``count`` messages (``None``: no limit; 0: the interaction grants nothing) within ``seconds`` of it."""

    count: Optional[int]
    seconds: float


#: WeChat's current documentation; payment grants nothing since the 2023-05-30 announcement.
DEFAULT_QUOTAS: Dict[str, Quota] = {
    "message": Quota(5, 48 * HOUR),
    "click": Quota(3, 60.0),
    "follow": Quota(3, 60.0),
    "scan": Quota(3, 60.0),
    "payment": Quota(0, 48 * HOUR),
}
ACTIONS = tuple(DEFAULT_QUOTAS)
UNKNOWN_USER_POLICIES = ("attempt", "refuse")

_CLICK_EVENTS = frozenset({"click", "scancode_push", "scancode_waitmsg"})
_FOLLOW_EVENTS = frozenset({"subscribe", "subscribe_scan"})


def action_of(message: Any) -> Optional[str]:
    """The interaction a push shows (``message``, ``click``, ``follow``, ``scan``), or ``None``.

    Views, locations and customer-service events grant nothing.
    """
    kind = msg_type_of(message)
    if kind is None:
        return None
    if kind != "event":
        return "message"
    event = event_of(message)
    if event in _CLICK_EVENTS:
        return "click"
    if event in _FOLLOW_EVENTS:
        return "follow"
    if event == "scan":
        return "scan"
    return None


@dataclass(frozen=True)
class WindowStatus:
    """Whether a customer-service message to ``openid`` can be sent now.

    ``known``: the tracker has seen the user. ``remaining``: units left
    (``None``: no limit, or unknown user). ``until``: when the last grant ends.
    """

    openid: str
    known: bool
    can_send: bool
    remaining: Optional[int]
    until: Optional[float]
    reason: str

    def as_dict(self) -> Dict[str, Any]:
        return {"openid": self.openid, "known": self.known, "can_send": self.can_send,
                "remaining": self.remaining, "until": self.until, "reason": self.reason}


class WindowTracker:
    """Tracks send rights per user; see the module docstring.

    ``quotas`` overrides entries of :data:`DEFAULT_QUOTAS`. ``unknown_users``:
    ``attempt`` (send and let WeChat decide) or ``refuse``. :attr:`metrics` counts the sends it refuses.
    """

    def __init__(self, store: Optional[WindowStore] = None, quotas: Optional[Mapping[str, Quota]] = None,
                 unknown_users: str = "attempt", clock: Callable[[], float] = time.time):
        self.store = store if store is not None else MemoryWindowStore()
        self.clock = clock
        self.metrics: Metrics = NO_METRICS
        self.configure(quotas, unknown_users)

    def configure(self, quotas: Optional[Mapping[str, Quota]] = None, unknown_users: str = "attempt") -> None:
        """Change the quota table and the unknown-user policy; what is recorded stays.

        :raises ValueError: an unknown interaction or policy.
        """
        if unknown_users not in UNKNOWN_USER_POLICIES:
            raise ValueError(f"unknown_users must be attempt or refuse, not {unknown_users!r}")
        unknown = set(quotas or ()) - set(ACTIONS)
        if unknown:
            raise ValueError(f"no such interaction: {', '.join(sorted(unknown))} (known: {', '.join(ACTIONS)})")
        self.quotas = {**DEFAULT_QUOTAS, **(quotas or {})}
        self.unknown_users = unknown_users

    def record(self, message: Any) -> Optional[str]:
        """Grant the rights a pushed message gives its sender; the action recorded, if any."""
        granted = self.grant_for(message)
        if granted is not None:
            self.store.add_grant(granted[0], granted[1], self.clock())
        return granted[1].action if granted is not None else None

    def grant_for(self, message: Any) -> Optional[Tuple[str, Grant]]:
        """The send rights a pushed message gives: ``(sender, Grant)``, or ``None`` (it gives none)."""
        action = action_of(message)
        sender = sender_of(message)
        if action is None or not sender:
            return None
        grant = self._grant(action, self.clock())
        return (sender, grant) if grant is not None else None

    def record_action(self, openid: str, action: str, at: Optional[float] = None) -> None:
        """Grant the rights of ``action`` (``message``, ``click``, ``follow``, ``scan``, ``payment``), if any."""
        now = self.clock()
        grant = self._grant(action, now if at is None else at)
        if grant is not None:
            self.store.add_grant(openid, grant, now)

    def _grant(self, action: str, start: float) -> Optional[Grant]:
        """The rights ``action`` at ``start`` gives by the quota table; ``None`` where its count is 0."""
        quota = self.quotas[action]
        return Grant(action, quota.count, start + quota.seconds) if quota.count != 0 else None

    def status(self, openid: str) -> WindowStatus:
        now = self.clock()
        record = self.store.get(openid, now)
        if record is None:
            can = self.unknown_users == "attempt"
            decision = "WeChat decides" if can else "refused (unknown_users: refuse)"
            return WindowStatus(openid, False, can, None, None, "no interaction seen: " + decision)
        usable = [g for g in record.grants if g.usable(now)]
        until = max((g.expires_at for g in record.grants), default=None)
        if not record.grants:
            return WindowStatus(openid, True, False, 0, None, "outside the 48-hour window")
        if not usable:
            return WindowStatus(openid, True, False, 0, until, "send quota used up")
        return WindowStatus(openid, True, True, _sends_left(usable), max(g.expires_at for g in usable),
                            "within the window")

    def check(self, openid: str) -> WindowStatus:
        """The user's status, if a send is possible now.

        :raises OutsideWindowError: no usable rights (45015 predicted).
        :raises QuotaExceededError: rights exist but are used up (45047 predicted).
        """
        status = self.status(openid)
        if status.can_send:
            return status
        note = f" — refused before calling WeChat ({status.reason})"
        if status.known and status.until is not None:
            self.metrics.window_refusal(45047)
            raise QuotaExceededError(45047, note=note, predicted=True)
        self.metrics.window_refusal(45015)
        raise OutsideWindowError(45015, note=note, predicted=True)

    def sent(self, openid: str) -> None:
        """A send succeeded: consume one unit."""
        self.store.consume(openid, self.clock())

    def refused(self, openid: str, errcode: int) -> None:
        """WeChat refused a send with 45015 or 45047: believe it."""
        if errcode in (45015, 45047):
            self.store.revoke(openid, self.clock(), exhausted=errcode == 45047)


def _sends_left(grants: Iterable[Grant]) -> Optional[int]:
    """How many sends the grants still allow together; ``None`` if any of them has no limit."""
    total = 0
    for grant in grants:
        if grant.count is None:
            return None
        total += grant.count - grant.used
    return total
