"""Scale simulation: membership gossip among 10,000 agents, and 1,000 AgentNodes under churn.

Part 1, membership only (no network, no asyncio). Gossip rounds: in each round every live agent
pushes `take_updates(16)` to one random live peer, which merges them (spread=True) and answers
with its own `take_updates(16)`, merged back (spread=True): the push-pull exchange of
`swarm.upkeep.Upkeep._gossip_with`, without its whole-view fallback. Two round models: `sync`,
lock step (every message of a round is taken before any is merged: news moves one exchange per
round), and `async`, the agents one after another in a shuffled order (as jittered gossip timers
fire: news heard early in an interval may move on within it). Every
agent starts knowing everyone (bootstrap views merged with spread=False, as a launch does); then,
each from a fresh bootstrap, (a) a new agent joins through one seed (the seed merges its entry
with spread=True, the joiner merges the seed's view with spread=False, as `_on_join` does) and
(b) one agent crashes and one other agent declares it dead (`mark(name, "dead")`); the crashed
agent gossips no more and is never picked as a peer. Counted: rounds until every live agent's
view holds the change, against log2 N.

Memory: `Membership.merge` stores `incoming.model_copy()`, so N full views hold N^2 Member
objects. The bytes per entry are measured on full views of 1,000 agents built the real way; the
projection for N^2 entries decides `full_views_fit`. Convergence is simulated by a compact model
written here (`CompactView`): each view is a copy-on-write overlay (name -> (incarnation, state
rank)) over one shared bootstrap map, with Membership's rules copied: `_newer` (a higher
incarnation wins; at equal incarnation the worse state of STATE_ORDER), the refutation of
`_maybe_refute`, `retransmit * max(1, ceil(log2(len + 1)))` transmissions per change, and
`take_updates` sending the newest changes first. The real class runs beside it on the same
random draws (same seed), with its views built the real way (merge, copies) where they fit the
memory budget and otherwise with the bootstrap Member objects shared between views (one dict per
view; every change after the bootstrap goes through the real merge and copies): the two must
give the same number of agents knowing the change after every round.

Part 2, whole AgentNodes (`swarm.testing.MemorySwarm`, in-memory transport) in a cascade by cost,
the last one `AlwaysAnswer`; each agent's ScriptedBackend knows a seeded share of the queries and
takes a fixed simulated time per generation. After `start_all`, every `--churn-every` simulated
seconds one agent joins, leaves gracefully or crashes (never the terminal one) while ~200
queries stay in flight. Reported: lost queries (no outcome), errors (QueryError outcomes),
duplicates (a query id answered more than once: each node's `answered_ids`; split into answers
that a crashed agent made but never sent out, then redone elsewhere, and any other), copies joined
or answered from memory (`counters.duplicates`), and the simulated seconds after the churn until
every live node's `membership.digest()` agrees. The clock is virtual by default: an asyncio
loop whose time jumps to the next timer whenever nothing is ready (and `time.monotonic`, with
the clocks bound as default arguments in swarm, patched to it for the run), so CPU work takes
no simulated time and the wall time is the CPU the simulation needs.

Run:  python benchmarks/scale_sim.py [--sizes 100,1000,10000] [--nodes 1000] [--churn-s 60]
      [--out benchmarks/results/scale_sim.json]      (CI: --sizes 100,1000 --nodes 50 --churn-s 5)
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import gc
import hashlib
import inspect
import itertools
import math
import multiprocessing
import os
import random
import resource
import selectors
import statistics
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

os.environ.setdefault("SWARM_LOG_LEVEL", "error")  # before swarm is imported: churn makes every agent warn

import structlog  # noqa: E402

from swarm.client import new_query  # noqa: E402
from swarm.errors import QueryError, SwarmError  # noqa: E402
from swarm.membership import STATE_ORDER, Membership  # noqa: E402
from swarm.node import AgentNode, NodeConfig  # noqa: E402
from swarm.protocol import MAX_INCARNATION, MAX_MEMBERS, Member  # noqa: E402
from swarm.testing import AlwaysAnswer, MemorySwarm, ScriptedBackend  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
log = structlog.get_logger("benchmarks.scale_sim")
T = TypeVar("T")
GIB = 2**30


# ================================================================ part 1: membership only


@dataclass(frozen=True)
class MembershipParams:
    sizes: tuple[int, ...] = (100, 1000, 10000)
    fanout: int = 16  # updates per gossip message (NodeConfig.gossip_fanout)
    retransmit: int = 3  # Membership's default
    max_rounds: int = 200
    seed: int = 0
    cost_sample: int = 1000  # full views of this many agents are built the real way to measure an entry
    budget_gb: float = 8.0  # what views may take on this machine
    real_max: int = 10000  # the real Membership class runs beside the compact model up to this size
    modes: tuple[str, ...] = ("sync", "async")  # how a round is played (gossip_event)


def agent_names(n: int) -> list[str]:
    return [f"m{i:05d}" for i in range(n)]


def agent_members(n: int) -> list[Member]:
    return [Member(name=name, cost=round((i + 1) / (n + 1), 6)) for i, name in enumerate(agent_names(n))]


def entry_cost(n: int) -> dict:
    """Bytes per view entry, traced: full views of `n` agents built as a launch does (every view merges
    the whole bootstrap view, each entry a copy), and with the bootstrap Member objects shared."""
    members = agent_members(n)
    gc.collect()
    tracemalloc.start()
    t0 = time.perf_counter()
    views = []
    for m in members:
        view = Membership(m)
        view.merge_all(members, spread=False)
        views.append(view)
    copied = tracemalloc.get_traced_memory()[0]
    build_s = time.perf_counter() - t0
    del views
    gc.collect()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    base = {m.name: m for m in members}
    views = [_shared_view(m, base) for m in members]
    shared = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del views
    return {"sample_agents": n, "bytes_per_entry": copied / n**2, "shared_bytes_per_entry": shared / n**2,
            "build_s": build_s, "max_rss_mb": max_rss_mb()}


def _shared_view(me: Member, base: dict[str, Member]) -> Membership:
    """A view whose bootstrap entries are `base`'s Member objects (one dict per view, no copies). The
    same content as merging `base` with spread=False: no pending news, no suspects, nobody gone."""
    view = Membership(me)
    view.members = dict(base)
    view.members[me.name] = me
    view.version = len(base)
    return view


class CompactView:
    """One agent's view in the compact model: `Membership`'s rules on (incarnation, state rank)
    tuples, held as a copy-on-write overlay over one bootstrap map shared by every view."""

    __slots__ = ("me", "base", "own", "extra", "retransmit", "pending", "changed_at", "version", "refused")

    def __init__(self, me: str, base: dict[str, tuple[int, int]], retransmit: int = 3) -> None:
        self.me, self.base, self.retransmit = me, base, retransmit
        self.own: dict[str, tuple[int, int]] = {}  # entries that differ from (or are missing in) base
        self.extra = 0  # names in own that base lacks
        self.pending: dict[str, int] = {}
        self.changed_at: dict[str, int] = {}
        self.version = len(base)
        self.refused = 0
        if me not in base:
            self.own[me] = (0, STATE_ORDER["alive"])
            self.extra = 1

    def __len__(self) -> int:
        return len(self.base) + self.extra

    def get(self, name: str) -> tuple[int, int] | None:
        entry = self.own.get(name)
        return entry if entry is not None else self.base.get(name)

    def changes(self) -> list[tuple[str, int, int]]:
        """What this view holds beyond the bootstrap map (what a joiner takes from its seed beyond it)."""
        return [(name, *entry) for name, entry in self.own.items()]

    def merge(self, name: str, incarnation: int, rank: int, spread: bool = True) -> bool:  # Membership.merge
        if name == self.me:
            return self._maybe_refute(incarnation, rank)
        current = self.get(name)
        if current is not None and not _compact_newer((incarnation, rank), current):
            return False
        if current is None and len(self) >= MAX_MEMBERS:
            self.refused += 1
            return False
        self._set(name, (incarnation, rank), spread)
        return True

    def merge_all(self, entries: list[tuple[str, int, int]], spread: bool = True) -> None:
        for name, incarnation, rank in entries:
            self.merge(name, incarnation, rank, spread)

    def mark(self, name: str, state: str) -> bool:  # Membership.mark
        current = self.get(name)
        if current is None or name == self.me or STATE_ORDER[state] <= current[1]:
            return False
        self._set(name, (current[0], STATE_ORDER[state]))
        return True

    def take_updates(self, limit: int = 16) -> list[tuple[str, int, int]]:  # Membership.take_updates
        names = sorted(self.pending, key=lambda n: -self.changed_at[n])[:limit]
        for name in names:
            self.pending[name] -= 1
            if self.pending[name] <= 0:
                del self.pending[name]
        return [(n, *self.get(n)) for n in names]

    def _maybe_refute(self, incarnation: int, rank: int) -> bool:  # Membership._maybe_refute
        mine = self.get(self.me)
        stale = incarnation > mine[0]
        doubted = incarnation == mine[0] and rank != mine[1]
        if mine[1] == STATE_ORDER["left"] or not (stale or doubted):
            return False
        self._set(self.me, (min(MAX_INCARNATION, incarnation + 1), mine[1]))
        return True

    def _set(self, name: str, entry: tuple[int, int], spread: bool = True) -> None:  # Membership._set
        if name not in self.own and name not in self.base:
            self.extra += 1
        self.own[name] = entry
        self.version += 1
        if spread:
            self.pending[name] = self.retransmit * max(1, math.ceil(math.log2(len(self) + 1)))
            self.changed_at[name] = self.version


def _compact_newer(a: tuple[int, int], b: tuple[int, int]) -> bool:  # swarm.membership._newer
    if a[0] != b[0]:
        return a[0] > b[0]
    return a[1] > b[1]


class CompactSwarm:
    """N agents of the compact model."""

    def __init__(self, n: int, retransmit: int) -> None:
        self.names = agent_names(n)
        self.retransmit = retransmit
        self.base = {name: (0, STATE_ORDER["alive"]) for name in self.names}
        self.views = [CompactView(name, self.base, retransmit) for name in self.names]

    def join(self, seed: int) -> int:
        name = f"joiner{len(self.views):05d}"
        self.views[seed].merge(name, 0, STATE_ORDER["alive"], spread=True)  # the seed takes the Join
        joiner = CompactView(name, self.base, self.retransmit)
        joiner.merge_all(self.views[seed].changes(), spread=False)  # ... and answers with its view
        self.views.append(joiner)
        self.names.append(name)
        return len(self.views) - 1

    def declare(self, declarer: int, victim: int, state: str) -> None:
        self.views[declarer].mark(self.names[victim], state)

    def exchange(self, a: int, peer: int, fanout: int) -> None:
        va, vp = self.views[a], self.views[peer]
        vp.merge_all(va.take_updates(fanout))
        va.merge_all(vp.take_updates(fanout))

    def messages(self, a: int, peer: int, fanout: int) -> tuple[list, list]:
        return self.views[a].take_updates(fanout), self.views[peer].take_updates(fanout)

    def deliver(self, a: int, peer: int, push: list, pull: list) -> None:
        self.views[peer].merge_all(push)
        self.views[a].merge_all(pull)

    def knowing(self, live: list[int], name: str, state: str) -> int:
        rank = STATE_ORDER[state]
        return sum(1 for a in live if (e := self.views[a].get(name)) is not None and e[1] == rank)


class RealSwarm:
    """N agents each holding a real `swarm.membership.Membership`."""

    def __init__(self, n: int, retransmit: int, share: bool) -> None:
        members = agent_members(n)
        self.names = [m.name for m in members]
        self.retransmit = retransmit
        if share:
            base = {m.name: m for m in members}
            self.views = [_shared_view(m, base) for m in members]
            for view in self.views:
                view.retransmit = retransmit
        else:
            self.views = []
            for m in members:
                view = Membership(m, retransmit=retransmit)
                view.merge_all(members, spread=False)
                self.views.append(view)

    def join(self, seed: int) -> int:
        member = Member(name=f"joiner{len(self.views):05d}", cost=0.5)
        self.views[seed].merge(member, spread=True)  # Upkeep._on_join
        joiner = Membership(member, retransmit=self.retransmit)
        joiner.merge_all(self.views[seed].view(), spread=False)  # Upkeep.join: the seed's view
        self.views.append(joiner)
        self.names.append(member.name)
        return len(self.views) - 1

    def declare(self, declarer: int, victim: int, state: str) -> None:
        self.views[declarer].mark(self.names[victim], state)

    def exchange(self, a: int, peer: int, fanout: int) -> None:  # Upkeep._gossip_with / _on_gossip
        va, vp = self.views[a], self.views[peer]
        vp.merge_all(va.take_updates(fanout), spread=True)
        va.merge_all(vp.take_updates(fanout), spread=True)

    def messages(self, a: int, peer: int, fanout: int) -> tuple[list, list]:
        return self.views[a].take_updates(fanout), self.views[peer].take_updates(fanout)

    def deliver(self, a: int, peer: int, push: list, pull: list) -> None:
        self.views[peer].merge_all(push, spread=True)
        self.views[a].merge_all(pull, spread=True)

    def knowing(self, live: list[int], name: str, state: str) -> int:
        return sum(1 for a in live if (e := self.views[a].members.get(name)) is not None and e.state == state)


def gossip_event(swarm: CompactSwarm | RealSwarm, event: str, seed: int, fanout: int, max_rounds: int, mode: str = "sync") -> dict:
    """Apply `event` ("join" or "dead") to a freshly bootstrapped swarm, then gossip round by round
    until every live agent's view holds it. Every random draw comes from `seed`, so two models on
    the same seed meet the same choices. Rounds: `sync`, lock step (every message of a round is
    taken from the views as they were when it began: news travels one exchange per round); `async`,
    every agent once per round in a shuffled order, each exchange seeing the ones before it (what
    jittered gossip timers do: an agent that just heard news passes it on at its next tick, which
    may fall in the same interval)."""
    rng = random.Random(f"{seed}:{event}:{len(swarm.views)}:{mode}")
    live = list(range(len(swarm.views)))
    if event == "join":
        target = swarm.join(rng.choice(live))
        live.append(target)
        state = "alive"
    elif event == "dead":
        victim, declarer = rng.sample(live, 2)
        live.remove(victim)  # it crashed: it gossips no more, and nobody reaches it
        swarm.declare(declarer, victim, "dead")
        target, state = victim, "dead"
    else:
        raise ValueError(f"unknown event {event!r}")
    name = swarm.names[target]
    t0 = time.perf_counter()
    history = [swarm.knowing(live, name, state)]
    while history[-1] < len(live) and len(history) <= max_rounds:
        order = live[:]
        rng.shuffle(order)
        exchanges = []
        for a in order:
            while (peer := live[rng.randrange(len(live))]) == a:
                pass
            if mode == "async":
                swarm.exchange(a, peer, fanout)
            else:
                exchanges.append((a, peer, *swarm.messages(a, peer, fanout)))
        for a, peer, push, pull in exchanges:  # lock step: what a round brought is passed on from the next round
            swarm.deliver(a, peer, push, pull)
        history.append(swarm.knowing(live, name, state))
    return {"rounds": len(history) - 1, "converged": history[-1] == len(live), "live": len(live),
            "knowing_per_round": history, "wall_s": time.perf_counter() - t0}


def compact_rounds(params: MembershipParams) -> list[dict]:
    """The compact model at every size, both events; traced memory per size (the largest last)."""
    rows = []
    for n in sorted(params.sizes):
        gc.collect()
        tracemalloc.start()
        runs = []
        for mode, event in itertools.product(params.modes, ("join", "dead")):
            swarm = CompactSwarm(n, params.retransmit)
            runs.append({"members": n, "event": event, "mode": mode,
                         **gossip_event(swarm, event, params.seed, params.fanout, params.max_rounds, mode)})
            del swarm
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        rows += [{**r, "traced_peak_mb": peak / 2**20, "max_rss_mb": max_rss_mb()} for r in runs]
    return rows


def real_rounds(n: int, params: MembershipParams, share: bool) -> list[dict]:
    """The real Membership class at one size, both events (each from a fresh bootstrap)."""
    rows = []
    for mode, event in itertools.product(params.modes, ("join", "dead")):
        t0 = time.perf_counter()
        swarm = RealSwarm(n, params.retransmit, share)
        build_s = time.perf_counter() - t0
        r = gossip_event(swarm, event, params.seed, params.fanout, params.max_rounds, mode)
        del swarm
        gc.collect()
        rows.append({"members": n, "event": event, "mode": mode, "views": "shared bootstrap" if share else "copied",
                     "build_s": build_s, **r, "max_rss_mb": max_rss_mb()})
    return rows


def membership_part(params: MembershipParams, run: Callable[..., Any] | None = None) -> dict:
    """Part 1. `run(fn, *args)` runs one measurement (main: each in a fresh process, so that its
    max RSS is its own); by default in this process."""
    run = run or (lambda fn, *args: fn(*args))
    biggest = max(params.sizes)
    cost = run(entry_cost, min(params.cost_sample, biggest))
    projected = cost["bytes_per_entry"] * biggest**2
    projected_shared = cost["shared_bytes_per_entry"] * biggest**2
    budget = params.budget_gb * GIB
    compact = run(compact_rounds, params)
    real: dict[tuple[int, str, str], dict] = {}
    for n in sorted(params.sizes):
        if n > params.real_max:
            continue
        copies_fit = cost["bytes_per_entry"] * n**2 <= budget
        if not copies_fit and cost["shared_bytes_per_entry"] * n**2 > budget:
            continue
        for r in run(real_rounds, n, params, not copies_fit):
            real[(n, r["event"], r["mode"])] = r
    rows = []
    for c in compact:
        r = real.get((c["members"], c["event"], c["mode"]))
        log2n = math.log2(c["members"])
        rows.append({
            "members": c["members"], "event": c["event"], "mode": c["mode"], "rounds": c["rounds"], "rounds_per_log2n": c["rounds"] / log2n,
            "converged": c["converged"], "real_rounds": r["rounds"] if r else None, "real_views": r["views"] if r else None,
            "same_as_real": r["knowing_per_round"] == c["knowing_per_round"] if r else None,
            "knowing_per_round": c["knowing_per_round"], "compact_wall_s": c["wall_s"], "real_wall_s": r["wall_s"] if r else None,
            "real_max_rss_mb": r["max_rss_mb"] if r else None, "real_build_s": r["build_s"] if r else None,
        })
    largest = [c for c in compact if c["members"] == biggest]
    real_largest = [r for r in real.values() if r["members"] == biggest]
    return {
        "membership": rows,
        "full_views_fit": projected <= budget,
        "bytes_per_entry": cost["bytes_per_entry"],
        "shared_bytes_per_entry": cost["shared_bytes_per_entry"],
        "projected_full_views_gb": projected / GIB,
        "projected_shared_views_gb": projected_shared / GIB,
        "budget_gb": params.budget_gb,
        "cost_sample_agents": cost["sample_agents"],
        "cost_sample_build_s": cost["build_s"],
        "peak_mb": largest[0]["traced_peak_mb"],
        "compact_max_rss_mb": largest[0]["max_rss_mb"],
        "compact_members": biggest,
        "real_views_largest": real_largest[0]["views"] if real_largest else None,
        "real_max_rss_mb_largest": max((r["max_rss_mb"] for r in real_largest), default=None),
    }


# ================================================================ the virtual clock


class VirtualClock:
    """Simulated seconds; callable like time.monotonic."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class _VirtualSelector(selectors.DefaultSelector):
    """Polls without waiting; where the loop would sleep until its next timer, moves the clock there."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self.clock = clock

    def select(self, timeout: float | None = None):
        ready = super().select(0)
        if ready or (timeout is not None and timeout <= 0):
            return ready
        if timeout is None:  # no timer at all: only another thread can wake us (call_soon_threadsafe)
            ready = super().select(10.0)
            if not ready:
                raise RuntimeError("virtual clock: nothing is ready and nothing is scheduled (every task waits forever)")
            return ready
        self.clock.now += timeout
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on a VirtualClock: whenever no callback is ready, time jumps to the next timer
    (what `looptime` and aiotools' VirtualClock do, here by the selector the loop waits on)."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__(_VirtualSelector(clock))
        self.clock = clock

    def time(self) -> float:
        return self.clock.now


@contextlib.contextmanager
def monotonic_patched(clock: Callable[[], float]) -> Iterator[None]:
    """`time.monotonic` is `clock` inside, and so is every default argument in swarm's modules that
    was bound to the real time.monotonic at import (Membership, Executions, CircuitBreaker ...)."""
    real = time.monotonic
    patched: dict[int, tuple[Any, tuple | None]] = {}
    for func in _swarm_functions():
        if func.__defaults__ and any(d is real for d in func.__defaults__):
            patched[id(func)] = (func, func.__defaults__)
            func.__defaults__ = tuple(clock if d is real else d for d in func.__defaults__)
    time.monotonic = clock
    try:
        yield
    finally:
        time.monotonic = real
        for func, defaults in patched.values():
            func.__defaults__ = defaults


def _swarm_functions() -> Iterator[Any]:
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "swarm" or name.startswith("swarm.")):
            continue
        for obj in list(vars(module).values()):
            if getattr(obj, "__module__", None) != name:
                continue
            if inspect.isfunction(obj):
                yield obj
            elif inspect.isclass(obj):
                for attr in vars(obj).values():
                    attr = getattr(attr, "__func__", attr)  # classmethod, staticmethod
                    if inspect.isfunction(attr):
                        yield attr


def run_clocked(coro: Callable[[], Awaitable[T]], clock: str) -> T:
    """Run `coro()` on a virtual clock, or on the real one."""
    if clock == "real":
        return asyncio.run(coro())
    if clock != "virtual":
        raise ValueError(f"clock must be 'virtual' or 'real', got {clock!r}")
    vclock = VirtualClock()
    with monotonic_patched(vclock), asyncio.Runner(loop_factory=lambda: VirtualTimeLoop(vclock)) as runner:
        return runner.run(coro())


# ================================================================ part 2: AgentNodes under churn


@dataclass(frozen=True)
class ChurnParams:
    nodes: int = 1000
    churn_s: float = 60.0  # simulated seconds of churn
    churn_every: float = 1.0  # one event (join, leave or crash) this often
    churn_mix: tuple[float, float, float] = (2.0, 1.0, 1.0)  # weights of join, leave, crash (the swarm keeps its size)
    in_flight: int = 200  # queries kept in flight during the churn
    knows: float = 0.3  # share of the queries each agent answers (the rest it rejects; the last agent answers all)
    generation_s: float = 0.2  # simulated seconds per backend generation
    gossip_interval_s: float = 1.0
    ping_interval_s: float = 2.0
    ping_timeout_s: float = 2.0
    suspect_timeout_s: float = 6.0
    deadline_s: float = 30.0
    max_hops: int = 8
    settle_s: float = 120.0  # the most simulated time waited for membership to agree after the churn
    seed: int = 0
    clock: str = "virtual"

    def config(self) -> NodeConfig:
        return NodeConfig(gossip_interval_s=self.gossip_interval_s, ping_interval_s=self.ping_interval_s,
                          ping_timeout_s=self.ping_timeout_s, suspect_timeout_s=self.suspect_timeout_s)


class Knows(dict):
    """A ScriptedBackend's answers: a seeded share of all queries, decided by hashing (agent, query)."""

    def __init__(self, agent: str, share: float, seed: int) -> None:
        super().__init__()
        self.key, self.share = f"{seed}:{agent}:".encode(), share

    def __contains__(self, query: object) -> bool:
        digest = hashlib.blake2b(self.key + str(query).encode(), digest_size=8).digest()
        return int.from_bytes(digest) / 2**64 < self.share

    def get(self, query, default=None):
        return f"The answer is: {query}" if query in self else default


