"""The task item: what a query is, what its right answer is, and how to check a response."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Split = Literal["train", "validation", "test"]
VerifierKind = Literal["numeric", "choice", "exact", "reasoning_gym"]


@dataclass(frozen=True)
class TaskItem:
    """One benchmark item.

    `prompt` is the text a user would send (the question, with its options for multiple choice);
    `gold` is the reference answer in its canonical form (a number as text, a choice letter, a
    string); `verifier` names how a response is graded; `meta` holds what a verifier needs
    beyond the gold answer (e.g. the reasoning-gym entry) and must be JSON-serialisable.
    """

    id: str
    prompt: str
    gold: str
    verifier: VerifierKind
    domain: str  # the task family, e.g. "gsm8k", "mmlu/anatomy", "rg/basic_arithmetic"
    difficulty: int = 1  # 1 (easiest) upwards; families define their own scale
    split: Split = "test"
    meta: dict = field(default_factory=dict, hash=False, compare=False)
