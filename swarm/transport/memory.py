"""In-memory transport: every agent in one asyncio loop, messages still encoded on the wire.

For unit tests and for simulations of thousands of agents. `MemoryNetwork.kill` makes an agent
vanish mid-flight (its running handlers are cancelled and their senders see PeerUnreachable);
`freeze` makes it hang: it accepts messages and never replies, like a stuck process. `cut` and
`partition` lose every message between two agents (or groups) until `heal`, as a network
partition does; `limit` gives an agent a query lane of fixed width (as an actor's concurrency
limit does), which its control lane bypasses. With `cancel_abandoned=False` a handler keeps
running when its sender stops waiting, as a remote call on Ray does.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

from swarm.errors import PeerUnreachable
from swarm.transport.base import Transport


class MemoryNetwork:
    def __init__(self, cancel_abandoned: bool = True) -> None:
        self.nodes: dict[str, object] = {}
        self._running: dict[str, set[asyncio.Task]] = {}
        self._frozen: dict[str, asyncio.Event] = {}
        self._cuts: set[frozenset[str]] = set()
        self._lanes: dict[str, asyncio.Semaphore] = {}
        self.cancel_abandoned = cancel_abandoned
        self.messages = 0

    def transport(self, owner: str = "") -> MemoryTransport:
        return MemoryTransport(self, owner)

    def register(self, node) -> None:
        self.nodes[node.name] = node
        self._running.setdefault(node.name, set())

    def kill(self, name: str) -> None:
        """The agent is gone: pending and future messages to it fail."""
        self.nodes.pop(name, None)
        for task in self._running.pop(name, set()):
            task.cancel()
        self.thaw(name)

    def freeze(self, name: str) -> None:
        self._frozen.setdefault(name, asyncio.Event())

    def thaw(self, name: str) -> None:
        event = self._frozen.pop(name, None)
        if event is not None:
            event.set()

    def cut(self, a: str, b: str) -> None:
        """Lose every message between `a` and `b` (both ways) until `heal`."""
        self._cuts.add(frozenset((a, b)))

    def partition(self, *groups: set[str] | list[str]) -> None:
        """Cut every pair of agents in different groups (a client is in none: it reaches everyone)."""
        for g1, g2 in itertools.combinations(groups, 2):
            for a in g1:
                for b in g2:
                    self.cut(a, b)

    def heal(self) -> None:
        self._cuts.clear()

    def limit(self, name: str, queries: int) -> None:
        """At most `queries` query-lane messages handled by `name` at once; the rest wait their turn."""
        self._lanes[name] = asyncio.Semaphore(queries)

    async def deliver(self, peer: str, data: bytes, sender: str = "", control: bool = False) -> bytes:
        self.messages += 1
        for stuck in (sender, peer):  # a frozen agent neither answers nor sends
            frozen = self._frozen.get(stuck)
            if frozen is not None:
                await frozen.wait()
        if frozenset((sender, peer)) in self._cuts:
            await asyncio.Event().wait()  # lost: the sender's own timeout ends the wait
        lane = None if control else self._lanes.get(peer)
        if lane is not None:
            await lane.acquire()
        try:
            return await self._handle(peer, data)
        finally:
            if lane is not None:
                lane.release()

    async def deliver_stream(self, peer: str, data: bytes, sender: str = "") -> AsyncIterator[bytes]:
        """`deliver` for a streamed query (its answer's pieces, then its Result): the same lane, cuts and
        freezes; the peer dying mid-stream is PeerUnreachable."""
        self.messages += 1
        frozen = self._frozen.get(peer) or self._frozen.get(sender)
        if frozen is not None:
            await frozen.wait()
        if frozenset((sender, peer)) in self._cuts:
            await asyncio.Event().wait()
        node = self.nodes.get(peer)
        if node is None:
            raise PeerUnreachable(peer, "no such agent in the memory network")
        lane = self._lanes.get(peer)
        if lane is not None:
            await lane.acquire()
        replies = node.handle_stream(bytes(data))
        try:  # in the caller's own task: its cancellation (the client went away) reaches the peer's handler
            async for reply in replies:
                if self.nodes.get(peer) is not node:
                    raise PeerUnreachable(peer, "agent died while handling the message")
                yield reply
        finally:
            if lane is not None:
                lane.release()
            await replies.aclose()

    async def _handle(self, peer: str, data: bytes) -> bytes:
        node = self.nodes.get(peer)
        if node is None:
            raise PeerUnreachable(peer, "no such agent in the memory network")
        task = asyncio.ensure_future(node.handle(bytes(data)))
        running = self._running[peer]
        running.add(task)
        task.add_done_callback(running.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and not (current and current.cancelling()):
                raise PeerUnreachable(peer, "agent died while handling the message") from None
            if self.cancel_abandoned:
                task.cancel()
            raise


class MemoryTransport(Transport):
    def __init__(self, network: MemoryNetwork, owner: str = "") -> None:
        self.network, self.owner = network, owner

    async def send(self, peer: str, data: bytes, control: bool = False) -> bytes:
        return await self.network.deliver(peer, data, self.owner, control)

    async def stream(self, peer: str, data: bytes) -> AsyncIterator[bytes]:
        async for reply in self.network.deliver_stream(peer, data, self.owner):
            yield reply
