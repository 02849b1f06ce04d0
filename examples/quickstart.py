"""Launch the replay quickstart swarm (no models) on a local Ray cluster, ask it questions, see where they went.

    python examples/quickstart.py
"""

from pathlib import Path

import swarm
from swarm.backends.replay import ReplayTable

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"

if __name__ == "__main__":
    rows = ReplayTable.load(TOPOLOGIES / "data" / "arith-replay.jsonl").rows
    s = swarm.launch(TOPOLOGIES / "quickstart-replay.yaml", address="local")
    try:
        a = s.ask("What is 17 + 25?", scenario="balance")
        print(f"{a.text!r} from {a.agent} after {a.hops} hop(s): " + ", ".join(f"{h.agent} {h.decision}" for h in a.trace))

        # One question of each difficulty, 1 (easy) to 5 (hard): who answers shifts with the scenario.
        questions = [next(r["query"] for r in rows if r["difficulty"] == d) for d in range(1, 6)]
        for scenario in ("cost_first", "balance", "performance_first"):
            outcomes = s.ask_many(questions, scenario=scenario)
            print(f"{scenario:>17}: " + " ".join(f"{o.agent:<6}" if isinstance(o, swarm.Answer) else "FAILED" for o in outcomes))

        for st in s.status():
            print(f"{st.name:<8} {st.state:<6} received {st.received:>3}  answered {st.answered:>3}  answer rate {st.answer_rate:.2f}")
    finally:
        s.shutdown()
