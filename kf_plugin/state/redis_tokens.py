"""The access token, the leader lease and counters on Redis (the token where wechatpy reads it)."""
from __future__ import annotations

import json
import time
from typing import Any, Callable, Optional

from .base import Token, TokenStore
from .redis import scope_of

__all__ = ["RedisTokenStore"]


# A lease is "owner|expires_at" (by the store's clock); PX only cleans up after the holder is long gone.
_ACQUIRE_LEASE = """
local lease = redis.call('GET', KEYS[1])
if lease then
  local sep = string.find(lease, '|[^|]*$')  -- the last "|": an owner may contain one
  if string.sub(lease, 1, sep - 1) ~= ARGV[1] and tonumber(string.sub(lease, sep + 1)) > tonumber(ARGV[3]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[4], 'PX', ARGV[2])
return 1
"""
_RELEASE_LEASE = """
local lease = redis.call('GET', KEYS[1])
if lease and string.sub(lease, 1, string.find(lease, '|[^|]*$') - 1) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
# Drop the token (and our note of its expiry) only if it is still the one that failed.
_INVALIDATE_TOKEN = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1], KEYS[2]) end
return 0
"""
_COUNT = """
local value = redis.call('INCR', KEYS[1])
if value == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return value
"""


class RedisTokenStore(TokenStore):
    """A :class:`TokenStore` on Redis, readable by wechatpy.

    The token is stored exactly as wechatpy's ``RedisStorage(redis, prefix=session_prefix)``
    stores it — key ``{session_prefix}:{appid}_access_token``, JSON-encoded, expiring
    with the token — so a plain ``WeChatClient`` with that storage uses the token
    kept fresh here and never fetches its own. Our note of its expiry (by ``clock``)
    shares the token key's Redis Cluster slot; the leases and the counters live
    under :func:`scope_of`.
    """

    def __init__(self, redis: Any, appid: str, prefix: str = "kf:", session_prefix: str = "wechatpy",
                 clock: Callable[[], float] = time.time):
        self.redis = redis
        self.key = f"{session_prefix}:{appid}_access_token"
        self.prefix = scope_of(prefix, appid)
        self.expiry_key = f"{prefix}{{{self.key}}}:expires-at"  # the hash tag: the token key's slot
        self.clock = clock
        self._invalidate = redis.register_script(_INVALIDATE_TOKEN)
        self._acquire = redis.register_script(_ACQUIRE_LEASE)
        self._release_lease = redis.register_script(_RELEASE_LEASE)
        self._count = redis.register_script(_COUNT)

    def get(self) -> Optional[Token]:
        raw, note = self.redis.mget(self.key, self.expiry_key)
        if raw is None:
            return None
        value = json.loads(raw)
        if note is not None:
            noted_value, expires_at = json.loads(note)
            if noted_value == value:
                return Token(value, expires_at)
        # Stored by someone else (a plain WeChatClient): the key's TTL is all we know.
        return Token(value, self.clock() + max(self.redis.pttl(self.key), 0) / 1000)

    def put(self, token: Token, now: float) -> None:
        ttl = max(1, int((token.expires_at - now) * 1000))
        pipe = self.redis.pipeline()
        pipe.set(self.key, json.dumps(token.value), px=ttl)
        pipe.set(self.expiry_key, json.dumps([token.value, token.expires_at]), px=ttl)
        pipe.execute()

    def invalidate(self, value: str) -> bool:
        return bool(self._invalidate(keys=[self.key, self.expiry_key], args=[json.dumps(value)]))

    def acquire(self, name: str, owner: str, ttl: float) -> bool:
        now = self.clock()
        return bool(self._acquire(keys=[self.prefix + name],
                                  args=[owner, max(1, int(ttl * 1000)), repr(now), repr(now + ttl)]))

    def release(self, name: str, owner: str) -> None:
        self._release_lease(keys=[self.prefix + name], args=[owner])

    def holder(self, name: str) -> Optional[str]:
        lease = self.redis.get(self.prefix + name)
        if lease is None:
            return None
        owner, _, expires_at = lease.decode("utf-8").rpartition("|")
        return owner if float(expires_at) > self.clock() else None

    def count(self, name: str, ttl: float) -> int:
        return int(self._count(keys=[self.prefix + name], args=[max(1, int(ttl * 1000))]))
