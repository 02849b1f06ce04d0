"""`swarm outcomes convert|replay|schema`: the arguments and the commands (swarm/cli.py wires them in)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(c: argparse.ArgumentParser) -> None:
    sub = c.add_subparsers(required=True, metavar="ACTION", dest="action")
    a = sub.add_parser("convert", help="RouterBench CSV files -> one generic outcome matrix (JSON lines)")
    a.add_argument("inputs", type=Path, nargs="+", help="RouterBench CSV files (e.g. a benchmark's train and test files)")
    a.add_argument("--out", type=Path, required=True, help="the JSON-lines file to write")
    a.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    a.add_argument("--drop-repeats", action="store_true", help="leave out every row of an id or a query that appears more than "
                   "once (RouterBench's published files have some) instead of stopping at the first")
    a = sub.add_parser("replay", help="a generic outcome matrix -> a replay swarm: topology.yaml and table.jsonl in a new folder")
    a.add_argument("matrix", type=Path, help="a generic outcome matrix (JSON lines; see `swarm outcomes schema`)")
    a.add_argument("--out", type=Path, required=True, help="the folder to write (new, empty, or written by this before)")
    a.add_argument("--models", nargs="+", help="the models to make agents of (default: all)")
    a.add_argument("--name", default="outcomes", help="the topology's name")
    sub.add_parser("schema", help="print the generic outcome matrix format's JSON Schema (one line of the file)")


def run(args) -> int:
    if args.action == "schema":
        from swarm.eval.outcomes.matrix import outcomes_json_schema

        print(json.dumps(outcomes_json_schema(), indent=2))
    elif args.action == "convert":
        _convert(args)
    else:
        _replay(args)
    return 0


def _convert(args) -> None:
    from swarm.eval.outcomes.matrix import model_names, write_outcomes
    from swarm.eval.outcomes.routerbench import read_routerbench

    if args.out.exists() and not args.overwrite:
        raise ValueError(f"{args.out} exists; pass --overwrite to replace it")
    if any(args.out.resolve() == p.resolve() for p in args.inputs):
        raise ValueError(f"{args.out} is one of the inputs")
    done = read_routerbench(args.inputs, drop_repeats=args.drop_repeats)
    try:
        n = write_outcomes(done.rows, args.out)
    except OSError as exc:
        raise ValueError(f"{args.out}: cannot write ({exc.strerror or exc})") from None
    print(f"{args.out}: {n} queries, {len(model_names(done.rows))} models")
    if done.dropped:
        print(f"left out {done.dropped} rows whose id or query repeats (the first at {done.first_repeat})")


def _replay(args) -> None:
    from swarm.eval.outcomes.matrix import read_outcomes
    from swarm.eval.outcomes.replay import replay_swarm

    made = replay_swarm(read_outcomes(args.matrix), args.out, args.models, args.name)
    for agent, model in made.agents.items():
        print(f"{agent}: cost {made.cost[model]:.3f} (mean ${made.dollars[model]:.6f} a query)")
    left = f"; {made.incomplete} left out (a chosen model has no outcome on them)" if made.incomplete else ""
    print(f"{made.topology}: {made.queries} queries{left}; launch it with: swarm launch {made.topology}")
