"""At most one execution per query id at an agent, and a circuit breaker around its backend.

`Executions` holds the one task that works on each query id an agent has taken: a second copy of
the id (a client's retry, a peer's re-route racing the first path) joins that task instead of
starting another, and for `remember_s` after it finished gets its result again, never a second
run. Nobody left waiting, or a `cancel` message, cancels the task, and asyncio's cancellation
reaches the backend (the transformers micro-batch drops the row, vLLM aborts the request, the
HTTP request is closed) and the forward in progress (which tells its peer to cancel too).

`CircuitBreaker` counts consecutive backend failures (timeouts included): past a few, the agent
passes queries on without asking its backend for a while, so a hung model costs one probe per
cool-down instead of every query's budget.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from swarm.protocol import Result


@dataclass
class Held:
    task: asyncio.Task
    waiters: Counter[str] = field(default_factory=Counter)  # who waits for it (a peer's name; "" for a client), how often


class Executions:
    def __init__(self, remember_s: float, remember_max: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.remember_s, self.remember_max, self.clock = remember_s, remember_max, clock
        self.holding: dict[str, Held] = {}
        self._finished: OrderedDict[str, tuple[float, Result]] = OrderedDict()

    def __len__(self) -> int:
        return len(self.holding)

    def running(self, query_id: str) -> Held | None:
        """The execution of `query_id` still under way here (one being cancelled does not count: a
        copy arriving now runs afresh, which is a re-run of abandoned work, not a duplicate)."""
        held = self.holding.get(query_id)
        return held if held is not None and not held.task.done() and not held.task.cancelling() else None

    def finished(self, query_id: str) -> Result | None:
        self._expire()
        entry = self._finished.get(query_id)
        return entry[1] if entry is not None else None

    def start(self, query_id: str, work: Coroutine[Any, Any, Result]) -> Held:
        task = asyncio.ensure_future(work)
        held = self.holding[query_id] = Held(task)
        task.add_done_callback(lambda t: self._done(query_id, t))
        return held

    async def wait(self, held: Held, sender: str = "") -> Result | None:
        """The execution's result; None when it was cancelled under us (a cancel message). When the
        last waiter itself is cancelled (its caller went away), the execution is cancelled too."""
        held.waiters[sender] += 1
        try:
            return await asyncio.shield(held.task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if held.task.cancelled() and not (current and current.cancelling()):
                return None
            raise
        finally:
            held.waiters[sender] -= 1
            if held.waiters[sender] <= 0:
                del held.waiters[sender]
            if not held.waiters and not held.task.done():
                held.task.cancel()

    def cancel(self, query_id: str, sender: str = "") -> bool:
        """`sender` no longer waits for `query_id`: stop its execution unless someone else still waits
        for it (a copy that joined it); True when cancelled."""
        held = self.holding.get(query_id)
        if held is None or held.task.done() or set(held.waiters) - {sender}:
            return False
        held.task.cancel()
        return True

    def _done(self, query_id: str, task: asyncio.Task) -> None:
        if (held := self.holding.get(query_id)) is not None and held.task is task:
            del self.holding[query_id]
        if task.cancelled() or task.exception() is not None:
            return
        self._finished[query_id] = (self.clock(), task.result())
        while len(self._finished) > self.remember_max:
            self._finished.popitem(last=False)

    def _expire(self) -> None:
        horizon = self.clock() - self.remember_s
        while self._finished:
            first = next(iter(self._finished.values()))
            if first[0] >= horizon:
                break
            self._finished.popitem(last=False)


class CircuitBreaker:
    """Closed until `failures` consecutive failures; then open for `cooldown_s`; then one trial
    call (half open) closes it on success or opens it again on failure."""

    def __init__(self, failures: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures, self.cooldown_s, self.clock = failures, cooldown_s, clock
        self.consecutive = 0
        self.opened_at: float | None = None
        self.trips = 0

    def allows(self) -> bool:
        """False while open; after the cool-down one caller at a time is let through to try."""
        if self.opened_at is None:
            return True
        if self.clock() - self.opened_at >= self.cooldown_s:
            self.opened_at = self.clock()  # half open: this caller tries; others wait another cool-down
            return True
        return False

    def success(self) -> None:
        self.consecutive, self.opened_at = 0, None

    def failure(self) -> bool:
        """Count one failure; True when this one opened the breaker."""
        self.consecutive += 1
        if self.consecutive >= self.failures and self.opened_at is None:
            self.opened_at = self.clock()
            self.trips += 1
            return True
        if self.opened_at is not None:
            self.opened_at = self.clock()
        return False
