"""python -m swarm.testbed [--quick] [--seed N] [--out DIR]: build (or reuse) the testbed ladder."""

from __future__ import annotations

import argparse

from swarm.testbed.ladder import build_ladder


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m swarm.testbed", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the small ladder (at most 5 minutes on 2 cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="default: ~/.cache/swarm/testbed-quick or testbed-full")
    args = parser.parse_args()
    from pathlib import Path

    out = args.out or str(Path.home() / ".cache" / "swarm" / ("testbed-quick" if args.quick else "testbed-full"))
    report = build_ladder(out, quick=args.quick, seed=args.seed)
    print(f"{'cached' if report.cached else 'built'}: {report.out_dir}")
    for m in report.models:
        print(f"{m.name:6s} params {m.params:>9,d} cost {m.cost:.2f} overall {m.overall:.3f} by difficulty {m.by_difficulty}")


if __name__ == "__main__":
    main()
