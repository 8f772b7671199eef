"""The state one official account's workers share: memory for one process, Redis for many."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from ..errors import ConfigError
from .base import ReplayStore, TokenStore, WindowStore
from .failover import (
    Failover,
    FailoverReplayStore,
    FailoverTokenStore,
    FailoverWindowStore,
)
from .memory import MemoryReplayStore, MemoryTokenStore, MemoryWindowStore

__all__ = ["SharedState", "open_state"]


@dataclass(frozen=True)
class SharedState:
    replay: ReplayStore
    window: WindowStore
    tokens: TokenStore
    redis: Optional[Any] = None


def open_state(redis_url: Optional[str], appid: str, prefix: str = "kf:",
               session_prefix: str = "wechatpy") -> SharedState:
    """Memory stores, or — with ``redis_url`` — Redis stores that fall back to memory while Redis is down.

    Keys are ``{prefix}{appid}:...`` (the token: ``{session_prefix}:{appid}_access_token``, as wechatpy
    keeps it). Nothing connects yet: a bot starts even while Redis is down.

    :raises ConfigError: redis-py is missing or the URL is not a Redis URL.
    """
    if not redis_url:
        return SharedState(MemoryReplayStore(), MemoryWindowStore(), MemoryTokenStore())
    try:
        import redis
    except ImportError:
        raise ConfigError("KF_REDIS_URL is set but redis-py is not installed: pip install 'kf-plugin[redis]'") from None
    from .redis import RedisReplayStore, RedisTokenStore, RedisWindowStore
    try:
        connection = redis.Redis.from_url(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0,
                                          health_check_interval=30)
    except ValueError as exc:
        raise ConfigError(f"KF_REDIS_URL is not a Redis URL ({exc})") from None
    scope = f"{prefix}{appid}:"
    failover = Failover("shared state")  # one Redis: one verdict on whether it is up
    return SharedState(
        FailoverReplayStore(RedisReplayStore(connection, scope), MemoryReplayStore(), failover),
        FailoverWindowStore(RedisWindowStore(connection, scope), MemoryWindowStore(), failover),
        FailoverTokenStore(RedisTokenStore(connection, appid, prefix, session_prefix), MemoryTokenStore(), failover),
        connection,
    )
