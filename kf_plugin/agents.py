"""Who is online to take a hand-off, without making a push wait on the WeChat API.

A background job (see :mod:`kf_plugin.scheduling`) calls :meth:`AgentDirectory.refresh`;
the request path reads the cached list through :meth:`AgentDirectory.online`,
which waits for a refresh only within a small budget.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, List, Optional, Sequence

from .admin import KfAdmin, OnlineAgent
from .errors import KfError
from .metrics import NO_METRICS, Metrics

__all__ = ["AgentDirectory", "pick_agent"]

log = logging.getLogger(__name__)


def pick_agent(online: Sequence[OnlineAgent], designated: Optional[str] = None,
               pool: bool = True) -> Optional[str]:
    """The agent to hand a user to: ``designated`` if online; else, with ``pool``, the least busy one."""
    available = [a for a in online if a.status == 1]
    if designated is not None:
        if any(a.kf_account == designated for a in available):
            return designated
        if not pool:
            return None
    if not available:
        return None
    return min(available, key=lambda a: (a.accepted_case, a.kf_account)).kf_account


class AgentDirectory:
    """A cache of the online agents of one account.

    A list older than ``max_age`` seconds is stale: readers then start one
    refresh (never more than one at a time) and wait for it at most their budget.
    A failed refresh keeps the last list until it is ``max_age`` old, then
    readers get ``None`` ("unknown"). ``metrics`` hears how many are online after each refresh.
    """

    def __init__(self, admin: KfAdmin, max_age: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 metrics: Metrics = NO_METRICS):
        self.admin = admin
        self.metrics = metrics
        self.max_age = max_age
        self.clock = clock
        self._agents: Optional[List[OnlineAgent]] = None
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()
        self._refreshing: Optional[threading.Event] = None
        self._refresh_started = 0.0

    def _start_refresh(self) -> threading.Event:
        """The event of the refresh in progress, starting one in the background if none is."""
        with self._lock:
            if self._refreshing is None:
                self._refreshing = threading.Event()
                self._refresh_started = time.monotonic()
                threading.Thread(target=self._run_refresh, args=(self._refreshing,),
                                 name="kf-agents-refresh", daemon=True).start()
            return self._refreshing

    def _run_refresh(self, done: threading.Event) -> None:
        try:
            agents: Optional[List[OnlineAgent]] = self.admin.online_agents()
        except KfError as exc:
            known = (f"keeping the list from {self.clock() - self._fetched_at:.0f} s ago" if self._agents
                     else "none known yet")
            log.warning("could not refresh the online agents (%s); %s", exc, known)
            agents = None
        with self._lock:
            if agents is not None:
                self._agents, self._fetched_at = agents, self.clock()
            self._refreshing = None
        done.set()
        if agents is not None:
            self.metrics.agents_online(sum(1 for agent in agents if agent.status == 1))

    def _fresh(self) -> Optional[List[OnlineAgent]]:
        return self._agents if self.clock() - self._fetched_at <= self.max_age else None

    def known(self) -> Optional[List[OnlineAgent]]:
        """The list as last fetched (however old), ``None`` before the first refresh succeeded; never waits."""
        return self._agents

    @property
    def age(self) -> Optional[float]:
        """Seconds since the list was fetched; ``None`` before the first refresh succeeded."""
        return None if self._agents is None else self.clock() - self._fetched_at

    def refresh(self) -> Optional[List[OnlineAgent]]:
        """Fetch the online list now and wait for it (the background job calls this).

        On failure the last list stays; returns the list in force afterwards.
        """
        self._start_refresh().wait()
        return self._fresh()

    def online(self, budget: float = 0.3) -> Optional[List[OnlineAgent]]:
        """The online agents, or ``None`` when unknown.

        Waits for a refresh only until ``budget`` seconds after that refresh began: once it has
        taken longer, the API is slow and nobody else waits for it.
        """
        agents = self._fresh()
        if agents is not None:
            return agents
        refresh = self._start_refresh()
        refresh.wait(max(0.0, self._refresh_started + budget - time.monotonic()))
        return self._fresh()
