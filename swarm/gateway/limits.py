"""What the gateway lets in: its settings, API keys, per-key rate limits and a bounded queue.

Keys are compared in constant time (`hmac.compare_digest` on SHA-256 digests, against every key,
so neither a key's length nor its position leaks). The gateway's actor is given only the digests
(`GatewaySettings.sealed`), never the keys: Ray keeps actor arguments in its control store. Neither
a key nor its digest is logged: requests are identified by a short fingerprint, a hash of the
digest (so the fingerprint is no part of what a presented key is checked against).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import math
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import structlog

from swarm.errors import SwarmError

KEYS_ENV = "SWARM_API_KEYS"  # comma-separated keys
KEYS_FILE_ENV = "SWARM_API_KEYS_FILE"  # a file of keys, one a line
ANONYMOUS = "anonymous"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
log = structlog.get_logger("swarm.gateway")


@dataclass(frozen=True)
class GatewaySettings:
    """Everything the gateway enforces. Limits are per gateway process."""

    host: str = "127.0.0.1"
    port: int = 8000  # 0: an ephemeral port (the bound one is reported)
    api_keys: tuple[str, ...] = ()  # empty: no authentication (refused unless the host is loopback)
    key_digests: tuple[str, ...] = ()  # SHA-256 hex digests of the keys: what the gateway's actor is given instead
    max_body_bytes: int = 1 << 20  # larger requests get 413
    max_prompt_tokens: int = 8192  # estimated as characters / 4; larger prompts get 413
    rate_per_s: float = 100.0  # sustained requests per second per key ...
    burst: int = 200  # ... with this many at once; beyond: 429 with Retry-After
    max_in_flight: int = 256  # queries in the swarm at once from this gateway
    max_queue: int = 1024  # requests waiting for a slot; beyond: 429 with Retry-After
    deadline_s: float | None = None  # per request (504 past it); default: the topology's deadline_s
    body_timeout_s: float = 30.0  # to read a request's head (else the connection is closed), and its body (else 408)
    max_connections: int = 2048  # open connections at once (uvicorn's limit_concurrency); beyond: 503. Above
    # max_in_flight + max_queue, so that the queue (and its JSON 429) is reached before uvicorn's plain 503
    max_in_flight_per_key: int = 64  # requests of one key at once (body read included); beyond: 429 with Retry-After. With keys only
    dashboard: bool = True  # serve the dashboard at /dashboard (read-only without keys; its actions need a key)
    agent_base_dir: str | None = None  # relative model paths of agents added from the dashboard resolve here (the CLI's cwd)

    @property
    def keyless(self) -> bool:
        return not (self.api_keys or self.key_digests)

    def sealed(self) -> GatewaySettings:
        """These settings with the keys replaced by their digests: what may travel as an actor argument."""
        digests = tuple(dict.fromkeys((*self.key_digests, *(digest(k).hex() for k in self.api_keys))))
        return replace(self, api_keys=(), key_digests=digests)

    def check(self) -> None:
        if self.keyless and self.host not in LOOPBACK:
            raise SwarmError(f"refusing to serve on {self.host!r} without API keys: give --api-keys-file or "
                             f"{KEYS_ENV}, or bind to 127.0.0.1")
        for name in ("max_body_bytes", "max_prompt_tokens", "burst", "max_in_flight", "max_connections", "max_in_flight_per_key"):
            if getattr(self, name) < 1:
                raise SwarmError(f"gateway setting {name} must be at least 1")
        if not (self.rate_per_s > 0 and self.body_timeout_s > 0) or self.max_queue < 0:
            raise SwarmError("gateway settings: rate_per_s and body_timeout_s must be positive and max_queue not negative")
        if any(len(d) != 64 or d.strip("0123456789abcdef") for d in self.key_digests):
            raise SwarmError("gateway settings: key_digests must be SHA-256 hex digests")
        if self.max_connections <= self.max_in_flight + self.max_queue:
            log.warning("max_connections is not above max_in_flight + max_queue: past it clients get uvicorn's plain 503, "
                        "not the queue's 429", max_connections=self.max_connections, in_flight_and_queue=self.max_in_flight + self.max_queue)


def load_api_keys(path: str | os.PathLike[str] | None = None, environ: dict[str, str] | None = None) -> tuple[str, ...]:
    """Keys from a file (one a line, '#' comments) and/or the environment (SWARM_API_KEYS, comma-separated;
    SWARM_API_KEYS_FILE names a file). An empty result means no authentication."""
    env = os.environ if environ is None else environ
    keys: list[str] = [k.strip() for k in env.get(KEYS_ENV, "").split(",") if k.strip()]
    for source in (path, env.get(KEYS_FILE_ENV)):
        if not source:
            continue
        try:
            lines = Path(source).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise SwarmError(f"cannot read API keys from {str(source)!r}: {exc.strerror or exc}") from None
        keys += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    short = [k for k in keys if len(k) < 16]
    if short:
        raise SwarmError(f"{len(short)} API key(s) shorter than 16 characters; use long random keys (e.g. `openssl rand -hex 24`)")
    return tuple(dict.fromkeys(keys))


class KeyRing:
    """Checks `Authorization: Bearer <key>` headers against the configured keys, given by their digests."""

    def __init__(self, digests: tuple[str, ...]) -> None:
        self._digests = [(bytes.fromhex(d), fingerprint(bytes.fromhex(d))) for d in digests]

    @classmethod
    def of(cls, settings: GatewaySettings) -> KeyRing:
        return cls(settings.sealed().key_digests)

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def identify(self, authorization: str | None) -> str | None:
        """The key's fingerprint when the header carries a known key; ANONYMOUS with auth off; else None."""
        if not self._digests:
            return ANONYMOUS
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        candidate = digest(token.strip())
        found = None
        for known, print_ in self._digests:  # no early exit: every key is compared
            if hmac.compare_digest(candidate, known):
                found = print_
        return found


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def fingerprint(key_digest: bytes) -> str:
    """A key's name in logs and rate limits: a hash of its digest, not a part of it."""
    return "key-" + hashlib.sha256(b"swarm-gateway-fingerprint:" + key_digest).hexdigest()[:8]


