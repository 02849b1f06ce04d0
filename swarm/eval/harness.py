"""Run a method over task items on a real, launched swarm, and record one `Record` per query.

A method is anything with a `name` and `run(swarm, items, alpha) -> list[Record]`; `run_method`
feeds it the items not yet recorded (in chunks, appending each chunk's records to the method's
JSONL file), so an interrupted run resumes where it stopped. Answers are graded by
`swarm.tasks.verify`.

Two ways of putting a query to the swarm, both through the public API:
- `ask_swarm`: self-routing (entry at the cheapest live agent, agents decide);
- `ask_agent`: straight to one agent, which must answer (`ask_many(entry=..., must_answer=True)`),
  as a centralized router or a driver-side cascade does.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import structlog

from swarm.client import Answer
from swarm.errors import QueryError
from swarm.eval.records import Record, RecordStore, Step
from swarm.tasks.base import TaskItem
from swarm.tasks.verify import verify

log = structlog.get_logger("swarm.eval")
Outcome = Answer | QueryError


def say(msg: str) -> None:
    """An experiment's progress, for the person watching it (stderr, unbuffered)."""
    print(msg, file=sys.stderr, flush=True)


class Method(Protocol):
    name: str

    def run(self, swarm, items: Sequence[TaskItem], alpha: float) -> list[Record]: ...


def agent_costs(swarm) -> dict[str, float]:
    """The swarm's live agents and their normalised costs, cheapest first (the topology's agents,
    unless agents have since joined or left: then the live members, as they report themselves)."""
    costs = {a.name: a.cost for a in swarm.topology.agents}
    live = swarm.entries()
    if live and set(live) != set(costs):
        costs = {st.name: st.cost for st in swarm.status() if st.name in live}
    return dict(sorted(costs.items(), key=lambda kv: (kv[1], kv[0])))


def ask_swarm(swarm, items: Sequence[TaskItem], alpha: float) -> list[Outcome]:
    return swarm.ask_many([i.prompt for i in items], alpha=alpha)


def ask_agent(swarm, agent: str, texts: Sequence[str], alpha: float) -> list[Outcome]:
    return swarm.ask_many(list(texts), alpha=alpha, entry=agent, must_answer=True) if texts else []


def steps_of(outcome: Outcome) -> list[Step]:
    trace = outcome.trace
    return [Step(h.agent, h.decision, h.seconds, h.tokens_in + h.tokens_out) for h in trace]


def to_record(item: TaskItem, method: str, alpha: float, outcome: Outcome, costs: dict[str, float],
              extra_steps: Sequence[Step] = (), latency_s: float = 0.0, calls: int | None = None) -> Record:
    """The record of one query: `outcome` is the answer that counts; `extra_steps` are earlier
    agent calls the method made for it (a cascade's discarded answers, verifications)."""
    steps = [*extra_steps, *steps_of(outcome)]
    n_calls = calls if calls is not None else 1 + len(extra_steps)  # one step per earlier call
    common = {"query_id": item.id, "method": method, "alpha": alpha, "domain": item.domain, "difficulty": item.difficulty,
              "tokens": sum(s.tokens for s in steps), "model_seconds": sum(s.seconds for s in steps), "steps": steps, "calls": n_calls}
    if isinstance(outcome, QueryError):
        return Record(agent="", cost=0.0, correct=False, latency_s=latency_s, error=getattr(outcome, "code", "query_failed"), **common)
    return Record(agent=outcome.agent, cost=costs.get(outcome.agent, outcome.cost), correct=verify(item, outcome.text),
                  latency_s=latency_s + outcome.latency_s, hops=outcome.hops, answer=outcome.text, **common)


