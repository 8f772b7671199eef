"""The Redis implementation of the window store: each user's send rights, changed by Lua scripts only."""
from __future__ import annotations

import functools
import json
from typing import Any, List, Optional

from .base import MAX_GRANTS_PER_USER, Grant, WindowRecord, WindowStore

__all__ = ["RedisWindowStore", "WINDOW_LUA"]

# A user's grants: a JSON list of [action, count (-1: no limit), "expires_at", used]. The time travels
# as a string: cjson writes numbers with 14 significant digits, which would round it.
# Every change drops expired grants, then keeps the key until its last grant ends
# (or `remember` seconds for a user with none, so a refusal is remembered).
WINDOW_LUA = """
local function load_grants(key, now)
  local grants = {}
  local raw = redis.call('GET', key)
  if raw then
    for _, g in ipairs(cjson.decode(raw)) do
      if tonumber(g[3]) > now then table.insert(grants, g) end
    end
  end
  return grants
end
local function keep_ms(last, now) return math.ceil((last - now) * 1000) end
local function save_grants(key, grants, now, remember)
  local last = now + remember
  for _, g in ipairs(grants) do if tonumber(g[3]) > last then last = tonumber(g[3]) end end
  local encoded = '[]'
  if #grants > 0 then encoded = cjson.encode(grants) end
  redis.call('SET', key, encoded, 'PX', keep_ms(last, now))
end
local function add_grant(key, now, remember, encoded, most, expires)
  -- a user with no record (most pushes): nothing to merge
  if redis.call('SET', key, '[' .. encoded .. ']', 'NX', 'PX', keep_ms(math.max(now + remember, expires), now)) then
    return
  end
  local grants = load_grants(key, now)
  table.insert(grants, cjson.decode(encoded))
  while #grants > most do  -- drop the grant that expires first
    local first = 1
    for i, g in ipairs(grants) do if tonumber(g[3]) < tonumber(grants[first][3]) then first = i end end
    table.remove(grants, first)
  end
  save_grants(key, grants, now, remember)
end
"""
_ADD = WINDOW_LUA + """
add_grant(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]))
"""
_CONSUME = WINDOW_LUA + """
local now = tonumber(ARGV[1])
local grants = load_grants(KEYS[1], now)
local best = nil
for i, g in ipairs(grants) do
  if (g[2] < 0 or g[4] < g[2]) and (best == nil or tonumber(g[3]) < tonumber(grants[best][3])) then best = i end
end
if best == nil then return nil end
grants[best][4] = grants[best][4] + 1
local used = cjson.encode(grants[best])
save_grants(KEYS[1], grants, now, tonumber(ARGV[2]))
return used
"""
_REVOKE = WINDOW_LUA + """
local now = tonumber(ARGV[1])
local kept = {}
if ARGV[3] == '1' then
  for _, g in ipairs(load_grants(KEYS[1], now)) do
    if g[2] >= 0 then g[4] = g[2]; table.insert(kept, g) end
  end
end
save_grants(KEYS[1], kept, now, tonumber(ARGV[2]))
"""


class RedisWindowStore(WindowStore):
    """A :class:`WindowStore` on Redis; every change is one Lua script, so concurrent sends never overspend.

    ``prefix``: see :func:`scope_of`. ``remember``: seconds a user whose rights are all gone stays known.
    """

    def __init__(self, redis: Any, prefix: str = "kf:", remember: float = 48 * 3600.0):
        self.redis = redis
        self.prefix = prefix
        self.remember = remember
        self._add = redis.register_script(_ADD)
        self._consume = redis.register_script(_CONSUME)
        self._revoke = redis.register_script(_REVOKE)

    def key(self, openid: str) -> str:
        return f"{self.prefix}window:{openid}"

    def get(self, openid: str, now: float) -> Optional[WindowRecord]:
        raw = self.redis.get(self.key(openid))
        if raw is None:
            return None
        return WindowRecord(tuple(g for g in map(_grant, json.loads(raw)) if g.expires_at > now))

    def add_grant(self, openid: str, grant: Grant, now: float) -> None:
        self._add(keys=[self.key(openid)], args=self.grant_args(grant, now))

    def grant_args(self, grant: Grant, now: float) -> List[Any]:
        """The script arguments that add ``grant``: now, remember, the encoded grant, the most grants kept,
        when the grant expires."""
        expires = repr(grant.expires_at)
        return [repr(now), self.remember, _encode_grant(grant, expires), MAX_GRANTS_PER_USER, expires]

    def consume(self, openid: str, now: float) -> Optional[Grant]:
        used = self._consume(keys=[self.key(openid)], args=[now, self.remember])
        return _grant(json.loads(used)) if used is not None else None

    def revoke(self, openid: str, now: float, *, exhausted: bool) -> None:
        self._revoke(keys=[self.key(openid)], args=[now, self.remember, "1" if exhausted else "0"])


def _encode_grant(grant: Grant, expires: str) -> str:
    """``grant`` as the JSON the scripts keep (see WINDOW_LUA), exactly as ``json.dumps`` writes it.

    Numbers that are plain ints and a time that is a float or an int are written here (their text needs no
    escaping); anything else goes through ``json.dumps``.
    """
    count = -1 if grant.count is None else grant.count
    if type(count) is int and type(grant.used) is int and type(grant.expires_at) in (float, int):
        return f'[{_quoted(grant.action)}, {count}, "{expires}", {grant.used}]'
    return json.dumps([grant.action, count, expires, grant.used])


@functools.lru_cache(maxsize=64)
def _quoted(text: str) -> str:
    """``text`` as a JSON string (an action: there are a few)."""
    return json.dumps(text)


def _grant(raw: Any) -> Grant:
    action, count, expires_at, used = raw  # expires_at is a string (see above)
    return Grant(action, None if count < 0 else int(count), float(expires_at), int(used))
