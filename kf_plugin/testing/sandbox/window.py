"""The 48-hour window: which users may receive custom messages, how many, and the typing indicator.

Every interaction grants a number of sends valid for a while (the quota table). A
send uses one unit of the still-valid grant that expires first, so short grants
(a click's 60 s) are used before long ones (a message's 48 h).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

from .errors import ApiError

__all__ = ["ReplyWindow", "Customer", "Grant", "DEFAULT_QUOTAS", "ACTIONS", "build_quotas"]

Quota = Tuple[Optional[int], float]  # (sends or None for unlimited, validity in seconds)

#: The quotas of WeChat's current customer-service message docs.
DEFAULT_QUOTAS: Dict[str, Quota] = {
    "message": (5, 48 * 3600),
    "click": (3, 60),
    "follow": (3, 60),
    "scan": (3, 60),
    "payment": (None, 48 * 3600),
}
ACTIONS = tuple(DEFAULT_QUOTAS)
TYPING_NEEDS_INTERACTION_WITHIN = 30
TYPING_LASTS = 15


def build_quotas(overrides: Optional[Mapping[str, Quota]]) -> Dict[str, Quota]:
    """The default table with ``overrides`` applied.

    :raises ValueError: an unknown action, a count that is not a positive int or
        None, or a validity that is not a positive number of seconds.
    """
    quotas = dict(DEFAULT_QUOTAS)
    for action, quota in (overrides or {}).items():
        if action not in DEFAULT_QUOTAS:
            raise ValueError(f"unknown action {action!r} in quotas; known: {', '.join(ACTIONS)}")
        try:
            count, seconds = quota
        except (TypeError, ValueError):
            raise ValueError(f"quotas[{action!r}] must be (count or None, seconds), got {quota!r}") from None
        if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
            raise ValueError(f"quotas[{action!r}]: count must be a positive int or None, got {count!r}")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
            raise ValueError(f"quotas[{action!r}]: validity must be positive seconds, got {seconds!r}")
        quotas[action] = (count, seconds)
    return quotas


@dataclass
class Grant:
    action: str
    remaining: Optional[int]  # None = unlimited
    expires_at: float

    def valid(self, now: float) -> bool:
        return now < self.expires_at

    def has_units(self) -> bool:
        return self.remaining is None or self.remaining > 0


@dataclass
class Customer:
    openid: str
    subscribed: bool = True
    grants: List[Grant] = field(default_factory=list)
    last_interaction: float = -math.inf
    typing_until: float = -math.inf


class ReplyWindow:
    """The users who interacted with the account, and what each allows."""

    def __init__(self, quotas: Optional[Mapping[str, Quota]] = None):
        self.quotas = build_quotas(quotas)
        self._customers: Dict[str, Customer] = {}

    def knows(self, openid: object) -> bool:
        return isinstance(openid, str) and openid in self._customers

    def get(self, openid: str) -> Optional[Customer]:
        return self._customers.get(openid)

    def interact(self, openid: str, action: str, at: float) -> Grant:
        """Record an interaction at time ``at``; it also marks the user as following again.

        :raises ValueError: an unknown action or an empty openid.
        """
        if action not in self.quotas:
            raise ValueError(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
        if not isinstance(openid, str) or not openid:
            raise ValueError("openid must be a non-empty string")
        customer = self._customers.setdefault(openid, Customer(openid))
        customer.subscribed = True
        count, seconds = self.quotas[action]
        grant = Grant(action, count, at + seconds)
        customer.grants.append(grant)
        customer.last_interaction = max(customer.last_interaction, at)
        return grant

    def unsubscribe(self, openid: str) -> None:
        """The user unfollows: every grant is gone, sends answer 45015 until a new interaction.

        :raises ValueError: the user never interacted.
        """
        customer = self._customers.get(openid)
        if customer is None:
            raise ValueError(f"{openid!r} never interacted; call interact first")
        customer.subscribed = False
        customer.grants.clear()
        customer.typing_until = -math.inf

    def consume(self, openid: str, now: float) -> Grant:
        """Use one send; the grant it came from.

        :raises ApiError: 45015 no valid grant (never interacted, expired,
            unfollowed), 45047 valid grants but none has units left.
        """
        customer = self._customers.get(openid)
        if customer is None or not customer.subscribed:
            raise ApiError(45015)
        customer.grants = [grant for grant in customer.grants if grant.valid(now)]
        if not customer.grants:
            raise ApiError(45015)
        usable = [grant for grant in customer.grants if grant.has_units()]
        if not usable:
            raise ApiError(45047)
        grant = min(usable, key=lambda g: g.expires_at)
        if grant.remaining is not None:
            grant.remaining -= 1
        customer.typing_until = -math.inf  # the message arrives, so "typing…" disappears
        return grant

    def typing(self, openid: object, command: object, now: float) -> None:
        """Show or hide "typing…" for the user.

        :raises ApiError: 45072 command not Typing/CancelTyping, 45080 no interaction
            in the last 30 s (or unfollowed), 45081 Typing while already typing.
        """
        if command not in ("Typing", "CancelTyping"):
            raise ApiError(45072)
        customer = self._customers.get(openid) if isinstance(openid, str) else None
        if (customer is None or not customer.subscribed
                or now - customer.last_interaction > TYPING_NEEDS_INTERACTION_WITHIN):
            raise ApiError(45080)
        if command == "CancelTyping":
            customer.typing_until = -math.inf
            return
        if now < customer.typing_until:
            raise ApiError(45081)
        customer.typing_until = now + TYPING_LASTS
