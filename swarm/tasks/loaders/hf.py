"""The paper's datasets through Hugging Face `datasets` (needs the Hub once, then its cache).

In-domain: GSM8K, ARC (Challenge), MMLU, RACE, OpenbookQA, DROP, CosmosQA; out-of-domain: SQuAD,
HellaSwag, HeadQA (see swarm.tasks.domains). Offline, `load_hf` raises DatasetUnavailable naming
the dataset; set HF_DATASETS_OFFLINE=1 to fail at once instead of waiting on the network.

Splits use each dataset's own: train -> train, validation -> validation, test -> test, except
where the test labels are hidden or there is no test split; there the dataset's validation split
becomes our test, and our validation is a seeded 10% of its train split (the other 90% is train).
MMLU: train = its 'validation', validation = its 'dev', test = its 'test'.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from swarm.tasks.base import Split, TaskItem
from swarm.tasks.loaders._common import (
    SPLITS,
    canonical_number,
    check_split,
    ensure_writable_dir,
)
from swarm.tasks.loaders._errors import (
    DatasetPackageMissing,
    DatasetUnavailable,
    UnknownTask,
)
from swarm.tasks.loaders.packaged import LETTERS, multiple_choice_prompt

Converted = tuple[str, str, str, dict]  # prompt, gold, verifier, meta
_NATIVE = {"train": ("train", 0.0, 1.0), "validation": ("validation", 0.0, 1.0), "test": ("test", 0.0, 1.0)}
_CARVED = {"train": ("train", 0.0, 0.9), "validation": ("train", 0.9, 1.0), "test": ("validation", 0.0, 1.0)}


@dataclass(frozen=True)
class HFDataset:
    name: str
    path: str
    config: str | None
    convert: Callable[[dict], Converted]
    splits: dict[str, tuple[str, float, float]]
    domain: Callable[[dict], str] | None = None


def _letter_of(labels: list, key: object) -> str:
    return LETTERS[[str(x) for x in labels].index(str(key))]


def _gsm8k(row: dict) -> Converted:
    solution, final = row["answer"].rsplit("####", 1)
    return row["question"], canonical_number(final), "numeric", {"solution": solution.strip()}


def _labelled_choices(question: str, choices: dict, key: object) -> Converted:
    options = list(choices["text"])
    return multiple_choice_prompt(question, options), _letter_of(choices["label"], key), "choice", {"options": options}


def _arc(row: dict) -> Converted:
    return _labelled_choices(row["question"], row["choices"], row["answerKey"])


def _openbookqa(row: dict) -> Converted:
    return _labelled_choices(row["question_stem"], row["choices"], row["answerKey"])


def _mmlu(row: dict) -> Converted:
    options = list(row["choices"])
    return multiple_choice_prompt(row["question"], options), LETTERS[int(row["answer"])], "choice", {"subject": row["subject"], "options": options}


def _race(row: dict) -> Converted:
    question = f"{row['article'].strip()}\n\nQuestion: {row['question']}"
    options = list(row["options"])
    return multiple_choice_prompt(question, options), row["answer"].strip(), "choice", {"options": options}


def _drop(row: dict) -> Converted:
    spans = [s for s in dict.fromkeys(row["answers_spans"]["spans"]) if s.strip()]
    types = row["answers_spans"].get("types") or []
    question = f"{row['passage'].strip()}\n\nQuestion: {row['question']}"
    if types and types[0] == "number":
        try:
            return question, canonical_number(spans[0]), "numeric", {"aliases": spans[1:]}
        except ValueError:
            pass
    return question, spans[0], "exact", {"aliases": spans[1:]}


def _cosmosqa(row: dict) -> Converted:
    options = [row[f"answer{i}"] for i in range(4)]
    question = f"{row['context'].strip()}\n\nQuestion: {row['question']}"
    return multiple_choice_prompt(question, options), LETTERS[int(row["label"])], "choice", {"options": options}


def _squad(row: dict) -> Converted:
    answers = [a for a in dict.fromkeys(row["answers"]["text"]) if a.strip()]
    question = f"{row['context'].strip()}\n\nQuestion: {row['question']}"
    return question, answers[0], "exact", {"aliases": answers[1:]}


def _hellaswag(row: dict) -> Converted:
    options = list(row["endings"])
    question = f"Which ending continues the text best?\n\n{row['ctx']}"
    return multiple_choice_prompt(question, options), LETTERS[int(row["label"])], "choice", {"options": options}


def _headqa(row: dict) -> Converted:
    answers = sorted(row["answers"], key=lambda a: int(a["aid"]))
    options = [a["atext"] for a in answers]
    gold = LETTERS[[int(a["aid"]) for a in answers].index(int(row["ra"]))]
    return multiple_choice_prompt(row["qtext"], options), gold, "choice", {"options": options, "category": row.get("category", "")}


HF_DATASETS: dict[str, HFDataset] = {
    d.name: d
    for d in (
        HFDataset("gsm8k", "openai/gsm8k", "main", _gsm8k, {**_CARVED, "test": ("test", 0.0, 1.0)}),
        HFDataset("arc", "allenai/ai2_arc", "ARC-Challenge", _arc, _NATIVE),
        HFDataset("mmlu", "cais/mmlu", "all", _mmlu, {"train": ("validation", 0.0, 1.0), "validation": ("dev", 0.0, 1.0), "test": ("test", 0.0, 1.0)}, lambda r: f"mmlu/{r['subject']}"),
        HFDataset("race", "ehovy/race", "all", _race, _NATIVE),
        HFDataset("openbookqa", "allenai/openbookqa", "main", _openbookqa, _NATIVE),
        HFDataset("drop", "ucinlp/drop", None, _drop, _CARVED),
        HFDataset("cosmosqa", "allenai/cosmos_qa", None, _cosmosqa, _CARVED),
        HFDataset("squad", "rajpurkar/squad", None, _squad, _CARVED),
        HFDataset("hellaswag", "Rowan/hellaswag", None, _hellaswag, _CARVED),
        HFDataset("headqa", "dvilares/head_qa", "en", _headqa, _NATIVE),
    )
}  # fmt: skip


def _load_split(spec: HFDataset, hf_split: str, cache_dir: str | None):
    """One split of the dataset as a sequence of rows (a datasets.Dataset); tests replace this."""
    try:
        import datasets
    except ImportError:
        raise DatasetPackageMissing(f"hf/{spec.name}", "datasets", no_deps=False) from None
    try:
        return datasets.load_dataset(spec.path, spec.config, split=hf_split, cache_dir=cache_dir)
    except Exception as exc:  # noqa: BLE001 - datasets raises many types; all mean "not available here"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        config = f", config {spec.config!r}" if spec.config else ""
        raise DatasetUnavailable(
            f"hf/{spec.name}",
            f"dataset {spec.name!r} ({spec.path}{config}, split {hf_split!r}) could not be loaded through `datasets`: "
            f"{reason}. It needs the Hugging Face Hub the first time (then its cache); this machine may be offline. "
            "The offline sets (gsm8k, mmlu, freshqa, bigbench/*, rg/*) need no network.",
        ) from None


def _default_cache_dir() -> Path | None:
    try:
        import datasets.config
    except ImportError:
        return None
    return Path(datasets.config.HF_DATASETS_CACHE)


def load_hf(
    name: str,
    split: Split | None = None,
    seed: int = 0,
    limit: int | None = None,
    cache_dir: str | Path | None = None,
) -> list[TaskItem]:
    """One of the paper's datasets (HF_DATASETS) as TaskItems; domain = the dataset's name."""
    if name not in HF_DATASETS:
        raise UnknownTask("Hugging Face dataset", name, sorted(HF_DATASETS))
    check_split(split)
    spec = HF_DATASETS[name]
    hint = "pass cache_dir= a writable folder, or set HF_DATASETS_CACHE"
    cache = cache_dir if cache_dir is not None else _default_cache_dir()
    if cache is not None:
        ensure_writable_dir(cache, hint)
    wanted = [split] if split is not None else list(SPLITS)
    rows_by_split: dict[str, object] = {}
    chosen: list[tuple[Split, str, int]] = []
    for ours in wanted:
        hf_split, lo, hi = spec.splits[ours]
        if hf_split not in rows_by_split:
            rows_by_split[hf_split] = _load_split(spec, hf_split, None if cache_dir is None else str(cache_dir))
        n = len(rows_by_split[hf_split])
        order = list(range(n))
        if (lo, hi) != (0.0, 1.0):
            random.Random(f"hf/{name}|{hf_split}|{seed}").shuffle(order)
        chosen += [(ours, hf_split, i) for i in order[round(lo * n) : round(hi * n)]]
    random.Random(f"hf/{name}|order|{seed}").shuffle(chosen)
    if limit is not None:
        chosen = chosen[:limit]
    items = []
    for ours, hf_split, i in chosen:
        row = rows_by_split[hf_split][i]
        prompt, gold, verifier, meta = spec.convert(row)
        domain = spec.domain(row) if spec.domain else name
        items.append(TaskItem(f"hf/{name}/{hf_split}/{i}", prompt, gold, verifier, domain, 1, ours, meta))
    return items
