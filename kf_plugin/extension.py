"""The Flask extension: ``KfPlugin(app)`` or ``KfPlugin()`` + ``init_app(app)``; or, without Flask,
``KfPlugin(rules=..., appid=..., secret=...)`` on the bot's own router or view."""
from __future__ import annotations

import functools
import logging
import os
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from apscheduler.schedulers.base import BaseScheduler
from flask import Flask, current_app, has_app_context
from wechatpy.replies import BaseReply

from .admin import KfAdmin
from .agents import AgentDirectory
from .answering import CONVERSATION, SERVING, Answering
from .config import SETTINGS, Settings, checked_settings
from .decorators import HookDecorators
from .deployment import warn_if_workers_do_not_share
from .errors import KfError
from .filters import Event
from .hooks import SESSION_EVENTS, HandoffHooks, SessionHooks, WeComEventHooks
from .lifecycle import Conversation, HandoffRecord, HandoffSummary, summarize
from .readings import GAUGES_INTERVAL, refresh_gauges_in_turn
from .reloading import RuleFileVersion, RuleWatch, install_sighup, no_rule_file, read_rule_file
from .router import Handler, MessageRouter
from .rules import Rule, RuleSet
from .scheduling import Jobs
from .services import Services, check_api_rules
from .state import ReplayStore, WindowStore
from .state.redis_rules import RuleVersions
from .swapping import SwapGate
from .view import EXTENSION, AppState, register_views
from .wecom.channel import open_wecom
from .window import WindowTracker

__all__ = ["KfPlugin"]

RulesLike = Union[RuleSet, str, "os.PathLike[str]", Iterable[Rule]]
IN_APP_CONFIG = "in the app's config"
IN_PLUGIN_ARGUMENTS = "with KfPlugin(appid=..., secret=...) or kf.configure({...})"

log = logging.getLogger(__name__)

