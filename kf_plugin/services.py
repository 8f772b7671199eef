"""What one official account runs on in a process: its shared state, 48-hour window, WeChat API client,
online-agent cache, thread pools, hand-off and webhook.

``KfPlugin.init_app`` keeps one :class:`Services` per Flask app (in ``app.extensions["kf_plugin"]``), so two
apps served by one plugin never share an API client; a plugin used without Flask has one of its own.
"""
from __future__ import annotations

import concurrent.futures
import os
import socket
import time
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from wechatpy.replies import BaseReply

from .admin import KfAdmin
from .agents import AgentDirectory
from .background import Background
from .client import KfClient
from .config import Settings
from .conversations import Conversations
from .dedupe import Deduplicator
from .errors import ConfigError
from .handoff import Handoff
from .hooks import HandoffHooks
from .lifecycle import Change, Conversation, Stage
from .metrics import open_metrics
from .reconcile import QueueWatch, Reconciler
from .rules import Rule, RuleSet, Transfer
from .security import PushCipher
from .state import ReplayStore, WindowStore
from .state.shared import SharedState, open_state
from .webhook import LateReplies, Planned, Slow, Webhook
from .window import WindowTracker

if TYPE_CHECKING:
    from .wecom.channel import WeComChannel

__all__ = ["Services", "open_shared", "check_api_rules"]

#: The lease the workers of one account share, so that one of them sweeps the hand-offs each interval.
SWEEP_LEASE = "handoff-sweep"
Respond = Callable[[Any, Optional[Conversation]], Union[Optional[BaseReply], Slow]]


def open_shared(settings: Settings, redis: Optional[Any] = None) -> SharedState:
    """The state the workers share: Redis with ``redis`` (a client) or ``KF_REDIS_URL``, else memory; the memory
    either way (each worker's own, asked first) bounded by the ``KF_MEMORY_*`` settings.

    The only place kf_plugin's extension opens its shared state.
    """
    return open_state(redis if redis is not None else settings.redis_url, settings.appid or "default",
                      settings.redis_prefix, settings.token_session_prefix,
                      max_replies=settings.memory_replies, max_users=settings.memory_users,
                      keep_records=settings.handoff_records_for)


def check_api_rules(rules: RuleSet, settings: Settings, where: str) -> None:
    """Refuse rules that need the WeChat API when its credentials are missing.

    Without them such a rule would quietly become a plain transfer. ``where`` says where the keys are set.

    :raises ConfigError: naming the first such rule, its options and the missing keys.
    """
    missing = [key for key, value in (("KF_APPID", settings.appid), ("KF_SECRET", settings.secret)) if not value]
    needing = rules.needing_api()
    if not missing or not needing:
        return
    rule, options = needing[0]
    more = f" (and {len(needing) - 1} more rules)" if len(needing) > 1 else ""
    raise ConfigError(f"rule {rule.name!r}{more} uses {', '.join(options)}, which needs the WeChat API, but "
                      f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: set "
                      f"{' and '.join(missing)} {where}, or remove those options from the rule")


