"""The Flask extension: ``KfPlugin(app)`` or ``KfPlugin()`` + ``init_app(app)``."""
from __future__ import annotations

import concurrent.futures
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Union

from apscheduler.schedulers.base import BaseScheduler
from flask import Flask, Response, current_app, request
from wechatpy.replies import BaseReply

from .admin import KfAdmin
from .agents import AgentDirectory
from .background import Background
from .client import KfClient
from .config import SETTINGS, read_setting
from .dedupe import Deduplicator
from .errors import ConfigError, KfError
from .filters import Event
from .handoff import Handoff
from .loader import load_rules
from .replies import to_reply
from .router import Handler, MessageRouter
from .rules import Rule, RuleSet
from .scheduling import Jobs
from .security import PushCipher
from .state import MemoryWindowStore, ReplayStore, WindowStore
from .state.shared import SharedState, open_state
from .webhook import LateReplies, Webhook
from .window import WindowTracker

__all__ = ["KfPlugin"]

EXTENSION = "kf_plugin"
SESSION_EVENTS = ("kf_create_session", "kf_close_session", "kf_switch_session")
RulesLike = Union[RuleSet, str, "os.PathLike[str]", Iterable[Rule]]
SessionHook = Callable[[Any], Any]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _AppState:
    plugin: "KfPlugin"
    webhook: Webhook


