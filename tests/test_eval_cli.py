"""`swarm eval`: user mistakes end in one line, before any swarm starts."""

from __future__ import annotations

from swarm.cli import main as cli_main


def test_eval_command_refuses_unknown_experiments_and_existing_directories(tmp_path, capsys):
    assert cli_main(["eval", "nonsense", "--out", str(tmp_path / "new")]) == 1
    assert "unknown experiment 'nonsense'" in capsys.readouterr().err and not (tmp_path / "new").exists()
    assert cli_main(["eval", "main", "--out", str(tmp_path)]) == 1
    assert "exists" in capsys.readouterr().err
