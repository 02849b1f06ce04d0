"""The self-aware swarm built from `swarm train` output: a missing model, a missing model card or
a scenario the model was not trained for is a clear error before any swarm starts."""

from __future__ import annotations

import json

import pytest

from swarm.cli import main as cli_main
from swarm.errors import SwarmError
from swarm.eval.trained import trained_topology
from swarm.topology import load_topology

BASE = load_topology("topologies/quickstart.yaml")


def _fake_training(root, agents=("tb-xs", "tb-s", "tb-m"), scenarios=(0.2, 0.5, 0.8), model="testbed:quick/{}"):
    for a in agents:
        d = root / a / "model"
        d.mkdir(parents=True)
        (d / "config.json").write_text("{}")
        (d / "training.json").write_text(json.dumps({"recipe": {"name": a, "model": model.format(a), "scenarios": list(scenarios)}}))
    return root


def test_trained_topology_swaps_every_agent_but_the_terminal_one(tmp_path):
    topo = trained_topology(BASE, _fake_training(tmp_path), (0.2, 0.5, 0.8))
    by = {a.name: a for a in topo.agents}
    for a in ("tb-xs", "tb-s", "tb-m"):
        assert by[a].backend.model == str((tmp_path / a / "model").resolve()) and by[a].policy.kind == "self_aware"
        assert by[a].cost == BASE.agent(a).cost
    assert by["tb-l"] == BASE.agent("tb-l") and topo.name == "quickstart-self-aware"


def test_missing_models_cards_and_scenarios_are_clear_errors(tmp_path):
    with pytest.raises(SwarmError, match="no trained model at .*tb-m/model"):
        trained_topology(BASE, _fake_training(tmp_path / "a", agents=("tb-xs", "tb-s")), (0.5,))
    root = _fake_training(tmp_path / "b")
    (root / "tb-s" / "model" / "training.json").unlink()
    with pytest.raises(SwarmError, match="'tb-s'.*no model card training.json"):
        trained_topology(BASE, root, (0.5,))
    with pytest.raises(SwarmError, match=r"not trained for cost_first \(alpha 0.8\)"):
        trained_topology(BASE, _fake_training(tmp_path / "c", scenarios=(0.2, 0.5)), (0.2, 0.8))
    with pytest.raises(SwarmError, match="trained from testbed:full/tb-xs"):
        trained_topology(BASE, _fake_training(tmp_path / "d", model="testbed:full/{}"), (0.5,))


def test_eval_cli_refuses_untrained_agents_before_starting_anything(tmp_path, capsys):
    root = _fake_training(tmp_path / "t", scenarios=(0.5,))
    assert cli_main(["eval", "main", "--out", str(tmp_path / "out"), "--trained", str(root)]) == 1
    assert "not trained for performance_first (alpha 0.2)" in capsys.readouterr().err and not (tmp_path / "out").exists()
