"""Files a user points swarm at (issue 16): output directories swarm did not make are never written
into or deleted, and a replay table with two rows for one query is refused, naming both lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swarm.backends.replay import ReplayTable, synthesize_table
from swarm.cli import main as cli_main
from swarm.errors import RecipeError, SwarmError
from swarm.eval.experiments import RESULTS_MARKER, prepare_dir
from swarm.training import parse_recipe

SHIPPED_TABLE = Path(__file__).resolve().parent.parent / "topologies" / "data" / "arith-replay.jsonl"


# -- replay tables -------------------------------------------------------------------------------


def test_a_second_row_for_a_query_is_refused_with_the_file_and_both_lines(tmp_path):
    rows = [{"query": "What is 2 + 2?", "agents": {}}, {"query": "What is 3 + 3?", "agents": {}},
            {"query": "  what IS 2 +  2? ", "agents": {}}]  # the same query, other case and spacing
    path = tmp_path / "t.jsonl"
    path.write_text(f"{json.dumps(rows[0])}\n\n{json.dumps(rows[1])}\n\n{json.dumps(rows[2])}\n")
    with pytest.raises(ValueError) as caught:
        ReplayTable.load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:5: ") and "line 1" in message and "\n" not in message


FIRST_ROW = b'{"query": "What is 2 + 2?", "agents": {}}\n'


@pytest.mark.parametrize("content, problem", [
    (FIRST_ROW + b'{"query": "what is 2 + 2?", "agents": {}}\n', "t.jsonl:2: query 'what is 2 + 2?' already has a row at line 1"),
    (FIRST_ROW + b'{"query": 1' + b"0" * 5000 + b'}\n', "t.jsonl:2: not valid JSON"),
    (FIRST_ROW + b'\xff\xfe\n', "t.jsonl:2: not UTF-8 text"),
    (FIRST_ROW + b'{"query": "q", "agents": [1]}\n', "t.jsonl:2: 'agents' must map each model to its cell, got list"),
    (FIRST_ROW + b'{"query": "q", "agents": {"a": {"p": "x"}}}\n', "t.jsonl:2: agents['a'].p must be a number from 0 to 1"),
    (FIRST_ROW + b'{"query": "q", "agents": {"a": {"answer": 42}}}\n', "t.jsonl:2: agents['a'].answer must be text"),
], ids=["duplicate row", "huge number", "not utf-8", "agents a list", "p a string", "answer a number"])
def test_launch_refuses_a_broken_replay_table_with_the_topology_and_table_lines(tmp_path, capsys, content, problem):
    """The topology's validation reads the table: the error names the topology's line and the
    table's, in one line, before Ray starts (it used to surface as an actor that died in creation)."""
    (tmp_path / "t.jsonl").write_bytes(content)
    (tmp_path / "topo.yaml").write_text("name: broken-table\nagents:\n  - name: a\n    cost: 0.1\n"
                                        "    backend: {kind: replay, table: t.jsonl}\n")
    assert cli_main(["launch", str(tmp_path / "topo.yaml")]) != 0
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{tmp_path / 'topo.yaml'}:5: agents[0].backend.table" in err and problem in err, err


def test_the_shipped_table_has_one_row_per_query_and_is_what_the_generator_writes():
    table = ReplayTable.load(SHIPPED_TABLE)
    assert len({" ".join(q.split()).casefold() for q in table.queries()}) == len(table.rows) == 500
    assert [json.loads(line) for line in SHIPPED_TABLE.read_text().splitlines()] == synthesize_table()


def test_the_generator_never_repeats_a_query_however_many_rows():
    rows = synthesize_table(n=3000)  # the 2-digit x 1-digit family alone has 89 * 7 = 623 queries
    assert len({r["query"] for r in rows}) == 3000


# -- swarm eval --out ----------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--overwrite", "--resume"])
def test_eval_refuses_the_current_home_and_root_directories(tmp_path, monkeypatch, capsys, flag):
    home, work = tmp_path / "home", tmp_path / "home" / "work"
    work.mkdir(parents=True)
    (work / "precious.txt").write_text("keep me")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    for out, problem in ((".", "is the current directory"), (str(home), "is the home directory"),
                         ("/", "is the filesystem root"), ("..", "is the home directory"), (str(tmp_path), "above the home directory")):
        assert cli_main(["eval", "main", "--out", out, flag]) == 1
        err = capsys.readouterr().err
        assert problem in err and err.count("\n") == 1 and "Traceback" not in err
    assert (work / "precious.txt").read_text() == "keep me" and not (work / RESULTS_MARKER).exists()


@pytest.mark.parametrize("flag", ["--overwrite", "--resume"])
def test_eval_refuses_a_full_directory_it_did_not_make(tmp_path, capsys, flag):
    theirs = tmp_path / "theirs"
    (theirs / "sub").mkdir(parents=True)
    (theirs / "sub" / "thesis.tex").write_text("years of work")
    assert cli_main(["eval", "main", "--out", str(theirs), flag]) == 1
    err = capsys.readouterr().err
    assert str(theirs) in err and RESULTS_MARKER in err and err.count("\n") == 1
    assert (theirs / "sub" / "thesis.tex").read_text() == "years of work" and not (theirs / RESULTS_MARKER).exists()