def run_method(method: Method, swarm, items: Sequence[TaskItem], alpha: float, out_dir: Path, chunk: int = 128,
               progress: Callable[[str], None] | None = None) -> list[Record]:
    """Records of `method` on `items` at `alpha`, running only the items not already in
    `out_dir/<method>@<alpha>.jsonl`; returned in the order of `items`."""
    store = RecordStore(Path(out_dir) / f"{method.name}@{alpha:g}.jsonl")
    todo = [i for i in items if not store.done(i.id)]
    began = time.monotonic()
    for start in range(0, len(todo), chunk):
        part = todo[start:start + chunk]
        store.add(method.run(swarm, part, alpha))
        if progress:
            progress(f"{method.name} alpha={alpha:g}: {start + len(part)}/{len(todo)} new ({time.monotonic() - began:.0f} s)")
    return store.get([i.id for i in items])


class SelfRouting:
    """The swarm itself: each query enters at the cheapest live agent, and agents decide."""

    def __init__(self, name: str = "swarm") -> None:
        self.name = name

    def run(self, swarm, items, alpha):
        costs = agent_costs(swarm)
        return [to_record(i, self.name, alpha, o, costs, calls=max(1, len(o.path) if isinstance(o, Answer) else len(o.trace)))
                for i, o in zip(items, ask_swarm(swarm, items, alpha), strict=True)]


class Router(Protocol):
    """A centralized router: one agent per item."""

    def choose(self, items: Sequence[TaskItem], alpha: float, agents: dict[str, float]) -> list[str]: ...


class Routed:
    """A centralized method: `router` picks one agent per query; the query goes straight to it,
    which must answer."""

    def __init__(self, name: str, router: Router) -> None:
        self.name, self.router = name, router

    def run(self, swarm, items, alpha):
        costs = agent_costs(swarm)
        choice = self.router.choose(items, alpha, costs)
        unknown = set(choice) - set(costs)
        if unknown:
            raise ValueError(f"router of {self.name} chose agents the swarm does not have: {', '.join(sorted(unknown))}")
        out: dict[str, Record] = {}
        for agent in costs:
            mine = [i for i, a in zip(items, choice, strict=True) if a == agent]
            for item, o in zip(mine, ask_agent(swarm, agent, [i.prompt for i in mine], alpha), strict=True):
                out[item.id] = to_record(item, self.name, alpha, o, costs)
        return [out[i.id] for i in items]


class Forced:
    """Every query straight to one agent, forced to answer (Smallest, Largest, and the per-agent
    correctness labels)."""

    def __init__(self, agent: str, name: str | None = None) -> None:
        self.agent, self.name = agent, name or f"forced-{agent}"

    def run(self, swarm, items, alpha):
        costs = agent_costs(swarm)
        return [to_record(i, self.name, alpha, o, costs) for i, o in zip(items, ask_agent(swarm, self.agent, [i.prompt for i in items], alpha), strict=True)]


def collect_labels(swarm, items: Sequence[TaskItem], out_dir: Path, progress=None) -> tuple[dict[str, dict[str, bool]], dict[str, list[Record]]]:
    """Every agent's forced answer to every item (resumable): the correctness labels
    {item id: {agent: correct}} and the records per agent (answers, tokens, seconds)."""
    per_agent = {a: run_method(Forced(a), swarm, items, 0.5, out_dir, progress=progress) for a in agent_costs(swarm)}
    labels: dict[str, dict[str, bool]] = {i.id: {} for i in items}
    for agent, records in per_agent.items():
        for r in records:
            labels[r.query_id][agent] = r.correct
    return labels, per_agent


def flops_per_token(topo) -> dict[str, float]:
    """FLOPs per token of each agent whose model is a testbed rung (from the ladder's report);
    empty unless every agent has one."""
    from swarm.testbed.models import TESTBED_PREFIX, build, parse_ref

    out = {}
    for a in topo.agents:
        ref = str(getattr(a.backend, "model", ""))
        if not ref.startswith(TESTBED_PREFIX):
            return {}
        ladder, rung = parse_ref(ref)
        out[a.name] = float(next(m.flops_per_token for m in build(ladder).models if m.name == rung))
    return out
