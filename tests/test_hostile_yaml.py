"""Hostile YAML (issue 16): every file of a corpus written here fails in bounded time and memory with
one line that names it; the worst ones also through `swarm launch`, which exits 1 without a traceback."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from swarm.errors import RecipeError, TopologyError
from swarm.topology import load_agent_spec, load_topology, parse_topology
from swarm.training.recipe import load_recipe
from swarm.quoting import short
from swarm.yamlfile import MAX_YAML_DEPTH, MAX_YAML_NODES, parse_yaml

ROOT = Path(__file__).resolve().parents[1]
AGENT = "- name: a\n  cost: 1\n  backend: {kind: replay, table: t.jsonl}\n"
GOOD = "name: t\nagents:\n" + AGENT


def _laughs(levels: int, where: str = "name") -> str:
    """Billion laughs: each anchor holds nine aliases of the one before; `where` gets the last."""
    text = "x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    text += "".join(f"x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, levels))
    return text + f"{where}: *a{levels - 1}\nagents:\n" + AGENT


def _cost(value: str) -> str:
    return f"name: t\nagents:\n- name: a\n  cost: {value}\n  backend: {{kind: replay, table: t.jsonl}}\n"


def _model(model: str) -> str:
    return f"name: t\nagents:\n- name: a\n  cost: 1\n  backend: {{kind: transformers, model: '{model}'}}\n"


# name -> (the file's bytes, a regex its error must match)
CORPUS: dict[str, tuple[bytes, str]] = {
    "alias_bomb": (_laughs(9).encode(), f"expands to more than {MAX_YAML_NODES} values"),
    "deep_flow_list": (("name: " + "[" * 3000 + "]" * 3000 + "\nagents:\n" + AGENT).encode(), "nest"),
    "deep_flow_map": (("name: " + "{a: " * 3000 + "1" + "}" * 3000 + "\nagents:\n" + AGENT).encode(), "nest"),
    "deep_block_map": ((GOOD + "defaults:\n" + "".join(" " * i + f"k{i}:\n" for i in range(1, 1000))).encode(), "nest"),
    "alias_nesting": (("x0: &a0 [1]\n" + "".join(f"x{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 500)) + GOOD).encode(),
                      f"aliases nest it more than {MAX_YAML_DEPTH} levels deep"),
    "merge_key_chain": (("x0: &a0 {k0: 1}\n" + "".join(f"x{i}: &a{i} {{<<: *a{i - 1}, k{i}: 1}}\n" for i in range(1, 3000))
                         + GOOD).encode(), "aliases nest it"),
    "recursive_alias": (("name: t\nx: &r [1, *r]\nagents:\n" + AGENT).encode(), r"alias \*r refers to a node that contains it"),
    "int_5000_digits": (_cost("9" * 5000).encode(), "a number of 5000 characters"),
    "hex_5000_digits": (_cost("0x" + "f" * 5000).encode(), "a number of 5002 characters"),
    "sexagesimal_int": (_cost(":".join(["59"] * 3000)).encode(), "a number of 8999 characters"),
    "float_5000_digits": (_cost("1." + "0" * 5000).encode(), "a number of 5002 characters"),
    "infinite_deadline": ((GOOD + "defaults: {deadline_s: .inf}\n").encode(), r"defaults\.deadline_s: input should be a finite number"),
    "nan_latency": (("name: t\nagents:\n- name: a\n  cost: 1\n  backend: {kind: replay, table: t.jsonl, latency_ms: .nan}\n").encode(),
                    r"agents\[0\]\.backend\.latency_ms: input should be a finite number"),
    "impossible_date": (("name: t\nwhen: 2024-13-45\nagents:\n" + AGENT).encode(), "cannot read '2024-13-45': month must be"),
    "lone_surrogate_escape": (('name: "\\ud800"\nagents:\n' + AGENT).encode(), "(Unicode character escape|surrogate)"),
    "invalid_utf8": (GOOD.encode() + b"x: \xff\xfe\n", r"not UTF-8 text \(byte 81\)"),
    "binary_junk": (bytes(range(256)) * 40, "not UTF-8 text"),
    "null_bytes": (b"name: t\x00\nagents: []\n", "(control|special) characters are not allowed"),
    "two_mib": (GOOD.encode() + b"# " + b"x" * (2 << 20) + b"\n", "larger than 1 MiB"),
    "tabs": (b"name: t\nagents:\n\t- name: a\n", "invalid YAML: found character .*that cannot start any token"),
    "top_level_list": (b"- 1\n- 2\n", "the top level must be a mapping, got a list"),
    "two_documents": ((GOOD + "---\nname: u\n").encode(), "another document"),
    "python_object_tag": (("name: !!python/object/apply:os.system [echo hi]\nagents:\n" + AGENT).encode(),
                          "could not determine a constructor for the tag"),
    "unknown_key": (("name: t\nfoo: 1\nagents:\n" + AGENT).encode(), "foo: unknown key 'foo'"),
    "missing_model_dir": (_model("models/foo").encode(), r"model path '.*/models/foo' does not exist"),
    "missing_model_dotslash": (_model("./models/bar").encode(), r"model path '.*/models/bar' does not exist"),
    "model_name_too_long": (_model("a" * 5000).encode(), r"model path 'a{80}' cannot be used: File name too long"),
    "megabyte_agent_name": (("name: t\ncascade: [" + "x" * 500_000 + "]\nagents:\n" + AGENT).encode(),
                            r"cascade\[0\]: unknown agent 'x+\.\.\.x+'$"),
    "too_many_values": (("name: t\nagents: [" + ",".join(["1"] * 200_000) + "]\n").encode(), f"holds more than {MAX_YAML_NODES} values$"),
    "empty": (b"", "the file is empty"),
}

# The worst of them, run through the real CLI.
THROUGH_CLI = ["alias_bomb", "deep_flow_map", "int_5000_digits", "missing_model_dir", "binary_junk"]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    (tmp_path / "models").mkdir()  # so models/foo is a local path gone missing, not a hub id
    (tmp_path / "t.jsonl").write_text('{"id": "q0", "query": "1+1?", "gold": "2", "agents": {}}\n', encoding="utf-8")
    for name, (content, _) in CORPUS.items():
        (tmp_path / f"{name}.yaml").write_bytes(content)
    return tmp_path


def _refused(path: Path, load=load_topology, error: type[Exception] = TopologyError) -> tuple[str, float]:
    started = time.perf_counter()
    with pytest.raises(error) as info:
        load(path)
    return str(info.value), time.perf_counter() - started


@pytest.mark.parametrize("name", list(CORPUS))
def test_a_hostile_file_fails_quickly_with_one_line_naming_it(name: str, corpus: Path) -> None:
    path = corpus / f"{name}.yaml"
    message, seconds = _refused(path)
    assert seconds < 5, f"{name}: {seconds:.1f} s"
    assert "\n" not in message and len(message) < 700
    assert message.startswith(f"{path}:"), message
    assert re.search(CORPUS[name][1], message), message


@pytest.mark.parametrize("name", ["alias_bomb", "deep_flow_map", "recursive_alias", "int_5000_digits", "too_many_values",
                                  "merge_key_chain"])
def test_a_hostile_file_fails_in_bounded_memory(name: str, corpus: Path) -> None:
    tracemalloc.start()
    try:
        _refused(corpus / f"{name}.yaml")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, f"{name}: {peak >> 20} MiB"


def test_agent_files_and_recipes_are_read_with_the_same_bounds(corpus: Path) -> None:
    agent = corpus / "agent.yaml"
    agent.write_text("x: &a0 [lol, lol]\n" + "".join(f"x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n"
                                                      for i in range(1, 9)), encoding="utf-8")
    message, seconds = _refused(agent, load_agent_spec)
    assert "expands to more than" in message and seconds < 5
    message, seconds = _refused(corpus / "alias_bomb.yaml", load_recipe, RecipeError)
    assert message.startswith(f"{corpus / 'alias_bomb.yaml'}:6: ") and seconds < 5


@pytest.mark.parametrize("name", list(CORPUS))
def test_swarm_launch_refuses_every_corpus_file_in_one_line(name: str, corpus: Path, capsys) -> None:
    """The whole corpus through the `swarm launch` command in-process (the worst five also run
    as a real subprocess below): exit 1 within 30 s, one line on stderr naming the file."""
    from swarm.cli import main as cli_main

    path = corpus / f"{name}.yaml"
    started = time.perf_counter()
    assert cli_main(["launch", str(path)]) == 1
    assert time.perf_counter() - started < 30
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and err.startswith(f"error: {path}:"), err


@pytest.mark.parametrize("name", THROUGH_CLI)
def test_swarm_launch_exits_1_with_one_line_naming_the_file(name: str, corpus: Path) -> None:
    path = corpus / f"{name}.yaml"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "swarm.cli", "launch", str(path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert time.perf_counter() - started < 30
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}:"), done.stderr
    assert re.search(CORPUS[name][1], lines[0]) and done.stdout == ""


def test_the_limits_sit_above_what_a_real_file_needs() -> None:
    # Nesting up to the limit, anchors, aliases and merge keys, and a 4-level laughs (6,561 values) all load.
    nested = "x: " + "[" * (MAX_YAML_DEPTH - 1) + "]" * (MAX_YAML_DEPTH - 1) + "\n"
    data, _ = parse_yaml(nested + _laughs(4, "y"), "<test>", TopologyError)
    assert len(data["y"]) == 9 and data["y"][0][0][0] == ["lol"] * 9
    with pytest.raises(TopologyError, match=f"<test>:1: nested more than {MAX_YAML_DEPTH} levels deep"):
        parse_yaml("x: " + "[" * MAX_YAML_DEPTH + "]" * MAX_YAML_DEPTH + "\n", "<test>", TopologyError)
    data, _ = parse_yaml("base: &b {kind: replay, table: t.jsonl}\none: {<<: *b, latency_ms: 5}\ntwo: *b\n", "<test>", TopologyError)
    assert data["one"] == {"kind": "replay", "table": "t.jsonl", "latency_ms": 5} and data["two"] == data["base"]
    assert parse_yaml("cost: 12345678901234567890\nrate: 1.5e-3\n", "<test>", TopologyError)[0] == {
        "cost": 12345678901234567890, "rate": 1.5e-3}


def test_a_hub_id_stays_one_unless_its_org_is_a_folder_beside_the_file(corpus: Path) -> None:
    (corpus / "hub.yaml").write_text(_model("Qwen/Qwen2.5-0.5B-Instruct"), encoding="utf-8")
    assert load_topology(corpus / "hub.yaml").agents[0].backend.model == "Qwen/Qwen2.5-0.5B-Instruct"
    (corpus / "models" / "foo").mkdir()
    assert load_topology(corpus / "missing_model_dir.yaml").agents[0].backend.model == str(corpus / "models" / "foo")


def test_short_never_builds_the_whole_repr() -> None:
    huge = [0]
    for _ in range(30):  # 10**30 leaves once expanded: a full repr would never finish
        huge = [huge] * 10
    started = time.perf_counter()
    assert len(short(huge)) <= 60 and len(short("x" * 10**7)) <= 60
    assert short(10**5000) == "<an integer of 16610 bits>" and short(12) == "12"
    message, _ = _refused({"name": huge, "cost": 10**5000, "backend": {"kind": "replay", "table": "t.jsonl"}},
                          lambda spec: load_agent_spec(spec, base_dir=ROOT))
    assert time.perf_counter() - started < 2 and len(message) < 200 and message.startswith("<agent>: name: ")


def test_a_recipe_model_no_file_can_have_is_one_line(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"name: r\nmodel: '{'a' * 5000}'\noutput_dir: out\n", encoding="utf-8")
    message, _ = _refused(recipe, load_recipe, RecipeError)
    assert message == f"{recipe}:2: model: model directory '{'a' * 80}' cannot be used: File name too long"


@pytest.mark.parametrize("where", ["", "defaults:\n  "])
def test_a_key_as_long_as_the_file_is_not_quoted_whole(where: str) -> None:
    text = f"name: x\nagents: [{{name: a, cost: 0.1, backend: {{kind: replay, table: t.jsonl}}}}]\n{where}" + "k" * 900_000 + ": 1\n"
    with pytest.raises(TopologyError) as info:
        parse_topology(text, source="long-key.yaml")
    message = str(info.value)
    assert message.startswith("long-key.yaml:") and len(message) < 700 and "\n" not in message, message[:300]
