"""Agents given by name, for a sandbox set up by hand: ``wang@gh_test:online:小王`` and the states
``online``, ``busy``, ``offline``.

WeChat knows an agent as online (``getonlinekflist`` status 1) or offline; the old
statuses 2 and 3 still list an agent as online. ``busy`` is one of those: listed online
with status 2, which kf_plugin never picks for a hand-off (it takes status 1 only),
while the agent can still accept users by hand.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Protocol, Tuple

__all__ = ["AGENT_STATES", "AgentRoster", "AgentSeed", "agent_state", "state_name", "wechat_id_for"]


class AgentRoster(Protocol):
    """Where a seed's agent is created: the :class:`~kf_plugin.testing.sandbox.Sandbox` facade."""

    def add_agent(self, kf_account: str, nickname: str, wx: Optional[str] = None, online: bool = False,
                  status: int = 1) -> None: ...

#: state name → (online, getonlinekflist status)
AGENT_STATES: Mapping[str, Tuple[bool, int]] = {"online": (True, 1), "busy": (True, 2), "offline": (False, 1)}


def agent_state(name: object) -> Tuple[bool, int]:
    """(online, status) for a state name.

    :raises ValueError: not one of :data:`AGENT_STATES`; the message suggests the nearest.
    """
    if isinstance(name, str) and name.lower() in AGENT_STATES:
        return AGENT_STATES[name.lower()]
    known = ", ".join(AGENT_STATES)
    near = difflib.get_close_matches(name.lower(), AGENT_STATES, n=1) if isinstance(name, str) else []
    hint = f": did you mean {near[0]!r}?" if near else ""
    raise ValueError(f"unknown agent state {name!r}{hint} (states: {known})")


def state_name(online: bool, status: int) -> str:
    """The state name of an agent as the sandbox holds it (``online``/``status``)."""
    if not online:
        return "offline"
    return "online" if status == 1 else "busy"


def wechat_id_for(kf_account: str) -> str:
    """The WeChat id a seeded agent is bound to: ``sandbox_`` and the account's prefix (a valid id: a letter
    first, 6–20 characters)."""
    return "sandbox_" + kf_account.partition("@")[0]


@dataclass(frozen=True)
class AgentSeed:
    """An agent to create: kf account, state, nickname (default: the account's prefix)."""

    kf_account: str
    state: str = "online"
    nickname: Optional[str] = None

    @classmethod
    def parse(cls, spec: str) -> "AgentSeed":
        """``KF_ACCOUNT[:STATE[:NICKNAME]]``, e.g. ``wang@gh_test:busy:小王``; the state defaults to online.

        :raises ValueError: no account, or an unknown state.
        """
        kf_account, _, rest = spec.partition(":")
        state, _, nickname = rest.partition(":")
        return cls.of({"kf_account": kf_account, "state": state or "online", "nickname": nickname or None})

    @classmethod
    def of(cls, fields: Mapping[str, Any]) -> "AgentSeed":
        """From JSON fields ``kf_account``, ``state`` (default online), ``nickname`` (optional).

        :raises ValueError: no account, a field of the wrong type, or an unknown state.
        """
        kf_account, state, nickname = fields.get("kf_account"), fields.get("state", "online"), fields.get("nickname")
        if not isinstance(kf_account, str) or not kf_account:
            raise ValueError("an agent needs its kf account, e.g. wang@gh_test")
        if nickname is not None and not isinstance(nickname, str):
            raise ValueError(f"the nickname must be a string, got {nickname!r}")
        agent_state(state)
        return cls(kf_account, str(state).lower(), nickname)

    def add_to(self, sandbox: AgentRoster) -> None:
        """Create the agent, bound to :func:`wechat_id_for` its account, in its state.

        :raises ApiError: as :meth:`Sandbox.add_agent` (65404 a malformed account, 65406 it exists, 65403 a
            nickname over 16 characters).
        """
        online, status = agent_state(self.state)
        nickname = self.nickname or self.kf_account.partition("@")[0]
        sandbox.add_agent(self.kf_account, nickname, wx=wechat_id_for(self.kf_account), online=online,
                          status=status)
