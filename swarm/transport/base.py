"""The Transport seam: deliver one encoded message to a named peer and return its encoded reply."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator


class Transport(abc.ABC):
    """Addresses are agent names; how a name becomes a connection is the transport's business.

    `send` raises `swarm.errors.PeerUnreachable` when the peer cannot be reached; its
    `permanent` flag says whether the peer is gone for good (dead) or may come back.
    `control` marks membership traffic, which a transport may carry on a separate lane so
    that long generations never starve it.
    """

    @abc.abstractmethod
    async def send(self, peer: str, data: bytes, control: bool = False) -> bytes: ...

    async def stream(self, peer: str, data: bytes) -> AsyncIterator[bytes]:
        """Deliver a query and yield the peer's replies as they come (`AgentNode.handle_stream`: Chunk
        messages, then the Result); closing the iterator tells the peer its caller went away.
        Default: the one reply of `send` (a transport that cannot stream still answers)."""
        yield await self.send(peer, data)

    def forget(self, peer: str) -> None:  # noqa: B027 - optional hook
        """Drop anything cached about `peer` (it died; a new agent may reuse its name)."""
