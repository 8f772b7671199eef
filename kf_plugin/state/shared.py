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
from .writebehind import RespConnection, WriteBehind

__all__ = ["SharedState", "open_state"]


@dataclass(frozen=True)
class SharedState:
    replay: ReplayStore
    window: WindowStore
    tokens: TokenStore
    redis: Optional[Any] = None
    writer: Optional[WriteBehind] = None

    def flush(self) -> None:
        """Send the writes still queued behind answers (nothing to do without Redis or write-behind)."""
        if self.writer is not None:
            self.writer.flush()


def open_state(redis_url: Optional[str], appid: str, prefix: str = "kf:",
               session_prefix: str = "wechatpy", write_behind: bool = False) -> SharedState:
    """Memory stores, or — with ``redis_url`` — Redis stores that fall back to memory while Redis is down.

    Keys are ``{prefix}{appid}:...`` (the token: ``{session_prefix}:{appid}_access_token``, as wechatpy
    keeps it). Nothing connects yet: a bot starts even while Redis is down. ``write_behind``: a push
    costs one Redis round trip, its claim; finished replies and window grants go with the next one
    (:mod:`.writebehind`; needs hiredis, not over TLS).

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
    fast = RespConnection.for_client(connection) if write_behind else None
    writer = WriteBehind(fast, failover) if fast is not None else None
    return SharedState(
        FailoverReplayStore(RedisReplayStore(connection, scope, writer=writer), MemoryReplayStore(), failover, writer),
        FailoverWindowStore(RedisWindowStore(connection, scope), MemoryWindowStore(), failover, writer),
        FailoverTokenStore(RedisTokenStore(connection, appid, prefix, session_prefix), MemoryTokenStore(), failover),
        connection,
        writer,
    )
