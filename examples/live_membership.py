"""Change a swarm while queries flow: one agent joins, one leaves gracefully, one crashes.
Every query still ends in exactly one answer or one explicit error.

    python examples/live_membership.py
"""

import collections
import threading
import time
from pathlib import Path

import swarm
from swarm.backends.replay import ReplayTable

HERE = Path(__file__).resolve().parent.parent / "topologies"

if __name__ == "__main__":
    questions = ReplayTable.load(HERE / "data" / "arith-replay.jsonl").queries() * 4
    s = swarm.launch(HERE / "cascade-replay.yaml", address="local")
    outcomes: list = []
    try:
        stream = threading.Thread(target=lambda: outcomes.extend(s.ask_many(questions, concurrency=32)))
        stream.start()
        time.sleep(0.5)
        s.add_agent({"name": "m2b", "cost": 0.4, "backend": {"kind": "replay", "table": str(HERE / "data" / "arith-replay.jsonl"), "model": "m4"}})
        print("m2b joined")
        s.remove_agent("m3")
        print("m3 left (drained first)")
        s.kill_agent("m4")
        print("m4 crashed")
        stream.join()
        kinds = collections.Counter(type(o).__name__ for o in outcomes)
        print(f"{len(questions)} queries sent, {len(outcomes)} outcomes: {dict(kinds)}")
        print("answered by:", dict(sorted(collections.Counter(o.agent for o in outcomes if isinstance(o, swarm.Answer)).items())))
        assert len(outcomes) == len(questions), "a query was lost"
    finally:
        s.shutdown()