class RateLimiter:
    """A token bucket per key: `rate_per_s` sustained, `burst` at once."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate, self.burst = rate_per_s, burst
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)

    def take(self, key: str) -> float:
        """0 when the request may go; else the seconds until it could (for Retry-After)."""
        now = time.monotonic()
        tokens, when = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - when) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate


class Overloaded(Exception):
    """A limit on requests at once is reached (the gateway's queue, or one key's share)."""


class Admission:
    """At most `max_in_flight` queries in the swarm; up to `max_queue` more wait their turn."""

    def __init__(self, max_in_flight: int, max_queue: int) -> None:
        self.max_in_flight, self.max_queue = max_in_flight, max_queue
        self._slots = asyncio.Semaphore(max_in_flight)
        self.waiting = 0
        self.in_flight = 0

    @contextlib.asynccontextmanager
    async def slot(self, deadline: float) -> AsyncIterator[None]:
        """Hold a slot for the body of the block. Raises Overloaded at once when the queue is full,
        TimeoutError when `deadline` (loop time) passes while waiting."""
        if self._slots.locked() and self.waiting >= self.max_queue:
            raise Overloaded
        self.waiting += 1
        try:
            async with asyncio.timeout_at(deadline):
                await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            self._slots.release()


class PerKey:
    """At most `limit` requests of one key at once; the next one is refused, not queued."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: dict[str, int] = {}  # only keys that hold a slot: bounded by the keys in use

    def take(self, key: str) -> bool:
        """One of the key's slots, if it has one left (give it back with `release`)."""
        held = self._held.get(key, 0)
        if held >= self.limit:
            return False
        self._held[key] = held + 1
        return True

    def release(self, key: str) -> None:
        if self._held[key] == 1:
            del self._held[key]
        else:
            self._held[key] -= 1


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