class Services:
    """The run-time parts of one official account, built from its :class:`~kf_plugin.config.Settings`.

    Without ``KF_APPID`` and ``KF_SECRET`` there is no API: :attr:`admin`, :attr:`agents` and the pools are
    ``None`` and only the passive transfer reply is possible. ``window_store`` replaces the shared window;
    ``redis``, a redis-py client, replaces ``KF_REDIS_URL``.
    """

    def __init__(self, settings: Settings, *, window_store: Optional[WindowStore] = None,
                 redis: Optional[Any] = None, clock: Callable[[], float] = time.time,
                 hooks: Optional[HandoffHooks] = None):
        self.settings = settings
        self.clock = clock
        self.metrics = open_metrics(settings.measures)
        self.shared = open_shared(settings, redis)
        if self.shared.failover is not None:
            self.shared.failover.watch(self.metrics.redis_fallback)
        self.window = WindowTracker(window_store if window_store is not None else self.shared.window, clock=clock)
        self.window.metrics = self.metrics
        self.admin: Optional[KfAdmin] = None
        self.agents: Optional[AgentDirectory] = None
        self.executor: Optional[Background] = None   # notices, hooks, late replies
        self.handler_pool: Optional[concurrent.futures.ThreadPoolExecutor] = None   # bot handlers under the deadline
        if settings.has_api:
            self._connect_api()
        elif settings.has_wecom:   # 微信客服 alone: its hooks still run in the background
            self.executor = Background(max(1, settings.worker_threads))
        self.handoff = Handoff(RuleSet())
        self.queue: Optional[QueueWatch] = None   # WeChat's wait queue, for queue notices
        if self.admin is not None and settings.queue_refresh > 0:
            self.queue = QueueWatch(self.admin, max_age=settings.queue_refresh, clock=clock)
        hooks = hooks if hooks is not None else HandoffHooks()   # an empty set is falsy: test for None
        self.conversations = Conversations(self.shared.handoffs, hooks, executor=self.executor,
                                           place=self.queue.place if self.queue is not None else None, clock=clock,
                                           metrics=self.metrics)
        self.reconciler: Optional[Reconciler] = None
        self.wecom: Optional[WeComChannel] = None   # 微信客服, when the app configures it (set by init_app)

    def _connect_api(self) -> None:
        settings = self.settings
        assert settings.appid is not None and settings.secret is not None
        client = KfClient(settings.appid, settings.secret, api_base_url=settings.api_base_url,
                          timeout=settings.api_timeout, token_store=self.shared.tokens,
                          token_mode=settings.token_mode, token_margin=settings.token_margin,
                          token_interval=settings.token_interval)
        client.measure(self.metrics)
        self.admin = KfAdmin(client, window=self.window)
        self.agents = AgentDirectory(self.admin, max_age=3 * settings.agents_refresh, metrics=self.metrics)
        threads = max(1, settings.worker_threads)
        self.executor = Background(threads)
        # Handlers get threads of their own: background sends on a slow API must never delay a reply.
        self.handler_pool = concurrent.futures.ThreadPoolExecutor(max_workers=threads,
                                                                  thread_name_prefix="kf-handlers")

    def webhook(self, respond: Respond, replay_store: Optional[ReplayStore] = None, *,
                plan: Optional[Callable[[Any], Optional[Planned]]] = None) -> Webhook:
        """The webhook of this account: ``respond(message)`` answers a push, ``plan(message)`` may answer it
        before its claim (see :class:`Webhook`).

        :raises ConfigError: ``KF_TOKEN`` is missing, or a safe-mode setting is wrong.
        """
        settings = self.settings
        if not settings.token:
            raise ConfigError("KF_TOKEN is not set: set it to the Token from the WeChat console "
                              "(Settings and Development → Basic Configuration)")
        cipher = None
        if settings.encoding_aes_key:
            previous = [settings.encoding_aes_key_previous] if settings.encoding_aes_key_previous else []
            cipher = PushCipher(settings.token, settings.encoding_aes_key, settings.appid or "", previous)
        store = replay_store if replay_store is not None else self.shared.replay
        dedupe = Deduplicator(store, ttl=settings.dedupe_ttl, wait=settings.dedupe_wait,
                              keep_for=settings.max_clock_skew, window=self.window.store)
        late = None
        if self.handler_pool is not None and settings.reply_budget:
            late = LateReplies(self.handler_pool, settings.reply_budget, self.deliver_late, self.metrics.late_reply)
        return Webhook(settings.token, respond, dedupe, cipher=cipher, max_clock_skew=settings.max_clock_skew,
                       max_body=settings.max_body, late=late, clock=self.clock, grant_for=self.window.grant_for,
                       account_id=settings.account_id, plan=plan)

    def use_rules(self, rules: RuleSet) -> None:
        """Put ``rules``' window settings, hand-off and queue policy in force here."""
        self.window.configure(rules.quotas, rules.unknown_users)
        self.handoff = Handoff(rules, admin=self.admin, agents=self.agents, executor=self.executor,
                               budget=self.settings.handoff_budget, clock=self.clock)
        self.conversations.use_rules(rules)
        if self.wecom is not None:
            self.wecom.answers.use_rules(rules)
        self.reconciler = None
        if self.settings.handoff_sweep > 0 and (self.admin is not None or rules.queue.timeout is not None):
            self.reconciler = Reconciler(self.shared.handoffs, self.admin, rules.queue, queue=self.queue,
                                         on_transition=self.conversations.notify, clock=self.clock,
                                         turn=self._sweep_turn)

    def _sweep_turn(self) -> bool:
        """Whether this worker sweeps the hand-offs now: one worker an interval, under a lease in the shared
        state that its holder renews each sweep (a dead holder's lapses after two intervals)."""
        return self.take_turn(SWEEP_LEASE, 2 * self.settings.handoff_sweep)

    def take_turn(self, lease: str, ttl: float) -> bool:
        """Whether this worker holds the lease ``lease`` the account's workers share (in the shared state's token
        store) now: taken when it is free or lapsed, renewed for ``ttl`` seconds when it is this worker's own, so
        a holder that dies keeps it no longer than that. The worker is its host and process id, as they are at
        the call (a worker forked after the services were made is a worker of its own).

        :raises Exception: whatever the token store raises (Redis failing is met by its fallback memory).
        """
        owner = f"{socket.gethostname()}:{os.getpid()}"
        return self.shared.tokens.acquire(lease, owner, ttl)

    def answer_rule(self, rule: Rule, message: Any, conversation: Optional[Conversation] = None) -> BaseReply:
        """``rule``'s answer to ``message``, with the hand-off it makes stored and its notice on its way.

        A queued user's new request for a transfer is not a second hand-off: the queue notice answers it when
        due. A session rule queues the user before it opens the session (WeChat's kf_create_session may come
        before the answer) and, when nobody can take them, refuses that request. ``conversation``: where the
        sender is, if already read (else it is read when it matters).
        """
        conversations, action = self.conversations, rule.action
        self.metrics.rule_matched(rule.name)
        session = isinstance(action, Transfer) and action.session
        if isinstance(action, Transfer) and not session:
            current = conversation if conversation is not None else conversations.of(message.source)
            if current.stage is Stage.QUEUED:
                notice = conversations.notice(message, current)
                return notice if notice is not None else action.respond(message)
        requested = session and self._request(rule, message)
        answer = self.handoff.answer(rule, message, conversations.context_text(rule.name, message))
        if answer.handed_off:
            if not session:
                self._request(rule, message)
            conversations.answered(message)
        elif requested:
            conversations.apply(message.source, Change("refuse", at=self.clock()))
        if answer.then is not None:
            answer.then()
        return answer.reply

    def _request(self, rule: Rule, message: Any) -> bool:
        """Queue ``message``'s sender for ``rule``; whether that moved them (they were with the bot)."""
        conversations = self.conversations
        return conversations.apply(message.source, conversations.request(message, rule.name).change).moved

    def plan_rule(self, rule: Rule, message: Any) -> Optional[Planned]:
        """``rule``'s answer to ``message`` worked out before the push's claim, for a sender with the bot (see
        :class:`~kf_plugin.webhook.Planned`); ``None`` when it must be made under the claim (a session)."""
        if not self.handoff.answers_at_once(rule):
            return None
        answer = self.handoff.answer(rule, message)
        conversations = self.conversations
        transition = conversations.request(message, rule.name) if answer.handed_off else None

        def then() -> None:
            self.metrics.rule_matched(rule.name)
            if answer.then is not None:
                answer.then()
            if transition is not None:
                conversations.notify(transition)
            conversations.remember(message)
            conversations.answered(message)
        return Planned(answer.reply, then, transition)

    def deliver_late(self, message: Any, reply: Optional[Any]) -> None:
        """Send a reply that came too late for the passive answer (see :meth:`Handoff.deliver_late`)."""
        self.handoff.deliver_late(message, reply)

    def shutdown(self) -> None:
        """Stop the pools (and the 微信客服 pulls)."""
        if self.wecom is not None:
            self.wecom.shutdown()
        for pool in (self.executor, self.handler_pool):
            if pool is not None:
                pool.shutdown(wait=False)
