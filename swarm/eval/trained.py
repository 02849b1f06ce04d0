"""The self-aware swarm: a topology's agents swapped for the models `swarm train` wrote; and the
probe swarm: the same models, each agent deciding with the probe `swarm probe` fitted (`probe_topology`).

`trained_topology(base, DIR, alphas)` keeps the base topology (costs, backends' settings, routing,
defaults) and, for every agent but the terminal one (the most expensive, which always answers),
points the backend at `DIR/<agent>/model` under the `self_aware` policy. Each model directory
must hold the model card `training.json` (written by `swarm train` when training finishes); its
recipe must have been trained from the agent's base model and for every requested alpha
(scenario), else a `SwarmError` says which agent, which directory and what is missing.
"""

from __future__ import annotations

import json
from pathlib import Path

from swarm.errors import SwarmError
from swarm.prompts import scenario_label
from swarm.topology import Topology

def model_card(model_dir: Path, agent: str) -> dict:
    if not model_dir.is_dir():
        raise SwarmError(f"agent {agent!r}: no trained model at {model_dir} (run `swarm train` on its recipe first)")
    card = model_dir / "training.json"
    if not card.is_file():
        raise SwarmError(f"agent {agent!r}: {model_dir} has no model card training.json (training unfinished, or not written by `swarm train`)")
    try:
        return json.loads(card.read_text())
    except json.JSONDecodeError as exc:
        raise SwarmError(f"agent {agent!r}: {card} is not valid JSON ({exc})") from None


def trained_topology(base: Topology, trained_dir: Path, alphas: tuple[float, ...], name: str | None = None) -> Topology:
    """`base` with its non-terminal agents replaced by their self-aware trained models in `trained_dir`."""
    trained_dir = Path(trained_dir)
    if not trained_dir.is_dir():
        raise SwarmError(f"trained-models directory {trained_dir} does not exist")
    agents = base.ordered_agents()
    terminal = agents[-1].name
    data = base.model_dump(mode="json")
    data["name"] = name or f"{base.name}-self-aware"[:41]
    for spec in data["agents"]:
        if spec["name"] == terminal:
            continue
        model_dir = (trained_dir / spec["name"] / "model").resolve()
        card = model_card(model_dir, spec["name"])
        recipe = card.get("recipe", {})
        trained_for = [float(a) for a in recipe.get("scenarios", [])]
        missing = [a for a in alphas if not any(abs(a - t) < 1e-6 for t in trained_for)]
        if missing:
            raise SwarmError(
                f"agent {spec['name']!r}: {model_dir} was not trained for {', '.join(scenario_label(a) for a in missing)} "
                f"(its model card lists alpha {', '.join(f'{t:g}' for t in trained_for) or 'none'})")
        base_model = str(spec["backend"].get("model", ""))
        if recipe.get("model") and base_model and recipe["model"] != base_model:
            raise SwarmError(f"agent {spec['name']!r}: {model_dir} was trained from {recipe['model']}, but the topology's agent runs {base_model}")
        spec["backend"]["model"] = str(model_dir)
        spec["policy"] = {"kind": "self_aware"}
    return Topology.model_validate(data)


def probe_topology(base: Topology, probes_dir: Path, name: str | None = None) -> Topology:
    """`base`, same models, with every agent under the `probe` policy reading `probes_dir/<agent>/probe`
    (`swarm probe` writes it): the models are untouched, so every router runs on the same agents."""
    probes_dir = Path(probes_dir)
    data = base.model_dump(mode="json")
    data["name"] = name or f"{base.name}-probe"[:41]
    for spec in data["agents"]:
        path = (probes_dir / spec["name"] / "probe").resolve()
        if not (path / "probe.json").is_file():
            raise SwarmError(f"agent {spec['name']!r}: no probe at {path} (run `swarm probe` on its recipe first)")
        spec["policy"] = {"kind": "probe", "path": str(path), "require_template": True}
    return Topology.model_validate(data)
