"""In-memory transport: every agent in one asyncio loop, messages still encoded on the wire.

For unit tests and for simulations of thousands of agents. `MemoryNetwork.kill` makes an agent
vanish mid-flight (its running handlers are cancelled and their senders see PeerUnreachable);
`freeze` makes it hang: it accepts messages and never replies, like a stuck process.
"""

from __future__ import annotations

import asyncio

from swarm.errors import PeerUnreachable
from swarm.transport.base import Transport


class MemoryNetwork:
    def __init__(self) -> None:
        self.nodes: dict[str, object] = {}
        self._running: dict[str, set[asyncio.Task]] = {}
        self._frozen: dict[str, asyncio.Event] = {}
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

    async def deliver(self, peer: str, data: bytes, sender: str = "") -> bytes:
        self.messages += 1
        for stuck in (sender, peer):  # a frozen agent neither answers nor sends
            frozen = self._frozen.get(stuck)
            if frozen is not None:
                await frozen.wait()
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
            task.cancel()
            raise


class MemoryTransport(Transport):
    def __init__(self, network: MemoryNetwork, owner: str = "") -> None:
        self.network, self.owner = network, owner

    async def send(self, peer: str, data: bytes, control: bool = False) -> bytes:
        return await self.network.deliver(peer, data, self.owner)
