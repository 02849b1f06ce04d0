"""Competence sampling: the agent's own model answers every training query N times (sampled, in
batches), each answer is verified, and p(x), the share of correct answers, is stored with the
samples in a JSONL file, one query a line, appended batch by batch: an interrupted run resumes
after the last complete line, and later stages (labels, RL balance, reports) read it back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from swarm.tasks.base import TaskItem
from swarm.tasks.verify import verify
from swarm.training.generation import Prompter, generate
from swarm.training.items import from_json, to_json
from swarm.training.vllm_sampling import query_seed


@dataclass(frozen=True)
class CompetenceRecord:
    """One training query, the model's N sampled replies, and which were correct."""

    item: TaskItem
    replies: tuple[str, ...]
    correct: tuple[bool, ...]
    tokens: int = 0  # generated for the N replies (the sampling cost, kept across interruptions)

    @property
    def p(self) -> float:
        return sum(self.correct) / len(self.correct) if self.correct else 0.0

    def correct_replies(self) -> list[str]:
        return [r for r, ok in zip(self.replies, self.correct) if ok]

    def to_json(self) -> dict:
        return {"item": to_json(self.item), "replies": list(self.replies), "correct": list(self.correct), "p": self.p,
                "tokens": self.tokens}

    @classmethod
    def from_json(cls, row: dict) -> CompetenceRecord:
        return cls(from_json(row["item"]), tuple(row["replies"]), tuple(bool(c) for c in row["correct"]), int(row.get("tokens", 0)))


def read_table(path: Path) -> list[CompetenceRecord]:
    """The records of a competence file; a torn last line (an interrupted write) is dropped."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(CompetenceRecord.from_json(json.loads(line)))
        except (json.JSONDecodeError, KeyError, TypeError):
            break
    return out


def sample_competence(model, tokenizer, items: list[TaskItem], path: Path, n: int, temperature: float = 1.0,
                      max_new_tokens: int = 80, batch_size: int = 32, log=None, sampler=None,
                      seed: int = 0) -> tuple[list[CompetenceRecord], int]:
    """Records for every item (reusing those already in `path`) and the tokens generated now.

    `sampler`, when given, replaces transformers' `generate` on `model` (which may then be None):
    `sampler(prompts, n, temperature, max_new_tokens, seeds)` -> `Sampled`, e.g. a
    `swarm.training.vllm_sampling.VLLMSampler`; it gets one seed per query, from `seed` and the query's id.
    transformers' `generate` is seeded per batch, from `seed` and the batch's first query."""
    from tqdm.auto import tqdm

    done = {r.item.id: r for r in read_table(path)}
    path.parent.mkdir(parents=True, exist_ok=True)
    # rewrite the complete records (drops a torn last line), then append
    path.write_text("".join(json.dumps(r.to_json()) + "\n" for r in done.values()))
    todo = [i for i in items if i.id not in done]
    if log and done:
        log.info("competence: resuming", done=len(done), left=len(todo))
    prompter = Prompter(tokenizer)
    tokens = 0
    bar = tqdm(total=len(items), initial=len(items) - len(todo), desc="competence sampling", unit="query", mininterval=5)
    with path.open("a") as f:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            prompts = [prompter.render(i.prompt, 0.5, allow_reject=False) for i in chunk]
            if sampler is not None:
                out = sampler(prompts, n, temperature, max_new_tokens, [query_seed(seed, i.id) for i in chunk])
            else:
                import torch

                torch.manual_seed(query_seed(seed, chunk[0].id))  # a batch samples the same whether run whole or resumed
                out = generate(model, tokenizer, prompts, n=n, temperature=temperature, max_new_tokens=max_new_tokens,
                               batch_size=batch_size)
            tokens += out.tokens
            for item, replies, count in zip(chunk, out.texts, out.counts):
                rec = CompetenceRecord(item, tuple(replies), tuple(verify(item, r) for r in replies), count)
                done[item.id] = rec
                f.write(json.dumps(rec.to_json()) + "\n")
            f.flush()
            bar.update(len(chunk))
    bar.close()
    return [done[i.id] for i in items], tokens
