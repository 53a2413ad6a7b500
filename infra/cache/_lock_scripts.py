"""The Lua scripts behind :class:`~infra.cache.distributed_lock.RedisDistributedLock`.

Each lock operation is one script, so it is atomic on the server and costs one round trip.
Keys, for a lock ``name`` under ``namespace``::

    {namespace}{{{name}}}                      the lock: value = owner token, PX = lease
    {namespace}{{{name}}}:fence                fencing counter (INCR), never expires
    {namespace}{{{name}}}:abandoned:{owner}    marker: this owner gave up (PX = lease)

The braces make ``{name}`` a Redis Cluster hash tag, so the keys of one lock always share
a slot, as a multi-key script requires. (Whatever the namespace or name contain, every
key starts with the same ``namespace{name}`` prefix, which holds a complete ``{...}``
pair, so the slot is the same for all of them.)

Replies are integers or arrays of integers, which redis-py returns as ``int`` whatever
the client's ``decode_responses`` and RESP version.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ABANDON",
    "ACQUIRE",
    "EXTEND",
    "RELEASE",
    "abandoned_key",
    "fence_key",
    "lock_key",
]

# KEYS: lock, fence, abandoned-marker.  ARGV: owner, lease_ms.
# Reply: {1, fencing_token} granted | {0, holder_pttl_ms} refused (pttl -1/-2 = unknown).
# * SET NX PX grants and starts the lease atomically; INCR runs only on a grant, so every
#   grant -- also after an expiry -- gets a larger token than any before it.
# * A request from an owner that already holds the lock (the policy retried a call whose
#   reply was lost) is granted again with the same token and a fresh lease: replaying
#   acquire can neither double-grant nor leak the lock.
# * An abandoned owner (its caller was cancelled; see ABANDON) is refused, so a request
#   still in flight when the cleanup ran cannot grant a lock nobody will release.
ACQUIRE: Final = """
if redis.call('EXISTS', KEYS[3]) == 1 then
  return {0, -2}
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, redis.call('INCR', KEYS[2])}
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  local token = redis.call('GET', KEYS[2])
  if not token then
    token = redis.call('INCR', KEYS[2])
  end
  return {1, tonumber(token)}
end
return {0, redis.call('PTTL', KEYS[1])}
"""

# KEYS: lock.  ARGV: owner.  Reply: 1 released | 0 not the owner (expired or taken over).
RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: lock.  ARGV: owner, lease_ms.  Reply: 1 extended | 0 not the owner.
EXTEND: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS: lock, abandoned-marker.  ARGV: owner, lease_ms.  Reply: 1 if a grant was undone.
# The marker outlives any request of this owner that could still arrive (one lease).
ABANDON: Final = """
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def lock_key(namespace: str, name: str) -> str:
    """The key holding the lock's owner token."""
    return f"{namespace}{{{name}}}"


def fence_key(lock: str) -> str:
    """The fencing counter of the lock whose key is ``lock``."""
    return f"{lock}:fence"


def abandoned_key(lock: str, owner: str) -> str:
    """The marker that refuses ``owner`` further grants of ``lock``."""
    return f"{lock}:abandoned:{owner}"
