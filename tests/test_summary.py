"""The benchmark summary writer: what the committed JSON files in benchmarks/results/ hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swarm.eval.summary import MAX_BYTES, write_summary


def test_a_summary_names_its_command_versions_and_machine_with_no_machine_paths(tmp_path):
    root = tmp_path / "repo"
    out = write_summary(root / "benchmarks" / "results" / "x.json", root, "| a |\n|---|\n| 1 |",
                        {"model_dir": str(root / "results" / "training" / "tb-s"), "cache": str(Path.home() / ".cache" / "swarm")},
                        program=str(root / "benchmarks" / "x.py"), args=["--quick"])
    data = json.loads(out.read_text())
    assert data["command"] == "python benchmarks/x.py --quick"
    assert data["model_dir"] == "results/training/tb-s" and data["cache"] == "~/.cache/swarm"
    assert {"python", "swarm-selfroute", "torch", "ray"} <= set(data["versions"]) and data["machine"]["cores"] >= 1
    assert data["table_markdown"].startswith("| a |") and str(tmp_path) not in out.read_text()


def test_a_summary_with_raw_records_is_refused(tmp_path):
    with pytest.raises(ValueError, match="at most 50000"):
        write_summary(tmp_path / "x.json", tmp_path, "", {"records": ["x" * 100] * (MAX_BYTES // 100)}, program="x.py", args=[])
    assert not (tmp_path / "x.json").exists()