class KfPlugin(HookDecorators):
    """Customer-service hand-off for a wechatpy + Flask bot (one official account per app).

    ``rules``: a :class:`RuleSet`, rules, or the path of a YAML rule file
    (otherwise ``KF_RULES`` is read at :meth:`init_app`). ``router``: the bot's
    own :class:`MessageRouter`; the kf rules are tried before its handlers.
    ``replay_store`` / ``window_store``: where retried pushes' replies and the
    48-hour window are kept (default: memory, or Redis with ``KF_REDIS_URL``).
    ``scheduler``: the bot's APScheduler scheduler for background jobs (default:
    one of our own). ``appid``, ``secret``, ``api_base_url``: the WeChat API
    credentials without Flask (and defaults under each app's config);
    :meth:`configure` sets any other ``KF_*`` setting. ``redis``: a redis-py
    client to share state through, instead of ``KF_REDIS_URL`` (one from a
    Sentinel's ``master_for``, a ``RedisCluster``, one with TLS options of its
    own). ``clock``: the time source, replaceable in tests.

    Three ways in: let :meth:`init_app` own the webhook endpoint; call
    :meth:`register` to put the rules on your router; or call :meth:`handle`
    from your own view. Each app keeps its own API client, window and pools;
    :attr:`admin`, :attr:`window` and :attr:`agents` are the current app's.
    Hooks: :meth:`on_session`, :meth:`on_handoff`, :meth:`on_wecom_event` and
    :meth:`escalate_when` (from :class:`~kf_plugin.decorators.HookDecorators`).
    """

    def __init__(self, app: Optional[Flask] = None, *, rules: Optional[RulesLike] = None,
                 router: Optional[MessageRouter] = None, replay_store: Optional[ReplayStore] = None,
                 window_store: Optional[WindowStore] = None, scheduler: Optional[BaseScheduler] = None,
                 appid: Optional[str] = None, secret: Optional[str] = None, api_base_url: Optional[str] = None,
                 redis: Optional[Any] = None, clock: Callable[[], float] = time.time):
        self.rules_router = MessageRouter("kf rules")
        self.router = router if router is not None else MessageRouter("bot")
        self.router.include(self.rules_router, first=True)
        self._answering = Answering(self.router, self.rules_router)
        self.jobs = Jobs(scheduler)
        self._rules = RuleSet()
        self._rules_path: Optional[str] = None
        #: Pushes are handled inside ``gate.reading()``; a swap of the rules waits for them (see kf_plugin.swapping).
        self.gate = SwapGate()
        self._watch = RuleWatch(self._apply_file, self._reload_channels, clock=clock)
        self._replay_store = replay_store
        self._window_store = window_store
        self._redis = redis
        self._clock = clock
        self._session_hooks = SessionHooks()
        self._handoff_hooks = HandoffHooks()
        self._wecom_hooks = WeComEventHooks()
        self._settings: Dict[str, Any] = {}
        self._apps: List[Services] = []               # one per app init_app registered
        self._own: Optional[Services] = None          # used without Flask
        self._own_lock = threading.Lock()
        self._session_handler = Handler(Event(*SESSION_EVENTS), self._run_session_hooks, "session hooks")
        self.configure({"KF_APPID": appid, "KF_SECRET": secret, "KF_API_BASE_URL": api_base_url})
        if rules is not None:
            self.load_rules(rules)
        if app is not None:
            self.init_app(app)

    def configure(self, settings: Mapping[str, Any]) -> None:
        """Set ``KF_*`` settings for use without Flask; under an app they are defaults its config overrides.

        ``None`` values are ignored. Call it before the plugin handles its first message.

        :raises ConfigError: an unknown key, or a value of the wrong kind.
        :raises KfError: the plugin already runs without Flask on the settings it had.
        """
        given = checked_settings(settings)
        if given and self._own is not None:
            raise KfError("configure() came after the plugin started handling messages: call it first")
        self._settings.update(given)

    # -- rules --------------------------------------------------------------

    @property
    def rules(self) -> RuleSet:
        """The rules in force."""
        return self._rules

    def load_rules(self, rules: RulesLike) -> RuleSet:
        """Validate ``rules`` completely, then put them in force in one swap.

        :raises RuleFileError: the file is invalid; the rules in force stay.
        :raises ValueError: rules built in Python share a name.
        :raises ConfigError: a rule needs the WeChat API and an app (or the plugin) has no credentials.
        """
        version = None
        if isinstance(rules, RuleSet):
            ruleset = rules
        elif isinstance(rules, (str, os.PathLike)):
            ruleset, version = read_rule_file(os.fspath(rules))
        else:
            ruleset = RuleSet.of(rules)
        self._check_api_rules(ruleset)
        self._put_in_force(ruleset, version)
        return ruleset

    def _check_api_rules(self, ruleset: RuleSet) -> None:
        for services, where in self._all_services():
            check_api_rules(ruleset, services.settings, where)

    def _apply_file(self, ruleset: RuleSet, version: RuleFileVersion) -> None:
        """What the rule watch calls to put a changed file in force (raising to refuse it)."""
        self._check_api_rules(ruleset)
        self._put_in_force(ruleset, version)

    def _put_in_force(self, ruleset: RuleSet, version: Optional[RuleFileVersion]) -> None:
        with self.gate.swapping():
            self.rules_router.replace([self._session_handler] + ruleset.handlers(self._respond))
            self._rules = ruleset
            if version is not None:
                self._rules_path = version.path
            for services, _ in self._all_services():
                self._use_rules(services)
            self._watch.loaded(version)

    def reload_rules(self) -> RuleSet:
        """Read the rule file again and put it in force if it changed; on any error the current rules stay.

        Every worker does it by itself when the file changes, on SIGHUP and on ``kf-plugin reload``
        (see :mod:`kf_plugin.reloading`); this is the same, now, in this process only.

        :raises KfError: the rules were given in Python, not read from a file (``KF_RULES``).
        :raises RuleFileError: the file is now invalid (nothing changed).
        :raises ConfigError: a rule of the file needs the WeChat API and an app has no credentials.
        """
        if self._watch.version is None:
            raise no_rule_file()
        self._watch.reload_now()
        return self._rules

    def _reload_channels(self) -> List[RuleVersions]:
        """The reload counters this process follows: one per app whose state is in Redis."""
        return [RuleVersions.of(services.shared.redis, services.settings.redis_prefix, services.settings.appid)
                for services, _ in self._all_services() if services.shared.redis is not None]

    def _watch_rules(self, settings: Settings) -> None:
        """Start watching the rule file (and reload requests through Redis), and take SIGHUP where it is free."""
        if settings.rules_watch <= 0 or (self._watch.version is None and not self._reload_channels()):
            return
        self._watch.every = settings.rules_watch
        self.jobs.add(f"kf_plugin:{settings.appid or 'default'}:rules-watch", self._watch.tick, settings.rules_watch)
        install_sighup(self._watch)

    def _respond(self, rule: Rule, message: Any) -> BaseReply:
        services = self._services()
        if services is self._own:
            self.jobs.ensure_started()   # style (b): the rules' hand-offs are its first use of the API
        return services.answer_rule(rule, message, CONVERSATION.get())

    def _use_rules(self, services: Services) -> None:
        services.use_rules(self._rules)
        job = f"kf_plugin:{services.settings.appid or 'default'}"
        if services.reconciler is not None:   # queue timeouts, and session events WeChat's pushes missed
            self.jobs.add(f"{job}:handoff-sweep", services.reconciler.sweep, services.settings.handoff_sweep)
        if services.metrics.enabled:   # the gauges read from the state, for scrapes of the bot's own exporter too
            self.jobs.add(f"{job}:gauges", functools.partial(refresh_gauges_in_turn, services), GAUGES_INTERVAL)
        if services.admin is None:
            return
        self.jobs.add(f"{job}:access-token", services.admin.client.tokens.tick, services.settings.token_interval)
        if self._rules.needs_agents and services.agents is not None:
            self.jobs.add(f"{job}:online-agents", services.agents.refresh, services.settings.agents_refresh)
        if services.queue is not None and self._rules.queue.notice:
            self.jobs.add(f"{job}:wait-queue", services.queue.refresh, services.settings.queue_refresh)

    # -- which app's services -------------------------------------------------

    def _services(self) -> Services:
        """The services of the push being handled, else the current app's, else the only app's, else our own."""
        serving = SERVING.get()
        if serving is not None:
            return serving
        if has_app_context():
            state = current_app.extensions.get(EXTENSION)
            if state is not None and state.plugin is self:
                return state.services
        if len(self._apps) == 1:
            return self._apps[0]
        if self._apps:
            raise KfError(f"this KfPlugin serves {len(self._apps)} apps: use it inside one app's context "
                          "(with app.app_context(): ...) to say which")
        return self._own_services()

    def _own_services(self) -> Services:
        own = self._own
        if own is not None:
            return own
        with self._own_lock:
            if self._own is None:
                settings = Settings.read(self._settings)
                check_api_rules(self._rules, settings, IN_PLUGIN_ARGUMENTS)
                services = self._new_services(settings)
                self._use_rules(services)
                self._own = services
                self._watch_rules(settings)
            return self._own

    def _new_services(self, settings: Settings) -> Services:
        return Services(settings, window_store=self._window_store, redis=self._redis, clock=self._clock,
                        hooks=self._handoff_hooks)

    def _all_services(self) -> List[Tuple[Services, str]]:
        """Every services this plugin runs, with where their settings come from."""
        found = [(services, IN_APP_CONFIG) for services in self._apps]
        return found + ([(self._own, IN_PLUGIN_ARGUMENTS)] if self._own is not None else [])

    # -- the WeChat API and session events -----------------------------------

    @property
    def admin(self) -> KfAdmin:
        """The current app's customer-service API facade (sends consult its 48-hour window).

        :raises KfError: ``KF_APPID`` and ``KF_SECRET`` were not configured, or several apps and no app context.
        """
        admin = self._services().admin
        if admin is None:
            raise KfError("the WeChat API is not configured: set KF_APPID and KF_SECRET before init_app "
                          "(without Flask: KfPlugin(appid=..., secret=...))")
        return admin

    @property
    def agents(self) -> Optional[AgentDirectory]:
        """The current app's online-agent cache (``None`` without API credentials)."""
        return self._services().agents

    @property
    def window(self) -> WindowTracker:
        """The current app's 48-hour window tracker."""
        return self._services().window

    def conversation(self, openid: str) -> Conversation:
        """Where ``openid`` is in the hand-off lifecycle now (the current app's)."""
        return self._services().conversations.of(openid)

    def handoffs(self, since: float, until: Optional[float] = None) -> List[HandoffRecord]:
        """The records of the hand-offs requested from ``since`` to ``until`` (unix times; the current app's)."""
        return self._services().shared.handoffs.records(since, until)

    def handoff_summary(self, since: float, until: Optional[float] = None) -> HandoffSummary:
        """Count, acceptance rate, median and p90 wait of the hand-offs requested from ``since`` to ``until``."""
        return summarize(self.handoffs(since, until))

    def _run_session_hooks(self, event: Any) -> None:
        self._session_hooks.run(event, self._services().executor)

    # -- the three integration styles -----------------------------------------

    def handle(self, message: Any) -> Optional[BaseReply]:
        """Route a parsed wechatpy message; the reply to send, or ``None``.

        Also records the interaction in the 48-hour window.

        :raises ConfigError: (first call without Flask) a rule needs the WeChat API and no credentials were given.
        """
        services = self._services()
        if services is self._own:
            self.jobs.ensure_started()
        with self.gate.reading():
            services.window.record(message)
            return self._route(services, self.router, message)

    def register(self, router: MessageRouter) -> None:
        """Put the kf rules in front of the handlers of a bot's own ``router``.

        :raises ConfigError: a rule needs the WeChat API and no credentials were given.
        """
        if not self._apps:
            self._own_services()
        router.include(self.rules_router, first=True)

    def _route(self, services: Services, router: MessageRouter, message: Any) -> Optional[BaseReply]:
        return self._answering.route(services, router, message)

    def init_app(self, app: Flask) -> None:
        """Register the webhook on ``app`` and the ``flask kf`` commands.

        Reads (defaults in brackets; settings given to the plugin come before these defaults):
        ``KF_TOKEN`` (required), ``KF_APPID``,
        ``KF_SECRET`` (both → the WeChat API is used), ``KF_ENCODING_AES_KEY``
        (set → safe mode), ``KF_ENCODING_AES_KEY_PREVIOUS``, ``KF_RULES``,
        ``KF_RULES_WATCH`` [2], ``KF_ACCOUNT_ID`` (set → pushes to another account are refused),
        ``KF_URL`` [/wechat], ``KF_MAX_CLOCK_SKEW`` [300], ``KF_MAX_BODY``
        [65536], ``KF_DEDUPE_TTL`` [60], ``KF_DEDUPE_WAIT`` [4],
        ``KF_API_BASE_URL`` [https://api.weixin.qq.com], ``KF_API_TIMEOUT`` [5],
        ``KF_REPLY_BUDGET`` [4.5], ``KF_HANDOFF_BUDGET`` [0.3], ``KF_ESCALATE_BUDGET`` [1],
        ``KF_HANDOFF_RECORDS_FOR`` [2592000], ``KF_HANDOFF_SWEEP`` [30], ``KF_QUEUE_REFRESH`` [10],
        ``KF_AGENTS_REFRESH`` [20], ``KF_WORKER_THREADS`` [8], ``KF_REDIS_URL``
        (set → state shared through Redis), ``KF_REDIS_PREFIX`` [kf:], ``KF_TOKEN_MODE``
        [stable], ``KF_TOKEN_MARGIN`` [600], ``KF_TOKEN_INTERVAL`` [60],
        ``KF_TOKEN_SESSION_PREFIX`` [wechatpy], ``KF_MEMORY_USERS`` [20000],
        ``KF_MEMORY_REPLIES`` [20000], ``KF_METRICS``, ``KF_STATUS_URL``, ``KF_STATUS_TOKEN``,
        ``KF_STATUS_USER``, ``KF_STATUS_PASSWORD`` (docs/operations.md); for 微信客服 (docs/wecom.md)
        ``KF_WECOM_CORPID``, ``KF_WECOM_SECRET``, ``KF_WECOM_TOKEN``, ``KF_WECOM_AES_KEY`` (all four, or
        none), ``KF_WECOM_URL`` [/wecom/kf], ``KF_WECOM_API_BASE_URL`` [https://qyapi.weixin.qq.com].
        docs/configuration.md lists every setting.

        :raises RuntimeError: a KfPlugin is already registered on ``app``.
        :raises ConfigError: a setting is missing or invalid; a rule needs the WeChat API without
            ``KF_APPID``/``KF_SECRET``; another view already serves ``KF_URL`` (or the status page's or metrics'
            path); ``KF_STATUS_URL`` comes without a credential.
        :raises RuleFileError: ``KF_RULES`` names an invalid file.
        """
        if EXTENSION in app.extensions:
            raise RuntimeError(f"a KfPlugin is already registered on the app {app.name!r}; "
                               "call init_app once per app (one KfPlugin serves one official account per app)")
        for name, setting in SETTINGS.items():
            app.config.setdefault(name, self._settings.get(name, setting.default))
        settings = Settings.read(app.config)
        # The app's rule file, unless the plugin was given rules already.
        path = settings.rules if self._rules_path is None and not self._rules.rules else None
        ruleset, version = read_rule_file(path) if path else (self._rules, None)
        for checked, where in [(settings, IN_APP_CONFIG)] + [(s.settings, w) for s, w in self._all_services()]:
            check_api_rules(ruleset, checked, where)   # the other apps matter when the file's rules are new
        services = self._new_services(settings)
        webhook = None
        if settings.token or not settings.has_wecom:   # 微信客服 alone needs no Official Account
            webhook = services.webhook(functools.partial(self._answering.answer, services), self._replay_store,
                                       plan=functools.partial(self._answering.plan, services))
        if settings.has_wecom:
            services.wecom = open_wecom(settings, services.shared,
                                        functools.partial(self._answering.answer_pulled, services),
                                        services.conversations, services.window,
                                        functools.partial(self._wecom_hooks.run, executor=services.executor),
                                        self.gate)
        state = AppState(self, webhook, services, services.wecom)
        register_views(app, state)
        self._apps.append(services)
        if path:
            self._put_in_force(ruleset, version)
        else:
            self._use_rules(services)
        app.extensions[EXTENSION] = state
        self._watch_rules(settings)
        from .cli import cli
        app.cli.add_command(cli, "kf")
        warn_if_workers_do_not_share(settings.redis_url)

    def shutdown(self) -> None:
        """Stop the background work of every app this plugin serves, once they serve no more pushes.

        The background jobs stop (the scheduler the plugin started, or its jobs are taken off the bot's
        scheduler, which keeps running), the background and handler pools stop after the tasks already
        queued, and 微信客服 pulls end after their current page. The jobs stop at exit anyway; tests and
        embedding code call it to stop early. Calling it again does nothing more.
        """
        self.jobs.shutdown()
        for services, _ in self._all_services():
            services.shutdown()
