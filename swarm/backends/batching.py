"""A micro-batcher: concurrent requests gathered into one call of a batch function.

A model serves a batch of prompts in about the time of one, so an agent that receives queries
concurrently runs them together. One batch runs at a time (the model is one resource); the next
batch gathers while the current one runs. By default an idle model starts at once, with whatever
has arrived (`max_wait_ms=0`, as Triton's dynamic batcher does by default): under load batches
form anyway, while the model is busy, and a query that finds the model idle pays no wait, which
on the swarm's path is paid at every agent it visits. A wait (`max_wait_ms`) trades that latency
for fuller batches when queries come in bursts to an idle model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

Req = TypeVar("Req")
Res = TypeVar("Res")


@dataclass
class _Pending(Generic[Req, Res]):
    request: Req
    future: asyncio.Future[Res]
    arrived: float  # loop time


class MicroBatcher(Generic[Req, Res]):
    """``await submit(req)`` returns ``fn(batch)[i]`` for the batch its request joined.

    A batch is dispatched when `max_batch` requests wait or `max_wait_ms` have passed since the
    oldest one arrived. An exception raised by `fn` reaches every caller of that batch. A caller
    cancelled before dispatch is dropped from its batch; with `sees_cancels`, `fn` is also handed
    one `cancelled()` check per request, so that it can stop a row whose caller gave up while the
    batch runs (the transformers backend stops generating that row).
    """

    def __init__(self, fn: Callable[..., Awaitable[list[Res]]], max_batch: int = 16, max_wait_ms: float = 0.0,
                 sees_cancels: bool = False) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        self._fn = fn
        self._sees_cancels = sees_cancels
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000
        self._pending: list[_Pending[Req, Res]] = []
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closed: BaseException | None = None

    async def submit(self, request: Req) -> Res:
        if self._closed is not None:
            raise self._closed
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done() or self._worker.get_loop() is not loop:
            self._wake = asyncio.Event()
            self._worker = loop.create_task(self._run(), name="micro-batcher")
        future: asyncio.Future[Res] = loop.create_future()
        self._pending.append(_Pending(request, future, loop.time()))
        assert self._wake is not None
        self._wake.set()
        return await future  # cancelling the caller cancels `future`: dropped at dispatch

    async def close(self, error: BaseException | None = None) -> None:
        """Stop; waiting callers (and later submitters) get `error` (default RuntimeError)."""
        self._closed = error or RuntimeError("micro-batcher closed")
        worker, self._worker = self._worker, None
        if worker is not None and not worker.done():
            worker.cancel()
            try:
                await worker
            except asyncio.CancelledError:
                pass
        self._fail(self._pending, self._closed)
        self._pending = []

    def _live(self) -> list[_Pending[Req, Res]]:
        self._pending = [p for p in self._pending if not p.future.done()]
        return self._pending

    async def _run(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            if not self._live():
                await self._wake.wait()
                continue
            await self._gather(loop)
            live = self._live()
            batch, self._pending = live[: self.max_batch], live[self.max_batch :]
            if batch:
                await self._dispatch(batch)

    async def _gather(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait until the batch is full or its oldest request has waited max_wait."""
        assert self._wake is not None
        while (live := self._live()) and len(live) < self.max_batch:
            remaining = live[0].arrived + self.max_wait_s - loop.time()
            if remaining <= 0:
                return
            self._wake.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._wake.wait()
            except TimeoutError:
                return

    async def _dispatch(self, batch: list[_Pending[Req, Res]]) -> None:
        try:
            requests = [p.request for p in batch]
            results = await (self._fn(requests, [p.future.cancelled for p in batch]) if self._sees_cancels else self._fn(requests))
            if len(results) != len(batch):
                raise RuntimeError(f"batch function returned {len(results)} results for {len(batch)} requests")
        except asyncio.CancelledError:
            self._fail(batch, self._closed or RuntimeError("micro-batcher stopped"))
            raise
        except Exception as exc:  # noqa: BLE001 - handed to every caller of the batch
            self._fail(batch, exc)
            return
        for pending, result in zip(batch, results):
            if not pending.future.done():
                if isinstance(result, BaseException):  # one row's own failure, the others' results stand
                    pending.future.set_exception(result)
                else:
                    pending.future.set_result(result)

    @staticmethod
    def _fail(batch: list[_Pending[Req, Res]], error: BaseException) -> None:
        for pending in batch:
            if not pending.future.done():
                pending.future.set_exception(error)
