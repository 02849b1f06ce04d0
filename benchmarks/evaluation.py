"""The README's evaluation experiments beyond the main table, one after another, each writing its
committed summary benchmarks/results/eval_<experiment>.json (the raw results stay in
benchmarks/results/<experiment>/, not committed):

- ood: the out-of-domain family (`rev`, 200 items, Balance);
- behaviour: routing and answer rate per agent per alpha;
- live: a steady stream while agents join, leave gracefully and crash (lost queries, latency);
- modularity: 4 agents -> 2 -> 2 + a new agent, no agent retrained, against stale and retrained routers;
- latency: by hop count, and what rejections cost.

Run:  python benchmarks/evaluation.py [--trained results/training] [EXPERIMENT ...]
      (about 15 minutes on 2 cores for all five, after benchmarks/eval_main.py --train-agents)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBED = ("ood", "modularity", "latency")  # the experiments that run the probe swarm
EXPERIMENTS = {"ood": ["--per-cell", "50"], "behaviour": [], "live": [], "modularity": [], "latency": []}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("experiments", nargs="*", help=f"default: all of {', '.join(EXPERIMENTS)}")
    p.add_argument("--trained", type=Path, default=Path("results/training"), help="the self-aware agents (swarm train's output)")
    p.add_argument("--probes", type=Path, default=Path("results/training"), help="the agents' probes (swarm probe's output); "
                   "ood and latency run the probe swarm beside the others, modularity runs it instead of the self-aware one")
    args = p.parse_args(argv)
    unknown = sorted(set(args.experiments) - set(EXPERIMENTS))
    if unknown:
        p.error(f"unknown experiment(s) {', '.join(unknown)} (expected: {', '.join(EXPERIMENTS)})")
    args.experiments = args.experiments or list(EXPERIMENTS)
    env = dict(os.environ, SWARM_LOG_LEVEL=os.environ.get("SWARM_LOG_LEVEL", "warning"))
    for name in args.experiments:
        print(f"== {name}", flush=True)
        subprocess.run([sys.executable, "-m", "swarm.cli", "eval", name, "--out", f"benchmarks/results/{name}", "--overwrite",
                        "--trained", str(args.trained), *(["--probes", str(args.probes)] if name in PROBED else []), *EXPERIMENTS[name], "--summary", f"benchmarks/results/eval_{name}.json"],
                       check=True, cwd=ROOT, env=env)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
