"""Evidence per stage, on held-out queries: the model answers each query greedily under every
scenario's prompt (the self_aware policy's prompt) and once more under the forced-answer prompt.

- self-assessment precision / recall / F1: a rejection is the positive class, and the truth is
  whether the forced answer is wrong (did it reject exactly the queries it would get wrong?);
- answer rate per scenario (it must rise with alpha), and per difficulty;
- accuracy on the queries it answers, and forced accuracy on all (training must not move it);
- the mean RL reward of its greedy replies (what RL maximises: 1 correct, 0 wrong, (1 - alpha) ** gamma
  for a clean rejection), beside that of always answering (the forced accuracy) and that of the
  oracle that rejects exactly the queries its forced answer gets wrong.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from swarm.prompts import GAMMA, is_rejection, reject_reward
from swarm.tasks.base import TaskItem
from swarm.tasks.verify import verify
from swarm.training.generation import Prompter, generate, load_model, load_tokenizer
from swarm.training.rl import reward


def prf(predicted: list[bool], truth: list[bool]) -> dict[str, float]:
    tp = sum(p and t for p, t in zip(predicted, truth))
    fp = sum(p and not t for p, t in zip(predicted, truth))
    fn = sum(t and not p for p, t in zip(predicted, truth))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


def evaluate(model_dir: Path, items: list[TaskItem], scenarios: list[float], max_new_tokens: int = 80,
             batch_size: int = 64, gamma: float = GAMMA) -> dict:
    """The stage's numbers on `items`; also the tokens generated to get them."""
    from tqdm.auto import tqdm

    tokenizer, model = load_tokenizer(model_dir), load_model(model_dir)
    prompter = Prompter(tokenizer)
    bar = tqdm(total=len(items) * (len(scenarios) + 1), desc=f"evaluating {model_dir.name}", unit="reply", mininterval=5)
    forced = generate(model, tokenizer, [prompter.render(i.prompt, 0.5, allow_reject=False) for i in items],
                      max_new_tokens=max_new_tokens, batch_size=batch_size, progress=bar)
    forced_ok = [verify(i, r[0]) for i, r in zip(items, forced.texts)]
    tokens = forced.tokens
    out: dict = {"items": len(items), "forced_accuracy": round(sum(forced_ok) / len(items), 4), "scenarios": {}}
    for alpha in scenarios:
        res = generate(model, tokenizer, [prompter.render(i.prompt, alpha) for i in items], max_new_tokens=max_new_tokens,
                       batch_size=batch_size, progress=bar)
        tokens += res.tokens
        rejected = [is_rejection(r[0]) for r in res.texts]
        correct = [not rej and verify(i, r[0]) for i, r, rej in zip(items, res.texts, rejected)]
        answered = len(items) - sum(rejected)
        rewards = [reward(i, r[0], alpha, gamma) for i, r in zip(items, res.texts)]
        oracle = [1.0 if ok else reject_reward(alpha, gamma) for ok in forced_ok]
        by_difficulty: dict[int, list[bool]] = defaultdict(list)
        for item, rej in zip(items, rejected):
            by_difficulty[item.difficulty].append(not rej)
        out["scenarios"][f"{alpha:.2f}"] = {
            "answer_rate": round(answered / len(items), 4),
            "accuracy_answered": round(sum(correct) / answered, 4) if answered else None,
            "accuracy_all": round(sum(correct) / len(items), 4),
            "self_assessment": prf(rejected, [not ok for ok in forced_ok]),
            "reward": round(sum(rewards) / len(items), 4),
            "reward_always_answer": round(sum(forced_ok) / len(items), 4),
            "reward_oracle": round(sum(oracle) / len(items), 4),
            "answer_rate_by_difficulty": {str(d): round(sum(v) / len(v), 4) for d, v in sorted(by_difficulty.items())},
        }
    bar.close()
    out["tokens_generated"] = tokens
    return out


def markdown(name: str, stages: dict[str, dict]) -> str:
    """A table per stage, for report.md and the model card."""
    lines = [f"# Self-awareness report: {name}", "",
             "Held-out queries; greedy replies. P/R/F1: rejection as the positive class, against the forced answer being wrong.", "",
             "Reward: mean RL reward of the replies (always answering earns the forced accuracy; the oracle rejects exactly the forced-wrong queries).", "",
             "| stage | alpha | answer rate | acc. answered | acc. all | P | R | F1 | forced acc. | reward (oracle) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += _rows(stages)
    ood = {stage: rep["ood"] for stage, rep in stages.items() if "ood" in rep}
    if ood:
        n = next(iter(ood.values()))["items"]
        lines += ["", f"Out of domain: {n} held-out queries of the families never trained on (same columns).", "",
                  *lines[6:8], *_rows(ood)]
    lines += ["", "The trivial policies on the same queries, under the same convention (reward / F1): always answer, "
              "always reject, and the per-agent oracle, which rejects exactly the queries its forced answer gets wrong "
              "(a probe's report, `swarm probe`, also gives the best fixed threshold on sampled p(x)).", "",
              "| stage | alpha | trained agent | always answer | always reject | per-agent oracle |", "|---|---|---|---|---|---|"]
    lines += _trivial_rows(stages)
    return "\n".join(lines) + "\n"


def _trivial_rows(stages: dict[str, dict]) -> list[str]:
    rows = []
    for stage, rep in stages.items():
        acc = rep["forced_accuracy"]
        wrong = 1.0 - acc
        reject_f1 = 2 * wrong / (1 + wrong) if wrong else 0.0
        for alpha, s in rep["scenarios"].items():
            rows.append(f"| {stage} | {alpha} | {s.get('reward', float('nan')):.3f} / {s['self_assessment']['f1']:.3f} "
                        f"| {acc:.3f} / 0.000 | {reject_reward(float(alpha)):.3f} / {reject_f1:.3f} "
                        f"| {s.get('reward_oracle', float('nan')):.3f} / {1.0 if wrong else 0.0:.3f} |")
    return rows


def _rows(stages: dict[str, dict]) -> list[str]:
    rows = []
    for stage, rep in stages.items():
        for alpha, s in rep["scenarios"].items():
            sa = s["self_assessment"]
            acc = "-" if s["accuracy_answered"] is None else f"{s['accuracy_answered']:.3f}"
            rows.append(f"| {stage} | {alpha} | {s['answer_rate']:.3f} | {acc} | {s['accuracy_all']:.3f} | {sa['precision']:.3f} "
                        f"| {sa['recall']:.3f} | {sa['f1']:.3f} | {rep['forced_accuracy']:.3f} | {s.get('reward', float('nan')):.3f} "
                        f"({s.get('reward_oracle', float('nan')):.3f}) |")
    return rows
