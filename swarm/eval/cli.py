"""`swarm eval EXPERIMENT`: the arguments and the command (swarm/cli.py wires it in)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(c: argparse.ArgumentParser) -> None:
    from swarm.eval.experiments import ALL_EXPERIMENTS, Settings

    d = Settings()
    c.add_argument("experiment", help=f"one of: {', '.join(ALL_EXPERIMENTS)}")
    c.add_argument("--out", type=Path, required=True, help="results directory (must not exist, unless --overwrite or --resume); "
                   "swarm eval marks the directories it makes with a .swarm-results file")
    c.add_argument("--overwrite", action="store_true", help="delete an existing results directory first (only one holding "
                   ".swarm-results, or an empty one)")
    c.add_argument("--resume", action="store_true", help="continue an interrupted run in an existing results directory (only "
                   "one holding .swarm-results of the same experiment)")
    c.add_argument("--topology", type=Path, default=d.topology)
    c.add_argument("--per-cell", type=int, default=d.per_cell, help="test items per family x difficulty")
    c.add_argument("--train", type=int, default=d.train, help="training items for the learned baselines")
    c.add_argument("--alphas", type=float, nargs="+", default=[], help="default: main, behaviour and latency 0.2 0.5 0.8, ood and modularity 0.5; live: the first (default 0.5)")
    c.add_argument("--methods", nargs="+", default=[], help="run only these methods (the Oracle and Largest always run)")
    c.add_argument("--trained", type=Path, help="the self-aware swarm: the topology's agents but the terminal one replaced by the models "
                   "`swarm train` wrote into TRAINED/<agent>/model (e.g. results/training); main, ood, behaviour and latency "
                   "run it beside the untrained swarm, live and modularity run it instead")
    c.add_argument("--probes", type=Path, help="the probe swarm: the topology's own models, each agent deciding with the probe "
                   "`swarm probe` wrote into PROBES/<agent>/probe (e.g. results/training); main, ood and latency run it beside the "
                   "others, modularity instead of the self-aware swarm")
    c.add_argument("--duration", type=float, default=d.duration_s, help="live: seconds of the query stream")
    c.add_argument("--rate", type=float, default=d.rate, help="live: queries per second")
    c.add_argument("--seed", type=int, default=d.seed)
    c.add_argument("--address", help="Ray cluster address (default: start a local one)")
    c.add_argument("--outcomes", type=Path, help="replay the experiment (main, ood or modularity) on an outcome matrix instead of the testbed: a "
                   "generic JSON-lines matrix (`swarm outcomes convert` makes one from RouterBench's CSV files); computed "
                   "in-process, no swarm launched")
    c.add_argument("--models", nargs="+", default=[], help="with --outcomes: the models to route among (default: all)")
    c.add_argument("--test-size", type=int, default=1000, help="with --outcomes: test queries of the stratified split")
    c.add_argument("--cache", type=Path, help="with --outcomes: the query embeddings' disk cache (default: "
                   "$SWARM_CACHE_DIR/embeddings/all-MiniLM-L6-v2)")
    c.add_argument("--regions", type=int, default=4, help="with --outcomes: regions of the swarm's value curves (k-means of the "
                   "training queries' embeddings; 1: one curve for every query)")
    c.add_argument("--summary", type=Path, help="also write a small JSON summary here (the command, versions, machine, the table; "
                   "no per-query records), as benchmarks/results/ holds for the README's numbers")


def run(args) -> int:
    from swarm.eval.experiments import Settings, run_experiment
    from swarm.logging import configure_logging

    if args.overwrite and args.resume:
        raise ValueError("--overwrite and --resume exclude each other")
    configure_logging()
    if args.outcomes is not None:
        from swarm.eval.outcomes.experiment import OutcomeSettings
        from swarm.eval.outcomes.run import run_outcome_experiment

        o = OutcomeSettings(args.outcomes, tuple(args.models), args.test_size, tuple(args.alphas), args.seed, args.cache, tuple(args.methods),
                            args.regions)
        paths = run_outcome_experiment(args.experiment, args.out, o, args.overwrite, args.resume)
        return _finish(args, paths)
    s = Settings(args.topology, args.per_cell, args.train, tuple(args.alphas), args.seed, args.address, tuple(args.methods), args.trained,
                 args.probes, args.duration, args.rate)
    return _finish(args, run_experiment(args.experiment, args.out, s, args.overwrite, args.resume))


def _finish(args, paths) -> int:
    for p in paths:
        print(p)
    if args.summary:
        import json

        from swarm.eval.summary import write_summary

        data = json.loads(paths[0].read_text())
        small = {k: v for k, v in data.items() if k not in ("records", "timeline", "per_item", "events")}
        print(write_summary(args.summary, Path.cwd(), paths[1].read_text(), {"experiment": args.experiment, "result": small},
                            program="swarm"))
    return 0