@dataclass
class ChurnLog:
    joins: int = 0
    failed_joins: int = 0
    leaves: int = 0
    crashes: int = 0
    timeline: list[tuple[float, str, str]] = field(default_factory=list)  # (simulated s, event, agent)


async def churn_swarm(p: ChurnParams) -> dict:
    """Part 2, on whatever clock the running loop has (see `churn_part`)."""
    loop = asyncio.get_running_loop()
    rng = random.Random(p.seed)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    ms = MemorySwarm(p.config(), max_hops=p.max_hops, deadline_s=p.deadline_s)
    terminal = "zterminal"
    every: dict[str, AgentNode] = {}  # every node that ever ran, for answered_ids and counters
    for i in range(p.nodes - 1):
        name = f"a{i:05d}"
        every[name] = ms.node(name, round((i + 1) / (p.nodes + 1), 6), _backend(name, p), seed=i)
    every[terminal] = ms.node(terminal, 1.0, _backend(terminal, p), AlwaysAnswer(), seed=p.nodes)
    t0 = loop.time()
    await ms.start_all()
    started_wall = time.perf_counter() - wall0
    outcomes: dict[str, tuple[object, float]] = {}
    issued: list[str] = []
    stop_issuing = asyncio.Event()
    ids = itertools.count()

    async def asker() -> None:
        while not stop_issuing.is_set():
            idx = next(ids)
            q = new_query(f"query {idx}", 0.5, p.deadline_s, p.max_hops, ms.client.limits.max_query_chars, query_id=f"q{idx:07d}")
            issued.append(q.query_id)
            began = loop.time()
            try:
                outcome: object = await ms.client.send(q)
            except QueryError as exc:
                outcome = exc
            except Exception as exc:  # noqa: BLE001 - an unexpected failure is an outcome too (counted as an error)
                outcome = exc
            outcomes[q.query_id] = (outcome, loop.time() - began)

    churn = ChurnLog()
    askers = [asyncio.ensure_future(asker()) for _ in range(p.in_flight)]
    churn_t0 = loop.time()
    await _churn(ms, p, rng, terminal, every, churn)
    churn_end = loop.time()
    stop_issuing.set()
    converged_s, agreed, correct = await _settle(ms, p.settle_s)
    _, pending = await asyncio.wait(askers, timeout=p.deadline_s + 10.0)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    simulated = loop.time() - t0
    live_at_end = sorted(ms.nodes)
    await ms.stop()
    return _churn_report(p, every, issued, outcomes, churn, {
        "simulated_s": simulated, "churn_simulated_s": churn_end - churn_t0, "converged_s": converged_s, "agreed": agreed,
        "agreed_view_correct": correct, "live_at_end": len(live_at_end), "start_wall_s": started_wall,
        "wall_s": time.perf_counter() - wall0, "cpu_s": time.process_time() - cpu0, "unfinished_askers": len(pending),
    })


