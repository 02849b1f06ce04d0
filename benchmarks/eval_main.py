"""The evaluation's main table on the testbed, from a clean checkout.

1. builds the quick testbed ladder into the cache if it is not there (about 5 minutes on 2 cores);
2. with --train-agents, fits every agent's probe (`swarm probe recipes/tb-*.yaml`, the recommended
   configuration: the models untouched; about 1 minute each on 2 cores) and trains the self-aware
   agents of the paper (`swarm train recipes/tb-xs.yaml tb-s tb-m`, about 2-3 minutes each), both
   resumable, into results/training/, and evaluates both swarms too; with --trained DIR and/or
   --probes DIR, evaluates agents already trained or probed into DIR;
3. runs `swarm eval main` (every method at alpha 0.2 / 0.5 / 0.8 on the quickstart swarm; 320
   in-domain test items, 800 training items; about 3 minutes with the trained swarm);
4. prints the table and writes benchmarks/results/eval_main.json (committed: the summary, the
   timings, the versions and the machine) beside the experiment's own directory
   benchmarks/results/eval_main/ (not committed: raw records, plots).

Run:  python benchmarks/eval_main.py [--train-agents | --trained results/training --probes results/training] [--resume]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("SWARM_LOG_LEVEL", "warning")
ROOT = Path(__file__).resolve().parent.parent
RECIPES = [ROOT / "recipes" / f"{r}.yaml" for r in ("tb-xs", "tb-s", "tb-m")]  # the self-aware (SFT+RL) agents
PROBE_RECIPES = [*RECIPES, ROOT / "recipes" / "tb-l.yaml"]  # every agent's probe


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "eval_main")
    p.add_argument("--per-cell", type=int, default=20)
    p.add_argument("--train", type=int, default=800)
    p.add_argument("--seed", type=int, default=0)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--trained", type=Path, help="also evaluate the self-aware agents trained into this directory")
    g.add_argument("--train-agents", action="store_true", help="fit every agent's probe and train the self-aware agents "
                   "(recipes/tb-*.yaml), then evaluate both")
    p.add_argument("--probes", type=Path, help="also evaluate the probe swarm with the probes fitted into this directory")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out (default: start again)")
    args = p.parse_args(argv)

    from swarm.eval import report
    from swarm.eval.experiments import Settings, run_experiment
    from swarm.testbed.models import build

    timings = {}
    t = time.monotonic()
    build("quick")
    timings["ladder_s"] = time.monotonic() - t
    trained, probes = args.trained, args.probes
    if args.train_agents:
        t = time.monotonic()
        subprocess.run([sys.executable, "-m", "swarm.cli", "probe", *map(str, PROBE_RECIPES)], check=True, cwd=ROOT)
        timings["probes_s"] = time.monotonic() - t
        t = time.monotonic()
        subprocess.run([sys.executable, "-m", "swarm.cli", "train", *map(str, RECIPES)], check=True, cwd=ROOT)
        timings["training_s"] = time.monotonic() - t
        trained = probes = ROOT / "results" / "training"
    t = time.monotonic()
    s = Settings(topology=ROOT / "topologies" / "quickstart.yaml", per_cell=args.per_cell, train=args.train, seed=args.seed, trained=trained,
                 probes=probes)
    paths = run_experiment("main", args.out, s, overwrite=not args.resume and args.out.exists(), resume=args.resume)
    timings["eval_s"] = time.monotonic() - t
    summary = json.loads(paths[0].read_text())
    table = report.markdown_table(summary)
    print(f"\n{summary['setup']}\n")
    print(table)
    print(f"ladder {timings['ladder_s']:.0f} s" + (f", probes {timings['probes_s']:.0f} s" if "probes_s" in timings else "")
          + (f", training {timings['training_s']:.0f} s" if "training_s" in timings else "")
          + f", evaluation {timings['eval_s']:.0f} s; files: {', '.join(str(x) for x in paths)}")
    out = write_main_summary(summary, table, timings, argv)
    print(out)
    if trained is not None:
        print(write_training_summary(trained, argv))
    if probes is not None:
        print(write_probe_summary(probes, argv))
    return 0


def write_main_summary(summary: dict, table: str, timings: dict, argv: list[str] | None) -> Path:
    """benchmarks/results/eval_main.json: the table and every method's metrics per alpha, without the
    per-query records, the topology dumps, and the by-hop latency and easy/hard splits (the latency
    and behaviour experiments' summaries hold those)."""
    from swarm.eval.summary import write_summary

    small = {k: v for k, v in summary.items() if k not in ("records", "per_item", "topology")}
    if "trained" in small:
        small["trained"] = {k: v for k, v in small["trained"].items() if k != "topology"}
    small["methods"] = {method: {a: {k: ({"p50_s": v["p50_s"], "p95_s": v["p95_s"]} if k == "latency" else v)
                                     for k, v in m.items() if k != "easy_hard"}
                                 for a, m in by_alpha.items()}
                        for method, by_alpha in summary["methods"].items()}
    return write_summary(ROOT / "benchmarks" / "results" / "eval_main.json", ROOT, table,
                         {"timings_s": {k: round(v, 1) for k, v in timings.items()}, "summary": small},
                         program=__file__, args=argv)


def write_training_summary(trained: Path, argv: list[str] | None) -> Path:
    """benchmarks/results/training.json: each trained agent's report tables (report.md: held-out
    answer rate, F1, reward and forced accuracy per stage, in and out of domain) and its cost."""
    from swarm.eval.summary import write_summary

    agents = {}
    for recipe in RECIPES:
        name = recipe.stem
        card = json.loads((trained / name / "model" / "training.json").read_text())
        agents[name] = {"report_markdown": (trained / name / "report.md").read_text(), "cost": card["cost"], "data": card["data"]}
    table = "\n\n".join(f"## {name}\n\n{a['report_markdown']}" for name, a in agents.items())
    return write_summary(ROOT / "benchmarks" / "results" / "training.json", ROOT, table, {"agents": agents},
                         program=__file__, args=argv)


def write_probe_summary(probes: Path, argv: list[str] | None) -> Path:
    """benchmarks/results/probes.json: each agent's probe calibration report (report.md: AUROC and ECE
    in and out of domain, the decisions beside always-answer, always-reject and the per-agent oracle)."""
    from swarm.eval.summary import write_summary

    agents = {}
    for recipe in PROBE_RECIPES:
        d = probes / recipe.stem / "probe"
        report = json.loads((d / "calibration.json").read_text())
        agents[recipe.stem] = {"report_markdown": (d / "report.md").read_text(),
                               "sets": {k: {m: v for m, v in row.items() if m != "decisions"} for k, row in report["sets"].items()},
                               "held_out_family": report["held_out_family"], "selection": report["selection"],
                               "costs": report["costs"]}
    table = "\n\n".join(a["report_markdown"] for a in agents.values())
    return write_summary(ROOT / "benchmarks" / "results" / "probes.json", ROOT, table, {"agents": agents}, program=__file__, args=argv)


if __name__ == "__main__":
    raise SystemExit(main())