class KfPlugin:
    """Customer-service hand-off for a wechatpy + Flask bot (one official account).

    ``rules``: a :class:`RuleSet`, rules, or the path of a YAML rule file
    (otherwise ``KF_RULES`` is read at :meth:`init_app`). ``router``: the bot's
    own :class:`MessageRouter`; the kf rules are tried before its handlers.
    ``replay_store`` / ``window_store``: where retried pushes' replies and the
    48-hour window are kept (default: memory). ``scheduler``: the bot's
    APScheduler scheduler for background jobs (default: one of our own).
    ``clock``: the time source, replaceable in tests.

    Three ways in: let :meth:`init_app` own the webhook endpoint; call
    :meth:`register` to put the rules on your router; or call :meth:`handle`
    from your own view.
    """

    def __init__(self, app: Optional[Flask] = None, *, rules: Optional[RulesLike] = None,
                 router: Optional[MessageRouter] = None, replay_store: Optional[ReplayStore] = None,
                 window_store: Optional[WindowStore] = None, scheduler: Optional[BaseScheduler] = None,
                 clock: Callable[[], float] = time.time):
        self.rules_router = MessageRouter("kf rules")
        self.router = router if router is not None else MessageRouter("bot")
        self.router.include(self.rules_router, first=True)
        self.window = WindowTracker(window_store if window_store is not None else MemoryWindowStore(), clock=clock)
        self._own_window_store = window_store is None
        self._shared: Optional[SharedState] = None
        self.jobs = Jobs(scheduler)
        self._rules = RuleSet()
        self._rules_path: Optional[str] = None
        self._replay_store = replay_store
        self._clock = clock
        self._session_hooks: Dict[str, List[SessionHook]] = {}
        self._admin: Optional[KfAdmin] = None
        self._agents: Optional[AgentDirectory] = None
        self._executor: Optional[Background] = None   # notices, hooks, late replies
        self._handler_pool: Optional[concurrent.futures.ThreadPoolExecutor] = None   # handlers under the deadline
        self._handoff_budget = SETTINGS["KF_HANDOFF_BUDGET"].default
        self._agents_refresh = SETTINGS["KF_AGENTS_REFRESH"].default
        self._handoff = Handoff(self._rules, clock=clock)
        self._session_handler = Handler(Event(*SESSION_EVENTS), self._run_session_hooks, "session hooks")
        if rules is not None:
            self.load_rules(rules)
        if app is not None:
            self.init_app(app)

    # -- rules --------------------------------------------------------------

    @property
    def rules(self) -> RuleSet:
        """The rules in force."""
        return self._rules

    def load_rules(self, rules: RulesLike) -> RuleSet:
        """Validate ``rules`` completely, then put them in force in one swap.

        :raises RuleFileError: the file is invalid; the rules in force stay.
        :raises ValueError: rules built in Python share a name.
        """
        path = None
        if isinstance(rules, RuleSet):
            ruleset = rules
        elif isinstance(rules, (str, os.PathLike)):
            path = os.fspath(rules)
            ruleset = load_rules(path)
        else:
            ruleset = RuleSet.of(rules)
        self.window.configure(ruleset.quotas, ruleset.unknown_users)
        self._handoff = self._make_handoff(ruleset)
        self.rules_router.replace([self._session_handler] + ruleset.handlers(self._respond))
        self._rules = ruleset
        if path is not None:
            self._rules_path = path
        self._schedule_agents()
        return ruleset

    def reload_rules(self) -> RuleSet:
        """Read the rule file again; on any error the current rules stay in force.

        :raises KfError: the rules were not loaded from a file.
        :raises RuleFileError: the file is now invalid (nothing changed).
        """
        if self._rules_path is None:
            raise KfError("there is no rule file to reload: the rules were not loaded from a file")
        return self.load_rules(self._rules_path)

    def _respond(self, rule: Rule, message: Any) -> BaseReply:
        return self._handoff.respond(rule, message)

    def _make_handoff(self, ruleset: RuleSet) -> Handoff:
        return Handoff(ruleset, admin=self._admin, agents=self._agents, executor=self._executor,
                       budget=self._handoff_budget, clock=self._clock)

    # -- the WeChat API and session events -----------------------------------

    @property
    def admin(self) -> KfAdmin:
        """The customer-service API facade (sends consult the 48-hour window).

        :raises KfError: ``KF_APPID`` and ``KF_SECRET`` were not configured.
        """
        if self._admin is None:
            raise KfError("the WeChat API is not configured: set KF_APPID and KF_SECRET before init_app")
        return self._admin

    @property
    def agents(self) -> Optional[AgentDirectory]:
        """The online-agent cache (``None`` without API credentials)."""
        return self._agents

    def on_session(self, *events: str) -> Callable[[SessionHook], SessionHook]:
        """Decorator: call ``hook(event)`` on customer-service session events.

        ``events``: ``create``, ``close``, ``switch`` (or the full names, e.g.
        ``kf_close_session``); none means all three. Hooks run in the
        background, after the push is answered, so they may call the API::

            @kf.on_session("close")
            def survey(event):
                kf.admin.send_msgmenu(event.source, "本次服务满意吗？", [("1", "满意"), ("2", "不满意")])
        """
        names = [e if e.startswith("kf_") else f"kf_{e}_session" for e in events] or list(SESSION_EVENTS)
        unknown = sorted(set(names) - set(SESSION_EVENTS))
        if unknown:
            raise ValueError(f"no such session event: {', '.join(unknown)} (create, close or switch)")

        def register(hook: SessionHook) -> SessionHook:
            for name in names:
                self._session_hooks.setdefault(name, []).append(hook)
            return hook
        return register

    def _run_session_hooks(self, event: Any) -> None:
        for hook in self._session_hooks.get(getattr(event, "event", ""), ()):
            if self._executor is not None:
                self._executor.submit(_run_hook, hook, event)
            else:
                _run_hook(hook, event)
        return None

    def _schedule_agents(self) -> None:
        if self._agents is not None and self._rules.needs_agents:
            self.jobs.add(f"kf_plugin:{self._admin.client.appid}:online-agents", self._agents.refresh,
                          self._agents_refresh)

    # -- the three integration styles -----------------------------------------

    def handle(self, message: Any) -> Optional[BaseReply]:
        """Route a parsed wechatpy message; the reply to send, or ``None``.

        Also records the interaction in the 48-hour window.
        """
        self.window.record(message)
        return to_reply(self.router.dispatch(message), message)

    def register(self, router: MessageRouter) -> None:
        """Put the kf rules in front of the handlers of a bot's own ``router``."""
        router.include(self.rules_router, first=True)

    def init_app(self, app: Flask) -> None:
        """Register the webhook on ``app`` and the ``flask kf`` commands.

        Reads (defaults in brackets): ``KF_TOKEN`` (required), ``KF_APPID``,
        ``KF_SECRET`` (both → the WeChat API is used), ``KF_ENCODING_AES_KEY``
        (set → safe mode), ``KF_ENCODING_AES_KEY_PREVIOUS``, ``KF_RULES``,
        ``KF_ACCOUNT_ID`` (set → pushes to another account are refused),
        ``KF_URL`` [/wechat], ``KF_MAX_CLOCK_SKEW`` [300], ``KF_MAX_BODY``
        [65536], ``KF_DEDUPE_TTL`` [60], ``KF_DEDUPE_WAIT`` [4],
        ``KF_API_BASE_URL`` [https://api.weixin.qq.com], ``KF_API_TIMEOUT`` [5],
        ``KF_REPLY_BUDGET`` [4.5], ``KF_HANDOFF_BUDGET`` [0.3],
        ``KF_AGENTS_REFRESH`` [20], ``KF_WORKER_THREADS`` [8], ``KF_REDIS_URL``
        (set → state shared through Redis), ``KF_REDIS_PREFIX`` [kf:], ``KF_TOKEN_MODE``
        [stable], ``KF_TOKEN_MARGIN`` [600], ``KF_TOKEN_INTERVAL`` [60],
        ``KF_TOKEN_SESSION_PREFIX`` [wechatpy].

        :raises RuntimeError: a KfPlugin is already registered on ``app``.
        :raises ConfigError: a setting is missing or invalid.
        :raises RuleFileError: ``KF_RULES`` names an invalid file.
        """
        if EXTENSION in app.extensions:
            raise RuntimeError(f"a KfPlugin is already registered on the app {app.name!r}; "
                               "call init_app once per app (one KfPlugin serves one official account)")
        for name, setting in SETTINGS.items():
            app.config.setdefault(name, setting.default)
        config = {name: read_setting(app.config, name) for name in SETTINGS}
        token = config["KF_TOKEN"]
        if not token:
            raise ConfigError("KF_TOKEN is not set: set it to the Token from the WeChat console "
                              "(Settings and Development → Basic Configuration)")
        cipher = None
        if config["KF_ENCODING_AES_KEY"]:
            previous = [config["KF_ENCODING_AES_KEY_PREVIOUS"]] if config["KF_ENCODING_AES_KEY_PREVIOUS"] else []
            cipher = PushCipher(token, config["KF_ENCODING_AES_KEY"], config["KF_APPID"], previous)
        if self._shared is None:
            self._shared = open_state(config["KF_REDIS_URL"], config["KF_APPID"] or "default",
                                      config["KF_REDIS_PREFIX"], config["KF_TOKEN_SESSION_PREFIX"],
                                      write_behind=True)
            if self._own_window_store:
                self.window.store = self._shared.window
        self._connect_api(config)
        if config["KF_RULES"] and self._rules_path is None and not self._rules.rules:
            self.load_rules(config["KF_RULES"])
        else:
            self.load_rules(self._rules)  # rebinds the rules to the API services just made
        store = self._replay_store if self._replay_store is not None else self._shared.replay
        dedupe = Deduplicator(store, ttl=config["KF_DEDUPE_TTL"], wait=config["KF_DEDUPE_WAIT"])
        late = None
        if self._admin is not None and config["KF_REPLY_BUDGET"]:
            late = LateReplies(self._handler_pool, config["KF_REPLY_BUDGET"], self._handoff_deliver_late)
        webhook = Webhook(token, self.handle, dedupe, cipher=cipher, max_clock_skew=config["KF_MAX_CLOCK_SKEW"],
                          max_body=config["KF_MAX_BODY"], late=late, clock=self._clock,
                          account_id=config["KF_ACCOUNT_ID"])
        app.extensions[EXTENSION] = _AppState(self, webhook)
        app.add_url_rule(config["KF_URL"], endpoint="kf_plugin_webhook", view_func=_webhook_view,
                         methods=["GET", "POST"])
        from .cli import cli
        app.cli.add_command(cli, "kf")

    def _connect_api(self, config: Dict[str, Any]) -> None:
        """Create the API client, the agent cache and the worker pool (once per plugin)."""
        if self._admin is not None or not (config["KF_APPID"] and config["KF_SECRET"]):
            return
        client = KfClient(config["KF_APPID"], config["KF_SECRET"], api_base_url=config["KF_API_BASE_URL"],
                          timeout=config["KF_API_TIMEOUT"], token_store=self._shared.tokens,
                          token_mode=config["KF_TOKEN_MODE"], token_margin=config["KF_TOKEN_MARGIN"],
                          token_interval=config["KF_TOKEN_INTERVAL"])
        self.jobs.add(f"kf_plugin:{client.appid}:access-token", client.tokens.tick, config["KF_TOKEN_INTERVAL"])
        self._admin = KfAdmin(client, window=self.window)
        self._handoff_budget = config["KF_HANDOFF_BUDGET"]
        self._agents_refresh = config["KF_AGENTS_REFRESH"]
        self._agents = AgentDirectory(self._admin, max_age=3 * self._agents_refresh)
        threads = max(1, config["KF_WORKER_THREADS"])
        self._executor = Background(threads)
        # Handlers get threads of their own: background sends on a slow API must never delay a reply.
        self._handler_pool = concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kf-handlers")

    def shutdown(self) -> None:
        """Stop the background work this plugin started (its own scheduler and worker threads), after
        sending the Redis writes still queued behind answers.

        Called at exit anyway; tests and embedding code call it to stop early.
        """
        self.jobs.shutdown()
        if self._shared is not None:
            self._shared.flush()
        for pool in (self._executor, self._handler_pool):
            if pool is not None:
                pool.shutdown(wait=False)

    def _handoff_deliver_late(self, message: Any, reply: Optional[BaseReply]) -> None:
        self._handoff.deliver_late(message, reply)


def _run_hook(hook: SessionHook, event: Any) -> None:
    try:
        hook(event)
    except Exception:  # a bot's hook failing must not take the worker down; it is reported in full
        log.exception("session hook %r failed on %s", hook, getattr(event, "event", "?"))


def _webhook_view() -> Response:
    incoming = request._get_current_object()  # once, not through the proxy at every use
    if incoming.method == "HEAD":
        # Flask serves HEAD wherever GET is served; a HEAD can neither verify the URL (its answer has no body)
        # nor carry a push, so it is answered as a route without HEAD would be.
        return Response("method not allowed: use GET (URL verification) or POST (a push)", status=405,
                        headers={"Allow": "GET, POST"}, content_type="text/plain; charset=utf-8")
    state: _AppState = current_app.extensions[EXTENSION]
    state.plugin.jobs.ensure_started()
    answer = state.webhook.handle(incoming.method, incoming.args, incoming.stream.read)
    return Response(answer.body, status=answer.status, content_type=answer.content_type)
