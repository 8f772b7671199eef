"""The state one official account's workers share: memory for one process, Redis for many."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from ..errors import ConfigError
from .base import ReplayStore, TokenStore, WindowStore
from .failover import (
    Failover,
    FailoverHandoffStore,
    FailoverTokenStore,
    FailoverWindowStore,
)
from .failover_replay import FailoverReplayStore
from .handoffs import KEEP_RECORDS, HandoffStore, MemoryHandoffStore
from .memory import MemoryReplayStore, MemoryTokenStore, MemoryWindowStore

__all__ = ["SharedState", "open_state"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SharedState:
    replay: ReplayStore
    window: WindowStore
    tokens: TokenStore
    redis: Optional[Any] = None
    handoffs: HandoffStore = field(default_factory=MemoryHandoffStore)
    #: Whether Redis answers (``None`` without Redis): one verdict for every store here.
    failover: Optional[Failover] = None


def open_state(redis: Union[str, Any, None], appid: str, prefix: str = "kf:", session_prefix: str = "wechatpy", *,
               max_replies: int = 100_000, max_users: int = 200_000,
               keep_records: float = KEEP_RECORDS) -> SharedState:
    """Memory stores, or — with ``redis`` — Redis stores that fall back to memory while Redis is down.

    ``redis``: a Redis URL (``redis://``, ``rediss://`` for TLS, ``unix://``), or a redis-py client made
    by the bot (a ``Redis`` from a Sentinel's ``master_for``, a ``RedisCluster``, one with its own TLS
    or timeouts). Keys are ``{prefix}{appid}:...`` with the AppID as a Redis Cluster hash tag (the token:
    ``{session_prefix}:{appid}_access_token``, as wechatpy keeps it). Nothing connects yet: a bot starts
    even while Redis is down. ``max_replies`` / ``max_users`` bound the memory (this worker's own, asked
    first with Redis and used alone while it is away): replies kept for retries, users' send rights (and
    users' hand-off conversations). ``keep_records``: seconds a hand-off's record is kept after its request.

    :raises ConfigError: redis-py is missing, the URL is not a Redis URL, or a prefix holds a brace.
    """
    if redis is None or redis == "":
        own, conversations = MemoryWindowStore(max_users=max_users), MemoryHandoffStore(keep_records,
                                                                                        max_users=max_users)
        return SharedState(MemoryReplayStore(max_entries=max_replies, window=own, handoffs=conversations), own,
                           MemoryTokenStore(), handoffs=conversations)
    for name, value in (("KF_REDIS_PREFIX", prefix), ("KF_TOKEN_SESSION_PREFIX", session_prefix)):
        if "{" in value or "}" in value:
            raise ConfigError(f"{name} {value!r} must not hold braces: kf_plugin puts the AppID in braces, "
                              "as a Redis Cluster hash tag, and a brace of the prefix would take its place")
    connection = _connect(redis) if isinstance(redis, str) else _warn_if_slow_to_fail(redis)
    from .redis import RedisReplayStore, RedisWindowStore, scope_of
    from .redis_handoffs import RedisHandoffStore
    from .redis_tokens import RedisTokenStore
    scope = scope_of(prefix, appid)
    failover = Failover("shared state", probe=connection.ping)  # one Redis: one verdict on whether it is up
    shared_window, own_window = RedisWindowStore(connection, scope), MemoryWindowStore(max_users=max_users)
    shared_handoffs = RedisHandoffStore(connection, scope, keep_records)
    replay = FailoverReplayStore(RedisReplayStore(connection, scope, window=shared_window, handoffs=shared_handoffs),
                                 MemoryReplayStore(max_entries=max_replies, window=own_window), failover)
    window = FailoverWindowStore(shared_window, own_window, failover)
    replay.window = window
    tokens = FailoverTokenStore(RedisTokenStore(connection, appid, prefix, session_prefix), MemoryTokenStore(),
                                failover)
    handoffs = FailoverHandoffStore(shared_handoffs, MemoryHandoffStore(keep_records, max_users=max_users), failover)
    return SharedState(replay, window, tokens, connection, handoffs, failover)


def _connect(url: str) -> Any:
    try:
        import redis
    except ImportError:
        raise ConfigError("KF_REDIS_URL is set but redis-py is not installed: pip install 'kf-plugin[redis]'") from None
    try:
        return redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0, health_check_interval=30)
    except ValueError as exc:
        raise ConfigError(f"KF_REDIS_URL is not a Redis URL ({exc})") from None


def _warn_if_slow_to_fail(client: Any) -> Any:
    """A bot's own client that would wait long on a stalled Redis holds pushes past WeChat's 5 s: say so once."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None)
    if not isinstance(kwargs, dict):
        return client   # a cluster or another kind of client: its own business
    timeout = kwargs.get("socket_timeout")
    retries = getattr(kwargs.get("retry"), "_retries", 0) or 0
    worst = None if timeout is None else timeout * (1 + retries)
    if worst is None or worst > 2:
        log.warning("the Redis client given to kf_plugin waits %s on a stalled Redis before failing over to memory "
                    "(socket_timeout=%s, %d retries); WeChat gives up on an answer after 5 s: give it "
                    "socket_timeout=1, socket_connect_timeout=1 and retry=Retry(NoBackoff(), 0)",
                    "without end" if worst is None else f"up to {worst:g} s per command", timeout, retries)
    return client
