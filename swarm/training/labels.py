"""SFT data from a competence table: for each scenario alpha, the target is the reject phrase when
p(x) < 1 - alpha, else one of the model's own correct replies (already in the answer template).
Accept and reject examples are balanced 50/50; validation examples come from queries held out of
the training examples (split by query, not by example, so validation measures generalisation)."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from swarm.prompts import REJECT_PHRASE
from swarm.training.competence import CompetenceRecord


class LabelError(ValueError):
    """The competence table cannot give the requested data (e.g. no query the model can answer)."""


@dataclass(frozen=True)
class Example:
    item_id: str
    query: str
    alpha: float
    p: float
    accept: bool
    target: str
    allow_reject: bool = True  # False: a rehearsal example under the forced-answer prompt

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SftData:
    train: list[Example]
    validation: list[Example]
    stats: dict


def should_answer(p: float, alpha: float) -> bool:
    """The SFT label: answer when p(x) >= 1 - alpha (delta = 1 - alpha), else reject."""
    return p >= 1.0 - alpha


def candidates(records: Sequence[CompetenceRecord], scenarios: Sequence[float], rng: random.Random) -> tuple[list[Example], list[Example], int]:
    """(accept examples, reject examples, skipped) over every record x scenario."""
    accept, reject, skipped = [], [], 0
    for rec in records:
        good = rec.correct_replies()
        for alpha in scenarios:
            if not should_answer(rec.p, alpha):
                reject.append(Example(rec.item.id, rec.item.prompt, alpha, rec.p, False, REJECT_PHRASE))
            elif good:
                accept.append(Example(rec.item.id, rec.item.prompt, alpha, rec.p, True, rng.choice(good)))
            else:  # alpha = 1 with p = 0: an answer is wanted but the model has no correct one to imitate
                skipped += 1
    return accept, reject, skipped


def _take(pool: list[Example], k: int, rng: random.Random) -> list[Example]:
    """k examples from the pool: without repetition while it lasts, then repeating it."""
    if k <= 0 or not pool:
        return []
    out: list[Example] = []
    while len(out) < k:
        out += rng.sample(pool, min(len(pool), k - len(out)))
    return out


def balanced(accept: list[Example], reject: list[Example], n: int, balance: bool, rng: random.Random, split: str) -> list[Example]:
    if not balance:
        return _take(accept + reject, n, rng)
    if not accept or not reject:
        missing = "accept" if not accept else "reject"
        why = ("the model answered no training query correctly at any scenario's threshold" if missing == "accept"
               else "the model's competence is at or above every scenario's threshold on every query")
        raise LabelError(f"{split}: cannot balance accept and reject 50/50: no {missing} examples ({why}); "
                         "set sft.balance: false to train on one class, or add harder/easier training queries")
    half = n // 2
    out = _take(accept, half, rng) + _take(reject, n - half, rng)
    rng.shuffle(out)
    return out


def modal_reply(record: CompetenceRecord) -> str:
    """The reply the model gives most often among its N samples (the first of those tied): at a
    low sampling temperature, an estimate of its greedy reply."""
    counts = Counter(record.replies)
    return max(record.replies, key=lambda r: counts[r])


def rehearsal(records: Sequence[CompetenceRecord], n: int, rng: random.Random) -> list[Example]:
    """n forced-answer examples (the prompt without the reject option, and the model's own modal
    reply, right or wrong): they rehearse what the model already says when it must answer, so
    training changes when it answers, not what it knows. (Rehearsing its correct replies
    instead taught tb-s: its forced accuracy rose from 0.48 to 0.59.)"""
    pool = [Example(r.item.id, r.item.prompt, 0.5, r.p, True, modal_reply(r), allow_reject=False)
            for r in records if r.replies]
    return _take(pool, n, rng)


def build_sft_data(records: Sequence[CompetenceRecord], scenarios: Sequence[float], examples: int,
                   validation_fraction: float = 0.1, balance: bool = True, seed: int = 0, forced_share: float = 0.0) -> SftData:
    """Balanced training and validation examples (validation on its own held-out queries), plus
    `forced_share` x examples rehearsal examples under the forced-answer prompt."""
    if not records:
        raise LabelError("the competence table is empty")
    rng = random.Random(f"sft-labels/{seed}")
    order = sorted(records, key=lambda r: r.item.id)
    rng.shuffle(order)
    n_val = min(len(order) - 1, max(1, math.ceil(len(order) * validation_fraction))) if len(order) > 1 else 0
    val_records, train_records = order[:n_val], order[n_val:]
    acc, rej, skipped = candidates(train_records, scenarios, rng)
    train = balanced(acc, rej, examples, balance, rng, "training split")
    forced = rehearsal(train_records, round(examples * forced_share), rng)
    train = train + forced
    rng.shuffle(train)
    vacc, vrej, vskipped = candidates(val_records, scenarios, rng)
    n_val_examples = max(2, round(examples * validation_fraction))
    try:
        validation = balanced(vacc, vrej, n_val_examples, balance, rng, "validation split")
    except LabelError:  # a small validation split may lack one class: keep what there is
        validation = balanced(vacc, vrej, n_val_examples, False, rng, "validation split")
    stats = {
        "queries": {"train": len(train_records), "validation": len(val_records)},
        "candidates": {"accept": len(acc), "reject": len(rej), "skipped": skipped + vskipped},
        "train": {"examples": len(train), "accept": sum(e.accept and e.allow_reject for e in train),
                  "reject": sum(not e.accept for e in train), "forced_answer": len(forced),
                  "unique": len({(e.item_id, e.alpha, e.allow_reject) for e in train})},
        "validation": {"examples": len(validation), "accept": sum(e.accept for e in validation)},
    }
    return SftData(train, validation, stats)
