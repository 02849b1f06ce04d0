"""Ray transport: agents are named, detached async Ray actors; a message is one actor call.

Peers are addressed by name inside the swarm's namespace. A name is turned into an actor
handle once (a control-store lookup, done off the query path and cached) and every message
after that is a direct actor-to-actor call carrying msgpack bytes. Agents use it to reach
their peers, and the entry client of a driver or a gateway to reach entry agents.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayError

from swarm.errors import PeerUnreachable
from swarm.transport.base import Transport


class RayTransport(Transport):
    def __init__(self, namespace: str, handles: dict[str, ray.actor.ActorHandle] | None = None) -> None:
        self.namespace = namespace
        self._handles: dict[str, ray.actor.ActorHandle] = dict(handles or {})

    def know(self, peer: str, handle: ray.actor.ActorHandle) -> None:
        """A handle the caller already holds (it created the actor): no lookup on first use."""
        self._handles[peer] = handle

    async def _resolve(self, peer: str) -> ray.actor.ActorHandle:
        handle = self._handles.get(peer)
        if handle is None:
            try:
                handle = await asyncio.to_thread(ray.get_actor, peer, namespace=self.namespace)
            except ValueError:
                raise PeerUnreachable(peer, f"no actor named {peer!r} in namespace {self.namespace!r}") from None
            self._handles[peer] = handle
        return handle

    async def send(self, peer: str, data: bytes, control: bool = False) -> bytes:
        handle = await self._resolve(peer)
        try:
            return await (handle.control if control else handle.handle).remote(data)
        except RayError as exc:
            raise self._unreachable(peer, exc) from None

    async def stream(self, peer: str, data: bytes) -> AsyncIterator[bytes]:
        """A streamed query: one call to the actor's `handle_stream`, a Ray streaming generator whose
        items (the answer's pieces, then the Result) arrive as the agent yields them. Closing this
        iterator early cancels that call, which cancels the query at the agent."""
        handle = await self._resolve(peer)
        replies = handle.handle_stream.options(num_returns="streaming").remote(data)
        finished = False
        try:
            async for ref in replies:
                yield await ref
            finished = True
        except RayError as exc:
            finished = True
            raise self._unreachable(peer, exc) from None
        finally:
            if not finished:  # best effort (the entry also sends a cancel message); it must never mask why we stopped
                with contextlib.suppress(Exception):
                    ray.cancel(replies)

    # -- the same, for a driver that blocks on Ray instead of awaiting (the sync face of Swarm) --
    def submit(self, peer: str, data: bytes) -> ray.ObjectRef | PeerUnreachable:
        """Send a query without waiting: the reference its reply will arrive in (wait with `ray.wait`,
        read with `reply`), or the PeerUnreachable that stopped it from going out."""
        handle = self._handles.get(peer)
        if handle is None:
            try:
                handle = self._handles[peer] = ray.get_actor(peer, namespace=self.namespace)
            except ValueError:
                return PeerUnreachable(peer, f"no actor named {peer!r} in namespace {self.namespace!r}")
        return handle.handle.remote(data)

    def reply(self, ref: ray.ObjectRef, peer: str) -> bytes | PeerUnreachable:
        """The reply of a submitted query that `ray.wait` found ready, or why there is none."""
        try:
            return ray.get(ref)
        except RayError as exc:
            return self._unreachable(peer, exc)

    def _unreachable(self, peer: str, exc: RayError) -> PeerUnreachable:
        if isinstance(exc, ActorDiedError):
            self.forget(peer)
            return PeerUnreachable(peer, f"actor died ({type(exc).__name__})", permanent=True)
        if isinstance(exc, ActorUnavailableError | RayActorError):
            return PeerUnreachable(peer, f"actor unavailable ({type(exc).__name__})", permanent=False)
        # the peer's handler itself broke: treat as a sick peer, not a dead one
        return PeerUnreachable(peer, f"call failed ({type(exc).__name__})", permanent=False)

    def forget(self, peer: str) -> None:
        self._handles.pop(peer, None)