def _backend(name: str, p: ChurnParams) -> ScriptedBackend:
    backend = ScriptedBackend(delay_s=p.generation_s)
    backend.answers = Knows(name, p.knows, p.seed)  # not through __init__: `answers or {}` would drop an empty-looking dict
    return backend


async def _churn(ms: MemorySwarm, p: ChurnParams, rng: random.Random, terminal: str, every: dict[str, AgentNode], log_: ChurnLog) -> None:
    loop = asyncio.get_running_loop()
    leaving: set[str] = set()
    background: set[asyncio.Task] = set()
    end = loop.time() + p.churn_s
    k = 0

    async def join(name: str, cost: float, seeds: list[str]) -> None:
        try:
            every[name] = await ms.join(name, cost, _backend(name, p), seeds=seeds)
            log_.joins += 1
        except SwarmError as exc:
            log_.failed_joins += 1
            log.warning("join failed", agent=name, error=str(exc))

    async def leave(name: str) -> None:
        try:
            await ms.leave(name)
        finally:
            leaving.discard(name)

    while loop.time() + p.churn_every <= end + 1e-9:
        await asyncio.sleep(p.churn_every)
        candidates = sorted(n for n in ms.nodes if n != terminal and n not in leaving)
        kind = rng.choices(("join", "leave", "crash"), weights=p.churn_mix)[0]
        if kind != "join" and not candidates:
            kind = "join"
        now = round(loop.time() - end + p.churn_s, 3)
        if kind == "join":
            k += 1
            name = f"j{k:05d}"
            seeds = rng.sample(candidates + [terminal], min(2, len(candidates) + 1))
            task = asyncio.ensure_future(join(name, round(rng.uniform(0.001, 0.999), 6), seeds))
        elif kind == "leave":
            name = rng.choice(candidates)
            leaving.add(name)
            log_.leaves += 1
            task = asyncio.ensure_future(leave(name))
        else:
            name = rng.choice(candidates)
            ms.kill(name)
            log_.crashes += 1
            task = None
        log_.timeline.append((now, kind, name))
        if task is not None:
            background.add(task)
            task.add_done_callback(background.discard)
    await asyncio.gather(*background)  # joins are instant; a leave drains its queries (queries still flow)


