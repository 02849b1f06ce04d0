"""MicroBatcher: gathering, dispatch rules, errors and cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from swarm.backends.batching import MicroBatcher


def run(scenario: Callable[[], Awaitable[Any]], timeout: float = 5.0) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(scenario(), timeout)

    return asyncio.run(main())


class Recorder:
    """A batch function that records each batch and doubles its inputs."""

    def __init__(self, delay: float = 0.0, fail: Exception | None = None) -> None:
        self.batches: list[list[int]] = []
        self.delay, self.fail = delay, fail
        self.running = 0
        self.most_running = 0

    async def __call__(self, batch: list[int]) -> list[int]:
        self.batches.append(list(batch))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await asyncio.sleep(self.delay)
            if self.fail is not None:
                raise self.fail
            return [2 * x for x in batch]
        finally:
            self.running -= 1


def test_concurrent_submissions_share_one_call_and_each_gets_its_own_result():
    fn = Recorder()

    async def scenario():
        batcher = MicroBatcher(fn, max_batch=8, max_wait_ms=20)
        return await asyncio.gather(*(batcher.submit(i) for i in range(5)))

    assert run(scenario) == [0, 2, 4, 6, 8]
    assert fn.batches == [[0, 1, 2, 3, 4]]


def test_a_full_batch_dispatches_without_waiting_and_the_rest_follows():
    fn = Recorder()

    async def scenario():
        batcher = MicroBatcher(fn, max_batch=3, max_wait_ms=10_000)  # only fullness can dispatch quickly
        loop = asyncio.get_running_loop()
        start = loop.time()
        first = await asyncio.gather(*(batcher.submit(i) for i in range(3)))
        elapsed = loop.time() - start
        rest = asyncio.gather(*(batcher.submit(i) for i in range(3, 7)))
        await asyncio.sleep(0.05)
        assert len(fn.batches) == 2  # [3, 4, 5] is full; 6 waits for company
        await batcher.close()
        with pytest.raises(RuntimeError, match="closed"):
            await rest
        return first, elapsed

    first, elapsed = run(scenario)
    assert first == [0, 2, 4] and elapsed < 1.0
    assert fn.batches == [[0, 1, 2], [3, 4, 5]]


def test_a_lone_request_is_dispatched_after_max_wait():
    fn = Recorder()

    async def scenario():
        batcher = MicroBatcher(fn, max_batch=16, max_wait_ms=50)
        loop = asyncio.get_running_loop()
        start = loop.time()
        result = await batcher.submit(21)
        return result, loop.time() - start

    result, elapsed = run(scenario)
    assert result == 42
    assert 0.045 <= elapsed < 1.0


def test_max_wait_counts_from_the_first_request():
    fn = Recorder()

    async def scenario():
        batcher = MicroBatcher(fn, max_batch=16, max_wait_ms=100)
        first = asyncio.create_task(batcher.submit(1))
        await asyncio.sleep(0.06)
        second = asyncio.create_task(batcher.submit(2))
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.gather(first, second)
        return loop.time() - start

    waited = run(scenario)
    assert fn.batches == [[1, 2]]
    assert waited < 0.09  # the second request did not restart the clock


def test_one_batch_at_a_time_and_the_next_gathers_meanwhile():
    fn = Recorder(delay=0.1)

    async def scenario():
        batcher = MicroBatcher(fn, max_batch=16, max_wait_ms=0)
        first = asyncio.create_task(batcher.submit(0))
        await asyncio.sleep(0.02)  # batch [0] is running now
        later = [asyncio.create_task(batcher.submit(i)) for i in (1, 2, 3)]
        return await asyncio.gather(first, *later)

    assert run(scenario) == [0, 2, 4, 6]
    assert fn.batches == [[0], [1, 2, 3]]
    assert fn.most_running == 1


def test_by_default_an_idle_model_starts_at_once_and_company_gathers_while_it_runs():
    """No wait for company at an idle model (counted in event-loop steps, not seconds): the lone first
    request is in a batch before the loop could have slept; those that come while it runs go together."""
    fn = Recorder(delay=0.05)

    async def scenario():
        batcher = MicroBatcher(fn, max_batch=16)
        first = asyncio.create_task(batcher.submit(0))
        for _ in range(3):  # submit, wake the worker, dispatch: a few steps of the loop, no timer
            await asyncio.sleep(0)
        assert fn.batches == [[0]]
        later = [asyncio.create_task(batcher.submit(i)) for i in (1, 2, 3)]
        return await asyncio.gather(first, *later)

    assert run(scenario) == [0, 2, 4, 6]
    assert fn.batches == [[0], [1, 2, 3]]


def test_an_exception_reaches_every_caller_of_the_batch_and_the_batcher_recovers():
    fn = Recorder(fail=ValueError("model on fire"))

    async def scenario():
        batcher = MicroBatcher(fn, max_batch=4, max_wait_ms=5)
        results = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
        fn.fail = None
        return results, await batcher.submit(5)

    results, after = run(scenario)
    assert all(isinstance(r, ValueError) and str(r) == "model on fire" for r in results)
    assert after == 10


def test_a_wrong_number_of_results_is_an_error_for_the_batch():
    async def short(batch: list[int]) -> list[int]:
        return batch[:1]

    async def scenario():
        batcher = MicroBatcher(short, max_batch=4, max_wait_ms=5)
        return await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)

    results = run(scenario)
    assert all(isinstance(r, RuntimeError) and "1 results for 2 requests" in str(r) for r in results)


def test_a_caller_cancelled_before_dispatch_is_dropped():
    fn = Recorder()

    async def scenario():
        batcher = MicroBatcher(fn, max_batch=16, max_wait_ms=50)
        keep = asyncio.create_task(batcher.submit(1))
        drop = asyncio.create_task(batcher.submit(2))
        await asyncio.sleep(0.01)
        drop.cancel()
        result = await keep
        assert drop.cancelled()
        return result

    assert run(scenario) == 2
    assert fn.batches == [[1]]


def test_a_caller_cancelled_during_its_batch_does_not_disturb_the_others():
    fn = Recorder(delay=0.05)

    async def scenario():
        batcher = MicroBatcher(fn, max_batch=16, max_wait_ms=0)
        keep = asyncio.create_task(batcher.submit(1))
        drop = asyncio.create_task(batcher.submit(2))
        await asyncio.sleep(0.02)
        drop.cancel()
        return await keep, await batcher.submit(3)

    assert run(scenario) == (2, 6)
    assert fn.batches == [[1, 2], [3]]


def test_closed_batcher_refuses_new_work_with_the_given_error():
    async def scenario():
        batcher = MicroBatcher(Recorder(), max_batch=2, max_wait_ms=0)
        assert await batcher.submit(1) == 2
        await batcher.close(LookupError("gone"))
        with pytest.raises(LookupError, match="gone"):
            await batcher.submit(2)

    run(scenario)


def test_works_across_event_loops():
    fn = Recorder()
    batcher = MicroBatcher(fn, max_batch=2, max_wait_ms=0)
    assert asyncio.run(batcher.submit(1)) == 2
    assert asyncio.run(batcher.submit(2)) == 4


@pytest.mark.parametrize("kwargs", [{"max_batch": 0}, {"max_wait_ms": -1}])
def test_invalid_settings(kwargs):
    with pytest.raises(ValueError):
        MicroBatcher(Recorder(), **kwargs)