def test_eval_refuses_a_file_as_its_results_directory(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert cli_main(["eval", "main", "--out", str(tmp_path / "f"), "--overwrite"]) == 1
    assert "is not a directory" in capsys.readouterr().err and (tmp_path / "f").read_text() == "x"


def _unusable(tmp_path: Path) -> list[tuple[str, str]]:
    """Output paths no directory can have: inside a symlink loop, and a name too long."""
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    return [(str(tmp_path / "loop" / "out"), "cannot be used"), (str(tmp_path / ("n" * 5000)), "cannot be used")]


def test_eval_refuses_an_output_path_no_directory_can_have_in_one_line(tmp_path, capsys):
    for out, problem in _unusable(tmp_path):
        assert cli_main(["eval", "main", "--out", out, "--overwrite"]) == 1
        err = capsys.readouterr().err
        assert problem in err and err.count("\n") == 1 and len(err) < 400, err[:300]


def test_a_recipe_refuses_an_output_path_no_directory_can_have(tmp_path):
    for out, problem in _unusable(tmp_path):
        with pytest.raises(RecipeError, match=f"r.yaml:3: output_dir: .*{problem}"):
            parse_recipe(recipe_text(out), source="r.yaml")


def test_a_results_directory_eval_made_is_overwritten_resumed_or_refused_as_before(tmp_path):
    out = tmp_path / "results"
    prepare_dir(out, "main", overwrite=False, resume=False)
    assert json.loads((out / RESULTS_MARKER).read_text()) == {"experiment": "main"}
    (out / "records").mkdir()
    (out / "records" / "done.jsonl").write_text("{}\n")
    with pytest.raises(SwarmError, match="exists"):
        prepare_dir(out, "main", overwrite=False, resume=False)
    prepare_dir(out, "main", overwrite=False, resume=True)  # resume keeps what is done
    assert (out / "records" / "done.jsonl").exists()
    with pytest.raises(SwarmError, match="experiment 'main', not 'ood'"):
        prepare_dir(out, "ood", overwrite=False, resume=True)
    prepare_dir(out, "ood", overwrite=True, resume=False)  # overwrite starts again, for any experiment
    assert sorted(p.name for p in out.iterdir()) == [RESULTS_MARKER]
    assert json.loads((out / RESULTS_MARKER).read_text()) == {"experiment": "ood"}


def test_an_empty_existing_directory_is_taken_and_marked(tmp_path):
    (tmp_path / "empty").mkdir()
    prepare_dir(tmp_path / "empty", "main", overwrite=True, resume=False)
    assert [p.name for p in (tmp_path / "empty").iterdir()] == [RESULTS_MARKER]


def test_overwrite_through_a_link_empties_the_directory_it_points_to(tmp_path):
    real = tmp_path / "real"
    prepare_dir(real, "main", overwrite=False, resume=False)
    (real / "old.json").write_text("{}")
    (tmp_path / "link").symlink_to(real)
    prepare_dir(tmp_path / "link", "main", overwrite=True, resume=False)
    assert (tmp_path / "link").is_symlink() and sorted(p.name for p in real.iterdir()) == [RESULTS_MARKER]


# -- training recipes' output_dir ----------------------------------------------------------------


def recipe_text(output_dir: str) -> str:
    return f"name: tb\nmodel: testbed:quick/tb-xs\noutput_dir: {output_dir}\n"


def test_a_recipe_refuses_an_output_dir_holding_files_training_did_not_write(tmp_path):
    theirs = tmp_path / "theirs"
    (theirs / "model").mkdir(parents=True)
    (theirs / "model" / "weights.bin").write_text("someone else's")
    with pytest.raises(RecipeError) as caught:
        parse_recipe(recipe_text(str(theirs)), source="r.yaml")
    assert str(caught.value).startswith("r.yaml:3: output_dir: ") and str(theirs) in str(caught.value)
    assert "recipe.json" in str(caught.value) and (theirs / "model" / "weights.bin").exists()


@pytest.mark.parametrize("output_dir, problem", [("/", "filesystem root"), ("'~'", "home directory"), (".", "current directory")])
def test_a_recipe_refuses_the_root_home_and_current_directories(tmp_path, monkeypatch, output_dir, problem):
    (tmp_path / "home").mkdir()
    (tmp_path / "work").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path / "work")
    with pytest.raises(RecipeError, match=f"r.yaml:3: output_dir: .*is the {problem}"):
        parse_recipe(recipe_text(output_dir), source="r.yaml")


def test_a_recipe_takes_a_new_or_empty_dir_or_one_a_run_made(tmp_path):
    assert parse_recipe(recipe_text(str(tmp_path / "new"))).output_dir == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    assert parse_recipe(recipe_text(str(tmp_path / "empty"))).output_dir == tmp_path / "empty"
    ran = tmp_path / "ran"
    (ran / "model").mkdir(parents=True)
    (ran / "recipe.json").write_text("{}")
    assert parse_recipe(recipe_text(str(ran))).output_dir == ran


def test_training_checks_the_output_dir_again_before_it_writes_or_deletes(tmp_path):
    from swarm.training import train

    out = tmp_path / "out"
    recipe = parse_recipe(recipe_text(str(out)))  # new when the recipe was read ...
    (out / "model").mkdir(parents=True)  # ... someone else's by the time training starts
    (out / "model" / "weights.bin").write_text("someone else's")
    with pytest.raises(RecipeError, match="tb: output_dir: .*has no recipe.json"):
        train(recipe)
    assert (out / "model" / "weights.bin").read_text() == "someone else's" and not (out / "recipe.json").exists()
