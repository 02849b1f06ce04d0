"""At most one execution per query id at an agent, and a circuit breaker around its backend.

`Executions` knows the one execution of each query id an agent has taken: a second copy of the
id (a client's retry, a peer's re-route racing the first path) waits for that execution instead
of starting another, and for `remember_s` after it finished gets its result again, never a second
run. The first copy's caller going away, or a `cancel` message (unless another copy still waits),
cancels the execution, and asyncio's cancellation reaches the backend (the transformers micro-batch drops the row, vLLM aborts the request, the
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
    task: asyncio.Task  # the handler that runs the query (the first copy's)
    done: asyncio.Future  # its Result, for the copies that join it
    waiters: Counter[str] = field(default_factory=Counter)  # who waits for it (a peer's name; "" for a client), how often
    cancelled_by_message: bool = False


class Executions:
    """The first copy of a query id runs it in its own handler (no task of its own: nothing added on
    the query path but a dict entry and a future); later copies wait on that future."""

    def __init__(self, remember_s: float, remember_max: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.remember_s, self.remember_max, self.clock = remember_s, remember_max, clock
        self.holding: dict[str, Held] = {}
        self._finished: OrderedDict[str, tuple[float, Result]] = OrderedDict()

    def running(self, query_id: str) -> Held | None:
        """The execution of `query_id` still under way here (one being cancelled does not count: a
        copy arriving now runs afresh, which is a re-run of abandoned work, not a duplicate)."""
        held = self.holding.get(query_id)
        return held if held is not None and not held.done.done() and not held.task.cancelling() else None

    def finished(self, query_id: str) -> Result | None:
        self._expire()
        entry = self._finished.get(query_id)
        return entry[1] if entry is not None else None

    async def run(self, query_id: str, sender: str, work: Callable[[], Coroutine[Any, Any, Result]]) -> Result | None:
        """Run `work()` as the execution of `query_id`, in the calling task; None when a cancel
        message stopped it (a cancellation of the caller itself propagates)."""
        task = asyncio.current_task()
        assert task is not None
        held = self.holding[query_id] = Held(task, asyncio.get_running_loop().create_future())
        held.waiters[sender] += 1
        try:
            result = await work()
        except asyncio.CancelledError:
            held.done.cancel()
            if held.cancelled_by_message and task.uncancel() == 0:
                return None
            raise
        except BaseException as exc:
            held.done.set_exception(exc)
            held.done.exception()  # retrieved: joined copies re-raise it, nobody else need
            raise
        else:
            held.done.set_result(result)
            self._finished[query_id] = (self.clock(), result)
            while len(self._finished) > self.remember_max:
                self._finished.popitem(last=False)
            return result
        finally:
            if self.holding.get(query_id) is held:
                del self.holding[query_id]

    async def join(self, held: Held, sender: str) -> Result | None:
        """The running execution's result; None when it was cancelled (the caller then runs it afresh)."""
        held.waiters[sender] += 1
        try:
            return await asyncio.shield(held.done)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if held.done.cancelled() and not (current and current.cancelling()):
                return None
            raise
        finally:
            held.waiters[sender] -= 1
            if held.waiters[sender] <= 0:
                del held.waiters[sender]

    def cancel(self, query_id: str, sender: str = "") -> bool:
        """`sender` no longer waits for `query_id`: stop its execution unless someone else still waits
        for it (a copy that joined it); True when cancelled."""
        held = self.holding.get(query_id)
        if held is None or held.done.done() or set(held.waiters) - {sender}:
            return False
        held.cancelled_by_message = True
        held.task.cancel()
        return True

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
