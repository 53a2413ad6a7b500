"""Cross-process L1 coherence over Redis pub/sub.

Every :class:`~infra.cache.three_tier_cache.ThreeTierCache` with a Redis client publishes
what it changed (keys, a prefix, "everything") on one channel per namespace, and a
background task in every process drops the named entries from its L1. Delivery on a
healthy connection takes about a round trip (~0.1-1 ms on loopback), so another process
sees a write within the documented 100 ms deadline with a wide margin.

Why pub/sub and not RESP3 client-side tracking
    Pub/sub behaves identically under RESP2 and RESP3 (redis-py 8 speaks RESP3 when
    asked with ``protocol=3``), needs no per-key server state, and covers prefix and tag
    invalidations, which tracking does not express. It is also explicit: a well-known
    library's client-side cache silently stops invalidating under redis-py 8's RESP3
    default, a failure mode a tracking-based design invites and a pub/sub one shows as an
    error. The integration tests run both protocols.

What happens when the subscription drops
    Pub/sub is at-most-once: messages sent while we are not subscribed are lost. So the
    bus reports every state change to its owner, which keeps serving its L1 but caps
    every entry's lifetime at its staleness bound while disconnected (after that, reads
    go to L2/L3, which are authoritative), then clears it when the (re)subscription is
    confirmed -- an entry filled between the two could have missed an invalidation.
    redis-py may also reconnect and resubscribe on its own (with retries enabled); the
    server then confirms the subscription again, and *every*
    confirmation is treated as a fresh start for the same reason. A connection that dies
    silently (no RST) is found by a heartbeat: when the channel has been idle for
    ``heartbeat_interval`` the bus sends ``PING``, and no reply within another interval
    counts as a drop.

Our own messages
    Each cache has a random ``origin`` and ignores messages carrying it: its own write
    already put the fresh value in (or took the stale one out of) its L1, so evicting on
    our own echo would only throw away a good entry.

"Filled" signals
    A process waiting for another process's fill (cross-process single flight) is woken
    by a ``filled`` message naming the key instead of waiting for its next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from infra.redaction import redact_text

__all__ = ["InvalidationBus", "Message", "decode_message", "encode_message"]

_log = logging.getLogger("infra.cache.coherence")

_MIN_BACKOFF: Final = 0.01
_MAX_BACKOFF: Final = 1.0


@dataclass(frozen=True, slots=True)
class Message:
    """One coherence message.

    Exactly one of: ``keys`` (drop these), ``prefix`` (drop keys starting with it;
    ``""`` = everything), ``filled`` (the key was just written to L2 by a fill).
    """

    origin: str
    keys: tuple[str, ...] = ()
    prefix: str | None = None
    filled: str | None = None


def encode_message(message: Message) -> str:
    """The compact JSON form published on the channel."""
    body: dict[str, Any] = {"o": message.origin}
    if message.prefix is not None:
        body["p"] = message.prefix
    elif message.filled is not None:
        body["f"] = message.filled
    else:
        body["k"] = list(message.keys)
    return json.dumps(body, separators=(",", ":"))


def decode_message(data: bytes | str) -> Message | None:
    """Parse a channel payload; ``None`` when it is not one of ours (treat as "clear")."""
    try:
        body = json.loads(data)
        origin = body["o"]
        if not isinstance(origin, str):
            return None
        if "p" in body:
            return Message(origin, prefix=str(body["p"]))
        if "f" in body:
            return Message(origin, filled=str(body["f"]))
        keys = body["k"]
        if not isinstance(keys, list):
            return None
        return Message(origin, keys=tuple(str(k) for k in keys))
    except (ValueError, KeyError, TypeError):
        return None


class InvalidationBus:
    """The subscriber task and publisher for one namespace channel.

    Args:
        redis: The raw asyncio client; the subscription holds one of its connections.
        channel: The channel name (one per cache namespace).
        origin: This cache's id; messages carrying it are ignored.
        on_message: Called with every foreign message (``None`` for an unparseable one).
        on_state: Called with ``False`` when the subscription is lost and ``True`` when a
            (re)subscription is confirmed.
        heartbeat_interval: Idle time before a ``PING``; as long again without a reply
            counts as a dropped connection.
    """

    def __init__(
        self,
        redis: Redis,
        channel: str,
        *,
        origin: str,
        on_message: Callable[[Message | None], None],
        on_state: Callable[[bool], None],
        heartbeat_interval: float = 1.0,
    ) -> None:
        if heartbeat_interval <= 0:
            raise ValueError(f"heartbeat_interval must be > 0, got {heartbeat_interval!r}")
        self._redis = redis
        self.channel = channel
        self.origin = origin
        self._on_message = on_message
        self._on_state = on_state
        self._heartbeat = heartbeat_interval
        self._task: asyncio.Task[None] | None = None
        self._confirmed = False
        self._connected = asyncio.Event()
        self._waiters: dict[str, asyncio.Event] = {}
        self.subscriptions = 0
        """Confirmed (re)subscriptions so far."""
        self.drops = 0
        """Subscriptions lost so far."""

    @property
    def connected(self) -> bool:
        """Whether the subscription is confirmed and believed alive."""
        return self._connected.is_set()

    def start(self) -> None:
        """Start the subscriber task (idempotent; needs a running loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"cache-coherence:{self.channel}"
            )

    async def wait_connected(self, timeout: float) -> bool:
        """Start if needed and wait up to ``timeout`` s for the subscription."""
        self.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout)
        return self.connected

    async def close(self) -> None:
        """Stop the subscriber task and release its connection."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._connected.clear()

    async def wait_filled(self, key: str, timeout: float) -> None:
        """Return when a ``filled`` message for ``key`` arrives, or after ``timeout``."""
        event = self._waiters.get(key)
        if event is None:
            event = self._waiters[key] = asyncio.Event()
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            if self._waiters.get(key) is event:
                del self._waiters[key]

    # ---------------------------------------------------------------- the task
    async def _run(self) -> None:
        backoff = _MIN_BACKOFF
        while True:
            self._confirmed = False
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                await self._listen(pubsub)  # returns only by raising
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure means: reconnect
                self._lost(exc)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py: unannotated
            # After a healthy subscription reconnect at once; after failed attempts, back
            # off exponentially so a down server is not hammered.
            backoff = _MIN_BACKOFF if self._confirmed else min(backoff * 2, _MAX_BACKOFF)
            await asyncio.sleep(backoff)

    async def _listen(self, pubsub: PubSub) -> None:
        awaiting_pong = False
        while True:
            message = await pubsub.get_message(timeout=self._heartbeat)
            if message is None:
                if awaiting_pong:
                    raise ConnectionError("no reply to the coherence heartbeat PING")
                await pubsub.ping()
                awaiting_pong = True
                continue
            awaiting_pong = False
            kind = message["type"]
            if kind == "message":
                self._dispatch(message["data"])
            elif kind == "subscribe":
                self.subscriptions += 1
                self._confirmed = True
                self._on_state(True)  # the owner clears L1: we may have missed messages
                self._connected.set()

    def _dispatch(self, data: bytes | str) -> None:
        message = decode_message(data)
        if message is not None and message.origin == self.origin:
            return
        if message is not None and message.filled is not None:
            event = self._waiters.pop(message.filled, None)
            if event is not None:
                event.set()
            return
        self._on_message(message)

    def _lost(self, exc: BaseException) -> None:
        if self.connected:  # not on every failed reconnect attempt: once per loss
            self._connected.clear()
            self.drops += 1
            _log.warning(
                "cache coherence subscription to %s lost (%s); L1 entries live at most the "
                "staleness bound until resubscribed",
                self.channel,
                redact_text(f"{type(exc).__name__}: {exc}"),
            )
            self._on_state(False)
        for event in self._waiters.values():
            event.set()  # wake waiters so they poll L2 instead of waiting for a signal
        self._waiters.clear()

    def __repr__(self) -> str:
        return f"InvalidationBus({self.channel!r}, connected={self.connected})"
