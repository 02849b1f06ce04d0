"""Change a swarm while queries flow: one agent joins, one leaves gracefully, one crashes.
Every query still ends in exactly one answer or one explicit error.

    python examples/live_membership.py                       # on a private cluster, as fast as it goes
    python examples/live_membership.py --attach cascade-replay --pace 10
                                                             # on a running swarm, one change every 10 s

With --attach it changes a swarm that `swarm launch topologies/cascade-replay.yaml` started (and
leaves it running), slowly enough to watch in `swarm dashboard cascade-replay`: queries flow for
--pace seconds, then m2b joins, then m3 leaves, then m4 is killed, each --pace seconds apart.
"""

import argparse
import collections
import threading
import time
from pathlib import Path

import swarm
from swarm.backends.replay import ReplayTable

HERE = Path(__file__).resolve().parent.parent / "topologies"
NEWCOMER = {"name": "m2b", "cost": 0.4, "backend": {"kind": "replay", "table": str(HERE / "data" / "arith-replay.jsonl"), "model": "m4"}}


def change(s: swarm.Swarm, pace_s: float, began: float) -> None:
    def say(what: str) -> None:
        print(f"{time.monotonic() - began:6.1f} s  {what}", flush=True)

    time.sleep(pace_s)
    s.add_agent(NEWCOMER)
    say("m2b joined")
    time.sleep(pace_s)
    s.remove_agent("m3")
    say("m3 left (drained first)")
    time.sleep(pace_s)
    s.kill_agent("m4")
    say("m4 crashed")
    time.sleep(pace_s)


def paced_stream(s: swarm.Swarm, questions: list[str], stop: threading.Event, outcomes: list, sent: list, per_s: float) -> None:
    """Questions at about `per_s` a second until `stop`, in small batches (so the dashboard sees a steady flow)."""
    i = 0
    while not stop.is_set():
        batch = [questions[(i + k) % len(questions)] for k in range(max(1, int(per_s)))]
        i += len(batch)
        sent.append(len(batch))
        began = time.monotonic()
        outcomes.extend(s.ask_many(batch, scenario="performance_first", concurrency=4))
        stop.wait(max(0.0, 1.0 - (time.monotonic() - began)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attach", metavar="NAME", help="change this running swarm (launched from cascade-replay.yaml) instead of a private one")
    parser.add_argument("--pace", type=float, default=0.0, help="seconds between the changes (default: none; with --attach: 10)")
    parser.add_argument("--rate", type=float, default=10.0, help="with --attach: questions per second")
    parser.add_argument("--address", default="auto", help="with --attach: the Ray cluster (default: the running local one)")
    args = parser.parse_args()
    questions = ReplayTable.load(HERE / "data" / "arith-replay.jsonl").queries()
    s = swarm.attach(args.attach, args.address) if args.attach else swarm.launch(HERE / "cascade-replay.yaml", address="local")
    outcomes: list = []
    began = time.monotonic()
    try:
        if args.attach:
            stop = threading.Event()
            batches: list[int] = []
            flow = threading.Thread(target=paced_stream, args=(s, questions, stop, outcomes, batches, args.rate))
            flow.start()
            try:
                change(s, args.pace or 10.0, began)
            finally:
                stop.set()
                flow.join()
            sent = sum(batches)
        else:
            sent = len(questions) * 4
            flow = threading.Thread(target=lambda: outcomes.extend(s.ask_many(questions * 4, concurrency=32)))
            flow.start()
            time.sleep(0.5)
            change(s, args.pace, began)
            flow.join()
        kinds = collections.Counter(type(o).__name__ for o in outcomes)
        print(f"{sent} queries sent, {len(outcomes)} outcomes: {dict(kinds)}")
        print("answered by:", dict(sorted(collections.Counter(o.agent for o in outcomes if isinstance(o, swarm.Answer)).items())))
        assert len(outcomes) == sent, "a query was lost"
    finally:
        if not args.attach:
            s.shutdown()


if __name__ == "__main__":
    main()
