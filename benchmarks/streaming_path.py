"""Streaming path: what each piece of a streamed answer costs on Ray, by path.

Two ways for the answering agent's pieces to reach the client, on bare async Ray actors (the
mechanism, without swarm's codec), k = the agent's distance from the entry in hops:

- re-yield: the client reads a Ray streaming generator (num_returns="streaming") from the entry,
  which re-yields the generator of the next agent, ... down to the answering agent: every piece
  crosses every hop of the chain (k + 1 actor-to-actor or driver hops per piece).
- direct (what swarm does): the answering agent sends each piece to the entry with one awaited
  actor call (swarm: a Chunk message on the control lane), and the entry yields it to the client
  from its streaming generator: two hops per piece whatever k (and the relay coalesces pieces
  while a call is in flight, which this measurement does not: worst case).

Two numbers per path, medians of interleaved repeats:
- cost: wall time for N pieces produced as fast as possible / N (the path's throughput limit;
  for direct this is one awaited round trip per piece, since the bare mechanism does not coalesce);
- delay: with pieces produced every 20 ms (a model at 50 tokens/s), the time from a piece's
  production to its arrival at the client (one host, one clock).

Run:  python benchmarks/streaming_path.py [--pieces 300] [--repeats 5] [--out benchmarks/results/streaming_path.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

import ray

PIECE = b"x" * 24  # about one token of text in a msgpack Chunk envelope's payload
PACED_S, PACED_PIECES = 0.02, 25


@ray.remote(num_cpus=0)
class Agent:
    def __init__(self) -> None:
        self.queue: asyncio.Queue | None = None
        self.paced = False

    async def produce(self, n: int):
        for _ in range(n):
            if self.paced:
                await asyncio.sleep(PACED_S)
                yield time.time()
            else:
                yield PIECE

    async def pace(self, paced: bool) -> None:
        self.paced = paced

    async def relay(self, nxt, n: int):
        """Re-yield: read the next agent's generator (or produce, at the end of the chain) and yield each piece on."""
        if nxt is None:
            async for piece in self.produce(n):
                yield piece
            return
        head, *rest = nxt
        async for ref in head.relay.options(num_returns="streaming").remote(rest or None, n):
            yield await ref

    async def push_to(self, entry, n: int) -> None:
        async for piece in self.produce(n):
            await entry.take.remote(piece)
        await entry.take.remote(None)

    async def take(self, piece) -> None:
        self.queue.put_nowait(piece)

    async def stream_from(self, producer, n: int):
        """Direct: the producer pushes to us with awaited calls; we yield to the client."""
        self.queue = asyncio.Queue()
        pushing = producer.push_to.remote(ray.get_runtime_context().current_actor, n)
        while (piece := await self.queue.get()) is not None:
            yield piece
        await pushing


def per_piece(gen, n: int) -> float:
    began = time.perf_counter()
    count = sum(1 for ref in gen if ray.get(ref) is not None)
    assert count == n, count
    return (time.perf_counter() - began) / n


def delay(gen) -> float:
    return statistics.median(time.time() - ray.get(ref) for ref in gen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pieces", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "streaming_path.json")
    args = parser.parse_args()
    ray.init(address="local", include_dashboard=False, log_to_driver=False, configure_logging=False)
    agents = [Agent.remote() for _ in range(4)]
    n = args.pieces
    series = {f"re-yield, k={k}": (lambda m, k=k: agents[0].relay.options(num_returns="streaming").remote(agents[1:k + 1] or None, m))
              for k in (0, 1, 2, 3)}
    series |= {f"direct, k={k}": (lambda m, k=k: agents[0].stream_from.options(num_returns="streaming").remote(agents[k], m))
               for k in (1, 3)}
    for make in series.values():  # warm up
        per_piece(make(n), n)
    times: dict[str, list[float]] = {name: [] for name in series}
    delays: dict[str, list[float]] = {name: [] for name in series}
    for _ in range(args.repeats):  # interleaved: other load on the machine falls on every series alike
        ray.get([a.pace.remote(False) for a in agents])
        for name, make in series.items():
            times[name].append(per_piece(make(n), n))
        ray.get([a.pace.remote(True) for a in agents])
        for name, make in series.items():
            delays[name].append(delay(make(PACED_PIECES)))
    rows = {name: {"cost_us": round(statistics.median(times[name]) * 1e6), "delay_us": round(statistics.median(delays[name]) * 1e6)}
            for name in series}
    print(f"{'path':<16} {'cost per piece (us)':>20} {'delay per piece at 50 pieces/s (us)':>36}")
    for name, row in rows.items():
        print(f"{name:<16} {row['cost_us']:>20} {row['delay_us']:>36}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"pieces": n, "repeats": args.repeats, "paced_s": PACED_S, "median_per_piece": rows}, indent=2) + "\n")
    ray.shutdown()


if __name__ == "__main__":
    main()
