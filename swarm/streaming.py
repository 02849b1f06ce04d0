"""Streaming an answer: text from a backend, piece by piece, to the agent that streams it to the client.

Path (measured; see the README's streaming section): the answering agent sends its pieces straight
to the query's entry agent (`Query.stream_to`) as Chunk messages on the control lane, and the entry
yields them to its client; the Result, with the trace, still flows back along the chain and comes
last. Agents that rejected the query upstream relay nothing per token.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

import structlog

from swarm.protocol import MAX_CHUNK_CHARS

log = structlog.get_logger("swarm.streaming")


class TextRelay:
    """Pieces of text from a backend (called from any thread) to `deliver`, in order and one delivery
    at a time: pieces that arrive while one is under way go together in the next, so a slow path
    coalesces pieces and never drops or reorders them. A failed delivery ends the streaming (the
    Result still carries the whole text)."""

    def __init__(self, deliver: Callable[[str], Awaitable[None]]) -> None:
        self.deliver = deliver
        self.loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self.sent = ""  # every piece handed over so far, in order
        self._pending: list[str] = []
        self._pump: asyncio.Task | None = None
        self.broken = False

    def __call__(self, piece: str) -> None:
        if threading.get_ident() == self._thread:
            self._add(piece)
        else:  # a backend's worker thread: its pieces are queued on the loop in the order they came
            self.loop.call_soon_threadsafe(self._add, piece)

    def _add(self, piece: str) -> None:
        if not piece or self.broken:
            return
        self.sent += piece
        self._pending.append(piece)
        if self._pump is None or self._pump.done():
            self._pump = self.loop.create_task(self._run())

    async def _run(self) -> None:
        while self._pending:
            text = "".join(self._pending)
            self._pending.clear()
            try:
                for i in range(0, len(text), MAX_CHUNK_CHARS):
                    await self.deliver(text[i:i + MAX_CHUNK_CHARS])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the client's side went away: stop streaming, the Result still goes back
                log.info("streaming stopped", error=repr(exc)[:200])
                self.broken = True
                self._pending.clear()

    async def finish(self, final: str) -> None:
        """Send what the backend did not stream of the `final` text (all of it, for a backend that
        does not stream), and wait until every piece is delivered."""
        await asyncio.sleep(0)  # pieces a worker thread queued just before it returned
        if final.startswith(self.sent):
            self._add(final[len(self.sent):])
        else:
            log.warning("streamed text differs from the answer", streamed_chars=len(self.sent))
        if self._pump is not None:
            await self._pump

    def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()


async def pieces_of(queue: asyncio.Queue[str | None]):
    """The texts put into `queue` until a None, those already waiting joined (up to MAX_CHUNK_CHARS)."""
    while (text := await queue.get()) is not None:
        ended = False
        while not queue.empty() and len(text) < MAX_CHUNK_CHARS:
            more = queue.get_nowait()
            if more is None:
                ended = True
                break
            if len(text) + len(more) > MAX_CHUNK_CHARS:
                yield text
                text = more
                continue
            text += more
        yield text
        if ended:
            return
