"""`swarm eval NAME --outcomes PATH`: the experiments on a replayed outcome matrix, by name (main and ood
in `experiment`, modularity in `modularity`, which builds on `experiment`)."""

from __future__ import annotations

from pathlib import Path

from swarm.eval.outcomes.experiment import DIAGNOSTICS, ROUTERS, SWARMS, OutcomeSettings, choose_models, run_main, run_ood
from swarm.eval.outcomes.matrix import read_outcomes
from swarm.eval.outcomes.modularity import run_modularity


OUTCOME_EXPERIMENTS = {"main": run_main, "ood": run_ood, "modularity": run_modularity}


def run_outcome_experiment(name: str, out: Path, s: OutcomeSettings, overwrite: bool = False, resume: bool = False) -> list[Path]:
    """`swarm eval NAME --outcomes PATH`: check the request, make the results directory, run. (Nothing
    is kept per query between runs: --resume computes everything again into the same directory.)"""
    from swarm.eval.experiments import prepare_dir
    from swarm.eval.harness import say

    if name not in OUTCOME_EXPERIMENTS:
        raise ValueError(f"experiment {name!r} does not run on an outcome matrix (with --outcomes: {', '.join(OUTCOME_EXPERIMENTS)})")
    models, rows = choose_models(read_outcomes(s.outcomes), s.models)
    if name == "modularity" and len(models) < 4:
        raise ValueError(f"modularity needs at least 4 models (the cheapest and the dearest stay, one leaves, one joins), got {len(models)}")
    if not 0 < s.test_size < len(rows):
        raise ValueError(f"--test-size must be 1 to {len(rows) - 1} (the matrix has {len(rows)} queries with every chosen model), "
                         f"not {s.test_size}")
    if not 1 <= s.regions <= 64:
        raise ValueError(f"--regions must be 1 to 64, not {s.regions}")
    known = [*SWARMS, *DIAGNOSTICS, "oracle", "smallest", "largest", "random", "best-model", *ROUTERS, *(f"only:{m}" for m in models)]
    unknown = [m for m in s.methods if m not in known]
    if unknown:
        raise ValueError(f"--methods: {unknown[0][:60]!r} is not a method here (the methods: {', '.join(known)[:400]})")
    prepare_dir(out, name, overwrite, resume)
    return OUTCOME_EXPERIMENTS[name](out, s, models, rows, say)
