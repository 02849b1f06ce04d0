"""A replay swarm from an outcome matrix: one replay agent per chosen model, answering from the
matrix, in a topology and a replay table written into a folder the caller names (the table is
derived from the data, so it never belongs in the repository).

Cost: each model's mean dollar cost per query (over the queries kept) is put on the paper's
0.1-0.9 scale log-linearly, as the testbed ladder puts FLOPs per token (`swarm.costscale`): 0.1
for the cheapest, 0.9 for the dearest, 0.1 + 0.8 * (ln d - ln d_min) / (ln d_max - ln d_min) in
between. The dollars are returned beside it for reporting.

Table: per query, per model ``answer`` (the matrix's), ``correct`` (the matrix's correctness is at
least 0.5) and ``p``, the competence the replay agent decides on. By default p is the matrix's
own correctness, i.e. perfect self-knowledge (an upper bound on any learned self-assessment);
pass `p` (query id -> model -> estimate) to replay learned estimates instead.
Only queries on which every chosen model has an outcome are kept; the rest are counted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from swarm.backends.replay import write_table
from swarm.costscale import log_cost_scale
from swarm.eval.outcomes.matrix import OutcomeRow, model_names
from swarm.outdir import OutputDirError, check_output_dir

TABLE, TOPOLOGY, MARKER = "table.jsonl", "topology.yaml", ".swarm-replay"


@dataclass(frozen=True)
class ReplaySwarm:
    topology: Path
    table: Path
    agents: dict[str, str]  # agent name -> model (the table's column)
    cost: dict[str, float]  # model -> cost on the paper's scale
    dollars: dict[str, float]  # model -> mean dollars per query
    queries: int  # rows in the table
    incomplete: int  # queries left out: some chosen model had no outcome on them


def agent_name(model: str) -> str:
    """A topology agent name for a model ('meta/llama-2-70b-chat' -> 'meta_llama-2-70b-chat')."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", model).lstrip("_.-")[:63]
    return name or "model"


def mean_dollars(rows: Sequence[OutcomeRow], models: Sequence[str]) -> dict[str, float]:
    """Each model's mean cost per query, over the rows that have it."""
    out = {}
    for m in models:
        costs = [row.models[m].cost for row in rows if m in row.models]
        out[m] = sum(costs) / len(costs) if costs else 0.0
    return out


def replay_swarm(rows: Sequence[OutcomeRow], out_dir: str | Path, models: Sequence[str] | None = None, name: str = "outcomes",
                 p: Mapping[str, Mapping[str, float]] | None = None) -> ReplaySwarm:
    """Write ``out_dir/topology.yaml`` and ``out_dir/table.jsonl`` (`out_dir`: new, empty, or one this
    wrote before): a cascade, cheapest first, whose dearest agent always answers."""
    known = model_names(rows)
    models = list(models or known)
    unknown = [m for m in models if m not in known]
    if unknown:
        raise ValueError(f"model {unknown[0][:80]!r} is not in the matrix (it has: {', '.join(known)[:300]})")
    if len(set(models)) != len(models):
        raise ValueError("a model is chosen twice")
    agents = {agent_name(m): m for m in models}
    if len(agents) != len(models):
        raise ValueError("two chosen models map to the same agent name; choose one of them")
    kept = [row for row in rows if all(m in row.models for m in models)]
    if not kept:
        raise ValueError("no query has an outcome for every chosen model")
    dollars = mean_dollars(kept, models)
    cost = log_cost_scale(dollars)
    out = _fresh_dir(Path(out_dir))
    write_table([_table_row(row, models, p) for row in kept], out / TABLE)
    dearest = max(agents, key=lambda a: (cost[agents[a]], a))
    spec = {
        "name": name,
        "routing": "cascade",
        "agents": [{"name": a, "cost": cost[m], "backend": {"kind": "replay", "table": TABLE, "model": m},
                    **({"policy": {"kind": "always_answer"}} if a == dearest else {})}
                   for a, m in sorted(agents.items(), key=lambda am: (cost[am[1]], am[0]))],
    }
    header = "# A replay swarm written by swarm.eval.outcomes from an outcome matrix; costs: mean dollars per query, log-scaled to 0.1..0.9\n"
    (out / TOPOLOGY).write_text(header + yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return ReplaySwarm(out / TOPOLOGY, out / TABLE, agents, cost, dollars, len(kept), len(rows) - len(kept))


def _table_row(row: OutcomeRow, models: Sequence[str], p: Mapping[str, Mapping[str, float]] | None) -> dict:
    cells = {}
    for m in models:
        o = row.models[m]
        cells[m] = {"answer": o.answer, "correct": o.correct >= 0.5, "p": float(p[row.id][m]) if p is not None else o.correct}
    out = {"id": row.id, "query": row.query, "domain": row.domain, "agents": cells}
    if row.gold is not None:
        out["gold"] = row.gold
    return out


def _fresh_dir(path: Path) -> Path:
    path = check_output_dir(path, MARKER, "replay swarm folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        (path / MARKER).write_text("written by swarm.eval.outcomes.replay_swarm\n", encoding="utf-8")
    except OSError as exc:
        raise OutputDirError(f"replay swarm folder {path}: cannot write ({exc.strerror or exc})") from None
    return path
