"""What one official account runs on in a process: its shared state, 48-hour window, WeChat API client,
online-agent cache, thread pools and hand-off.

``KfPlugin.init_app`` keeps one :class:`Services` per Flask app (in ``app.extensions["kf_plugin"]``), so two
apps served by one plugin never share an API client; a plugin used without Flask has one of its own.
"""
from __future__ import annotations

import concurrent.futures
import time
from typing import Any, Callable, Mapping, Optional

from .admin import KfAdmin
from .agents import AgentDirectory
from .background import Background
from .client import KfClient
from .errors import ConfigError
from .handoff import Handoff
from .rules import RuleSet
from .state import WindowStore
from .state.shared import SharedState, open_state
from .window import WindowTracker

__all__ = ["Services", "open_shared", "check_api_rules"]


def open_shared(settings: Mapping[str, Any], redis: Optional[Any] = None) -> SharedState:
    """The state the workers share: Redis with ``redis`` (a client) or ``KF_REDIS_URL``, else memory; the memory
    either way (each worker's own, asked first) bounded by the ``KF_MEMORY_*`` settings.

    The only place kf_plugin's extension opens its shared state.
    """
    return open_state(redis if redis is not None else settings["KF_REDIS_URL"], settings["KF_APPID"] or "default",
                      settings["KF_REDIS_PREFIX"], settings["KF_TOKEN_SESSION_PREFIX"],
                      max_replies=settings["KF_MEMORY_REPLIES"], max_users=settings["KF_MEMORY_USERS"])


def check_api_rules(rules: RuleSet, settings: Mapping[str, Any], where: str) -> None:
    """Refuse rules that need the WeChat API when its credentials are missing.

    Without them such a rule would quietly become a plain transfer. ``where`` says where the keys are set.

    :raises ConfigError: naming the first such rule, its options and the missing keys.
    """
    missing = [key for key in ("KF_APPID", "KF_SECRET") if not settings.get(key)]
    needing = rules.needing_api()
    if not missing or not needing:
        return
    rule, options = needing[0]
    more = f" (and {len(needing) - 1} more rules)" if len(needing) > 1 else ""
    raise ConfigError(f"rule {rule.name!r}{more} uses {', '.join(options)}, which needs the WeChat API, but "
                      f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: set "
                      f"{' and '.join(missing)} {where}, or remove those options from the rule")


class Services:
    """The run-time parts of one official account, built from converted ``KF_*`` settings.

    Without ``KF_APPID`` and ``KF_SECRET`` there is no API: :attr:`admin`, :attr:`agents` and the pools are
    ``None`` and only the passive transfer reply is possible. ``window_store`` replaces the shared window.
    """

    def __init__(self, settings: Mapping[str, Any], *, window_store: Optional[WindowStore] = None,
                 redis: Optional[Any] = None, clock: Callable[[], float] = time.time):
        self.settings = settings
        self.clock = clock
        self.shared = open_shared(settings, redis)
        self.window = WindowTracker(window_store if window_store is not None else self.shared.window, clock=clock)
        self.admin: Optional[KfAdmin] = None
        self.agents: Optional[AgentDirectory] = None
        self.executor: Optional[Background] = None   # notices, hooks, late replies
        self.handler_pool: Optional[concurrent.futures.ThreadPoolExecutor] = None   # bot handlers under the deadline
        if settings["KF_APPID"] and settings["KF_SECRET"]:
            self._connect_api()
        self.handoff = Handoff(RuleSet())

    def _connect_api(self) -> None:
        settings = self.settings
        client = KfClient(settings["KF_APPID"], settings["KF_SECRET"], api_base_url=settings["KF_API_BASE_URL"],
                          timeout=settings["KF_API_TIMEOUT"], token_store=self.shared.tokens,
                          token_mode=settings["KF_TOKEN_MODE"], token_margin=settings["KF_TOKEN_MARGIN"],
                          token_interval=settings["KF_TOKEN_INTERVAL"])
        self.admin = KfAdmin(client, window=self.window)
        self.agents = AgentDirectory(self.admin, max_age=3 * settings["KF_AGENTS_REFRESH"])
        threads = max(1, settings["KF_WORKER_THREADS"])
        self.executor = Background(threads)
        # Handlers get threads of their own: background sends on a slow API must never delay a reply.
        self.handler_pool = concurrent.futures.ThreadPoolExecutor(max_workers=threads,
                                                                  thread_name_prefix="kf-handlers")

    def use_rules(self, rules: RuleSet) -> None:
        """Put ``rules``' window settings and hand-off in force here."""
        self.window.configure(rules.quotas, rules.unknown_users)
        self.handoff = Handoff(rules, admin=self.admin, agents=self.agents, executor=self.executor,
                               budget=self.settings["KF_HANDOFF_BUDGET"], clock=self.clock)

    def deliver_late(self, message: Any, reply: Optional[Any]) -> None:
        """Send a reply that came too late for the passive answer (see :meth:`Handoff.deliver_late`)."""
        self.handoff.deliver_late(message, reply)

    def shutdown(self) -> None:
        """Stop the pools."""
        for pool in (self.executor, self.handler_pool):
            if pool is not None:
                pool.shutdown(wait=False)
