"""`swarm demo`: launch a topology on a local Ray cluster, route questions through it, print where
each was answered and how often correctly, shut down.

The questions come from what the topology's agents were built for: the testbed's held-out items
for agents on ``testbed:`` models (graded by the verifier), the replay table's rows for replay
agents (graded by the table's gold answer).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass

from swarm.errors import QueryError
from swarm.specs import TESTBED_PREFIX
from swarm.topology import Topology


@dataclass(frozen=True)
class DemoQuestion:
    text: str
    gold: str
    correct: Callable[[str], bool]


def demo_questions(topo: Topology, n: int, seed: int = 0) -> list[DemoQuestion]:
    backends = [a.backend for a in topo.agents]
    if all(b.kind == "replay" for b in backends):
        from swarm.backends.replay import ReplayTable

        rows = ReplayTable.load(backends[0].table).rows[:n]
        return [DemoQuestion(r["query"], str(r.get("gold")), lambda text, gold=str(r.get("gold")): text.rsplit(":", 1)[-1].strip() == gold)
                for r in rows]
    if any(str(getattr(b, "model", "")).startswith(TESTBED_PREFIX) for b in backends):
        from swarm.tasks.verify import verify
        from swarm.tasks.testbed_families import held_out

        items = held_out(seed, 10)
        random.Random(seed).shuffle(items)
        return [DemoQuestion(i.prompt, str(i.gold), lambda text, item=i: verify(item, text)) for i in items[:n]]
    raise ValueError(f"swarm demo runs topologies of replay agents or testbed models; {topo.name!r} has neither "
                     "(launch it with `swarm launch` and ask it with `swarm ask`)")


def run_demo(topo: Topology, n: int, scenario: str | None = None, alpha: float | None = None) -> None:
    import swarm
    from swarm.cluster.connect import disconnect

    os.environ.setdefault("SWARM_LOG_LEVEL", "warning")  # the demo prints its own story; SWARM_LOG_LEVEL=info shows the agents'
    questions = demo_questions(topo, n)
    print(f"launching {topo.name!r}: {len(topo.agents)} agents on a local Ray cluster ...", flush=True)
    # agent_output=False: the agents' processes print nothing here (their logs stay in Ray's session folder)
    s = swarm.launch(topo, address="local", agent_output=False)
    try:
        # one at a time: a micro-batch shifts a model's numbers by ~1e-6 with its company, which can flip a
        # decision at the bar, so concurrent questions would route a little differently from run to run
        outcomes = s.ask_many([q.text for q in questions], scenario=scenario, alpha=alpha, concurrency=1)
        _print_first(questions[0], outcomes[0])
        _print_routing(s, questions, outcomes)
    finally:
        s.shutdown()
        disconnect()


def _print_first(question: DemoQuestion, outcome) -> None:
    """One question and its answer, graded: a wrong answer says so and gives the gold one."""
    print(f"\nQ: {question.text}")
    if isinstance(outcome, QueryError):
        print(f"A: (no answer: {outcome}; the gold answer is {question.gold})")
        return
    verdict = "correct" if question.correct(outcome.text) else f"wrong: the gold answer is {question.gold}"
    print(f"A: {outcome.text}   ({verdict}; by {outcome.agent}, path {' -> '.join(outcome.path)})")


def _print_routing(s, questions: list[DemoQuestion], outcomes) -> None:
    by_agent: dict[str, list[bool]] = {}
    failed = 0
    for q, out in zip(questions, outcomes, strict=True):
        if isinstance(out, QueryError):
            failed += 1
            continue
        by_agent.setdefault(out.agent, []).append(q.correct(out.text))
    print(f"\n{len(questions)} questions, {failed} failed. Where they were answered:")
    print(f"{'agent':<10}{'cost':>6}{'answered':>10}{'accuracy':>10}")
    for st in s.status():
        got = by_agent.get(st.name, [])
        acc = f"{sum(got) / len(got):.2f}" if got else "-"
        print(f"{st.name:<10}{st.cost:>6.2f}{len(got):>10}{acc:>10}")
    answered = [ok for oks in by_agent.values() for ok in oks]
    if answered:
        print(f"{'all':<10}{'':>6}{len(answered):>10}{sum(answered) / len(answered):>10.2f}")
