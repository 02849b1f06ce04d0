"""Speculative forwarding: pass a query on while this agent still generates its own answer.

A policy whose self-assessment lands in its uncertain band (`swarm.policies.in_band`: it is about to
generate although its calibrated P does not clear its answer rule's bar by the agent's `speculate`
band) calls `Ask.on_uncertain`. The agent then sends the query to the next hop at once, as it would
after a rejection, and goes on generating. Routing's result does not change:

- the agent answers: its own answer is the result; the copy passed on is cancelled (#11's Cancel, so
  the peer's backend stops generating) and recorded in the trace as a `refused` hop of that peer
  (so it is on no path) whose detail says it was a cancelled speculative copy and whose `seconds`
  are how long it ran: an upper bound on the model time it cost, counted in `Answer.model_seconds`;
- the agent rejects (or its backend fails): the reply of the copy passed on is the result, exactly
  as if the query had been sent then, only earlier.

Both executions are counted: the agent's own generation in its trace hop as always; the wasted copy
in the trace hop above, in the node's counters, and in the metrics (`NodeObserver.speculated`).
A streamed query is never speculated: the copy passed on would stream an answer the client may not get.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

from swarm.protocol import MAX_DETAIL, Hop, Result, Speculations

log = structlog.get_logger("swarm.speculation")


class Speculation:
    """One query's copy passed on early. `trigger` (from any thread: a backend may judge in a worker
    thread) sends it; `claim` hands the pending send to the routing loop instead of sending again;
    `cancel` stops it when the agent answered; `close` stops anything left (the execution ended)."""

    def __init__(self, agent: str, peer: str, send: Callable[[], Awaitable[Result]], counters: Speculations) -> None:
        self.agent, self.peer, self._send, self.counters = agent, peer, send, counters
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task | None = None
        self._started = 0.0
        self._done = False

    def trigger(self) -> None:
        self._loop.call_soon_threadsafe(self._start)

    def _start(self) -> None:
        if self._task is not None or self._done:
            return
        self._started = time.monotonic()
        self._task = asyncio.ensure_future(self._send())
        self._task.add_done_callback(_consume)
        self.counters.started += 1
        log.info("speculating: passed on while generating", peer=self.peer)

    def claim(self, trace: list[Hop]) -> asyncio.Task | None:
        """The send under way, now the routing loop's to await (None: nothing was sent); the agent's
        own last hop (its rejection) then says that it speculated."""
        self._done = True
        task, self._task = self._task, None
        if task is not None:
            self.counters.used += 1
            if trace:
                note = f"speculated: passed on to {self.peer} while generating"
                detail = f"{note}; {trace[-1].detail}" if trace[-1].detail else note
                trace[-1] = trace[-1].model_copy(update={"detail": detail[:MAX_DETAIL]})
        return task

    def cancel(self) -> Hop | None:
        """The agent answered: cancel the copy (its send's cleanup tells the peer); the trace hop that records it."""
        self._done = True
        task, self._task = self._task, None
        if task is None:
            return None
        task.cancel()
        ran = time.monotonic() - self._started
        self.counters.cancelled += 1
        self.counters.cancelled_s += ran
        log.info("speculative copy cancelled: answered here", peer=self.peer, ran_s=round(ran, 4))
        return Hop(agent=self.peer, decision="refused", seconds=ran,
                   detail=f"speculative copy from {self.agent}, cancelled after {ran:.3f} s: {self.agent} answered")

    def close(self) -> None:
        self._done = True
        if self._task is not None:
            self._task.cancel()
            self._task = None


def _consume(task: asyncio.Task) -> None:
    """A copy nobody awaits any more (cancelled) must not log 'exception never retrieved'."""
    if not task.cancelled():
        task.exception()