async def _settle(ms: MemorySwarm, settle_s: float, poll_s: float = 0.1) -> tuple[float | None, bool, bool]:
    """Simulated seconds until every live node's digest agrees (None: not within settle_s), and whether
    the agreed view holds exactly the live nodes as alive (or suspect)."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    while True:
        live = [n for n in ms.nodes.values() if n.membership.self_entry.state == "alive"]
        if len({n.membership.digest() for n in live}) == 1:
            seen = {m.name for m in live[0].membership.peers()} | {live[0].name}
            return loop.time() - t0, True, seen == {n.name for n in live}
        if loop.time() - t0 >= settle_s:
            return None, False, False
        await asyncio.sleep(poll_s)


def _churn_report(p: ChurnParams, every: dict[str, AgentNode], issued: list[str], outcomes: dict, churn: ChurnLog, run: dict) -> dict:
    answered = [o for o, _ in outcomes.values() if not isinstance(o, BaseException)]
    failed = [o for o, _ in outcomes.values() if isinstance(o, BaseException)]
    answerers: dict[str, list[str]] = {}
    for node in every.values():
        for qid in node.answered_ids:
            answerers.setdefault(qid, []).append(node.name)
    crashed = {name for _, kind, name in churn.timeline if kind == "crash"}
    delivered = {o.query_id: o.agent for o in answered}
    twice = {qid: names for qid, names in answerers.items() if len(names) > 1}
    # An agent that answered and crashed before its reply got out: the query is re-routed and answered
    # again elsewhere (a re-run of lost work, by design), not a second answer delivered.
    after_crash = [qid for qid, names in twice.items()
                   if all(n in crashed for n in _without_one(names, delivered.get(qid)))]
    latencies = sorted(s for o, s in outcomes.values() if not isinstance(o, BaseException))
    error_kinds = Counter(getattr(o, "code", type(o).__name__) for o in failed)
    return {
        "nodes": p.nodes, "clock": p.clock, "simulated_s": run["simulated_s"], "wall_s": run["wall_s"], "cpu_s": run["cpu_s"],
        "queries": len(issued), "answered": len(answered), "lost": len(issued) - len(outcomes), "errors": len(failed),
        "error_kinds": dict(error_kinds), "duplicates": len(twice),
        "duplicates_after_crash": len(after_crash), "duplicates_other": len(twice) - len(after_crash),
        "duplicate_examples": {qid: twice[qid] for qid in sorted(set(twice) - set(after_crash))[:5]},
        "joined_duplicates": sum(n.counters.duplicates for n in every.values()),
        "forced": sum(n.counters.forced for n in every.values()), "cancelled": sum(n.counters.cancelled for n in every.values()),
        "mean_hops": statistics.fmean(a.hops for a in answered) if answered else None,
        "answered_by_terminal": sum(a.agent == "zterminal" for a in answered),
        "p50_latency_s": latencies[len(latencies) // 2] if latencies else None,
        "p99_latency_s": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else None,
        "converged_s": run["converged_s"], "agreed": run["agreed"], "agreed_view_correct": run["agreed_view_correct"],
        "joins": churn.joins, "failed_joins": churn.failed_joins, "leaves": churn.leaves, "crashes": churn.crashes,
        "events": len(churn.timeline), "live_at_end": run["live_at_end"], "churn_simulated_s": run["churn_simulated_s"],
        "start_wall_s": run["start_wall_s"], "unfinished_askers": run["unfinished_askers"], "peak_rss_mb": max_rss_mb(),
        "params": asdict(p),
    }


def _without_one(names: list[str], delivered: str | None) -> list[str]:
    """The answering agents other than the one whose answer reached the client."""
    rest = list(names)
    if delivered in rest:
        rest.remove(delivered)
    return rest


def churn_part(p: ChurnParams) -> dict:
    """Part 2 on the clock `p.clock` names."""
    from swarm.logging import configure_logging

    configure_logging()  # SWARM_LOG_LEVEL (this module makes it 'error' unless set)
    return run_clocked(lambda: churn_swarm(p), p.clock)


# ================================================================ report


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def in_fresh_process(fn: Callable[..., T], *args: Any) -> T:
    """Run fn(*args) in a new interpreter, so that its max RSS is its own."""
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def format_table(header: list[str], rows: list[list[object]]) -> str:
    def cell(v: object) -> str:
        if v is None:
            return "-"
        if isinstance(v, bool):
            return "yes" if v else "NO"
        if isinstance(v, float):
            return f"{v:,.2f}" if abs(v) < 1000 else f"{v:,.0f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    body = [[cell(v) for v in row] for row in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    fmt = lambda line: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))  # noqa: E731
    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *map(fmt, body)])


def membership_table(m: dict) -> str:
    rows = [[r["members"], r["event"], r["mode"], r["rounds"], math.log2(r["members"]), r["rounds_per_log2n"], r["real_rounds"],
             r["real_views"], r["same_as_real"]] for r in m["membership"]]
    table = format_table(["members", "event", "round", "gossip rounds", "log2 N", "rounds/log2 N", "real class rounds", "real views",
                          "same per round"], rows)
    n = m["compact_members"]
    fit = "fit" if m["full_views_fit"] else "do NOT fit"
    notes = [
        f"bytes per view entry, measured on {m['cost_sample_agents']:,} full views built by merge (copies): {m['bytes_per_entry']:.0f}; "
        f"with bootstrap Members shared: {m['shared_bytes_per_entry']:.1f}",
        f"{n:,} full views ({n:,}^2 entries): {m['projected_full_views_gb']:.1f} GiB as Membership builds them: they {fit} in "
        f"{m['budget_gb']:.0f} GiB; {m['projected_shared_views_gb']:.1f} GiB with shared bootstrap entries",
        "rounds: the compact model (Membership's rules on a copy-on-write overlay); real class: the same draws on "
        "swarm.membership.Membership",
        f"compact model at {n:,} members: tracemalloc peak {m['peak_mb']:.1f} MB, process max RSS {m['compact_max_rss_mb']:.0f} MB",
    ]
    if m["real_views_largest"]:
        notes.append(f"real class at {n:,} members ({m['real_views_largest']} views): process max RSS {m['real_max_rss_mb_largest']:,.0f} MB")
    return table + "\n" + "\n".join(notes)


def churn_table(c: dict) -> str:
    sim = "simulated s" if c["clock"] == "virtual" else "s"
    rows = [
        ["nodes at start", c["nodes"]],
        ["clock", c["clock"] + (" (CPU work takes no simulated time)" if c["clock"] == "virtual" else "")],
        ["gossip / ping interval, suspect timeout (s)",
         f"{c['params']['gossip_interval_s']:g} / {c['params']['ping_interval_s']:g}, {c['params']['suspect_timeout_s']:g}"],
        [f"queries in flight, generation ({sim})", f"{c['params']['in_flight']}, {c['params']['generation_s']:g}"],
        ["churn events (join / leave / crash)", f"{c['events']} ({c['joins']} / {c['leaves']} / {c['crashes']})"],
        ["failed joins", c["failed_joins"]], ["live nodes at end", c["live_at_end"]],
        [f"{sim} (churn / whole run)", f"{c['churn_simulated_s']:.1f} / {c['simulated_s']:.1f}"],
        ["wall s (start_all / whole run)", f"{c['start_wall_s']:.1f} / {c['wall_s']:.1f}"], ["CPU s (whole run)", c["cpu_s"]],
        ["queries", c["queries"]], ["answered", c["answered"]], ["lost (no outcome)", c["lost"]],
        ["errors (QueryError)", f"{c['errors']} {c['error_kinds'] or ''}".strip()],
        ["duplicates (id answered by 2+ agents)", c["duplicates"]],
        ["  of which a crashed agent's answer never got out", c["duplicates_after_crash"]],
        ["  other duplicates", c["duplicates_other"]], ["copies joined / answered from memory", c["joined_duplicates"]],
        ["forced answers", c["forced"]], ["cancelled executions", c["cancelled"]], ["mean hops", c["mean_hops"]],
        [f"latency p50 / p99 ({sim})", f"{c['p50_latency_s'] or 0:.2f} / {c['p99_latency_s'] or 0:.2f}"],
        [f"membership agrees after churn ({sim})", c["converged_s"] if c["agreed"] else f"not within {c['params']['settle_s']:.0f}"],
        ["agreed view = live nodes", c["agreed_view_correct"]], ["peak RSS (MB)", c["peak_rss_mb"]],
    ]
    return format_table(["AgentNodes under churn", "value"], rows)


def _sizes(text: str) -> tuple[int, ...]:
    return tuple(int(s) for s in text.split(",") if s.strip())


def main(argv: list[str] | None = None) -> int:
    mp, cp = MembershipParams(), ChurnParams()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=None, help="the largest membership size (default: the largest of --sizes)")
    parser.add_argument("--sizes", type=_sizes, default=mp.sizes, help="membership sizes, comma separated (default %(default)s)")
    parser.add_argument("--real-max", type=int, default=mp.real_max, help="run the real Membership class up to this size")
    parser.add_argument("--budget-gb", type=float, default=mp.budget_gb, help="memory the full views may take")
    parser.add_argument("--nodes", type=int, default=cp.nodes, help="AgentNodes at the start of part 2")
    parser.add_argument("--churn-s", type=float, default=cp.churn_s, help="simulated seconds of churn")
    parser.add_argument("--churn-every", type=float, default=cp.churn_every, help="simulated seconds between churn events")
    parser.add_argument("--in-flight", type=int, default=cp.in_flight, help="queries kept in flight")
    parser.add_argument("--gossip-interval", type=float, default=cp.gossip_interval_s)
    parser.add_argument("--ping-interval", type=float, default=cp.ping_interval_s)
    parser.add_argument("--clock", choices=("virtual", "real"), default=cp.clock)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip", choices=("membership", "nodes"), action="append", default=[], help="leave a part out")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scale_sim.json", help="where to write the JSON summary")
    args = parser.parse_args(argv)
    sizes = args.sizes if args.members is None else tuple(sorted({*[s for s in args.sizes if s < args.members], args.members}))
    mp = MembershipParams(sizes=sizes, real_max=args.real_max, budget_gb=args.budget_gb, seed=args.seed)
    cp = ChurnParams(nodes=args.nodes, churn_s=args.churn_s, churn_every=args.churn_every, in_flight=args.in_flight,
                     gossip_interval_s=args.gossip_interval, ping_interval_s=args.ping_interval, clock=args.clock, seed=args.seed)
    from swarm.eval.summary import write_summary
    from swarm.logging import configure_logging

    configure_logging()
    began = time.perf_counter()
    data: dict[str, Any] = {}
    tables = []
    if "membership" not in args.skip:
        print(f"part 1: membership gossip, sizes {', '.join(map(str, mp.sizes))} ...", flush=True)
        m = membership_part(mp, in_fresh_process)
        tables.append(membership_table(m))
        print(tables[-1], flush=True)
        data.update(m)
    if "nodes" not in args.skip:
        print(f"\npart 2: {cp.nodes} AgentNodes, {cp.churn_s:.0f} s of churn on the {cp.clock} clock ...", flush=True)
        c = in_fresh_process(churn_part, cp)
        tables.append(churn_table(c))
        print(tables[-1], flush=True)
        data.update({k: v for k, v in c.items() if k != "params"}, churn_params=c["params"])
    data["total_wall_s"] = time.perf_counter() - began
    write_summary(args.out, ROOT, "\n\n".join(tables), data, program=__file__, args=argv)
    print(f"\nwall {data['total_wall_s']:.0f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
