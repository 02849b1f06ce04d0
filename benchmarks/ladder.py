"""The testbed ladder's accuracies: builds the quick ladder (or reads it from the cache), prints
its table and writes benchmarks/results/ladder_quick.json, the expected accuracies that
tests/test_testbed.py checks every fresh build against (CI builds it anew each run).

Run:  python benchmarks/ladder.py [--full]   (quick: about 6 minutes on 2 cores from scratch)
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def table(report) -> str:
    rows = ["| model | params | cost | d1 | d2 | d3 | d4 | overall |", "|---|---|---|---|---|---|---|---|"]
    for m in report.models:
        rows.append(f"| {m.name} | {m.params:,} | {m.cost:.2f} | "
                    + " | ".join(f"{m.by_difficulty[d]:.2f}" for d in sorted(m.by_difficulty)) + f" | {m.overall:.3f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="the full ladder (five rungs) instead of the quick one")
    args = p.parse_args(argv)

    from swarm.eval.summary import write_summary
    from swarm.testbed.models import build

    ladder = "full" if args.full else "quick"
    report = build(ladder)
    text = table(report)
    print(text)
    models = [{"name": m.name, "params": m.params, "cost": m.cost, "overall": m.overall, "by_difficulty": m.by_difficulty,
               "accuracy": m.accuracy, "train_seconds": m.train_seconds, "steps": m.steps} for m in report.models]
    out = write_summary(ROOT / "benchmarks" / "results" / f"ladder_{ladder}.json", ROOT, text,
                        {"ladder": ladder, "seed": report.seed, "settings_hash": report.settings_hash, "cached": report.cached,
                         "build_seconds": report.seconds, "eval_items": report.eval_items, "models": models},
                        program=__file__, args=argv)
    print(out.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
