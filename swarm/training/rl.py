"""RL with TRL's GRPOTrainer: reward 1 for a verified correct answer, 0 for a wrong one, and
(1 - alpha) ** gamma for a clean rejection; the scenario is sampled per prompt, and prompts are
balanced 50/50 between those whose optimal action is to answer (p(x) > (1 - alpha) ** gamma)
and those whose optimal action is to reject. A reply that is neither a clean rejection (the
reject phrase and nothing else) nor an answer in the answer template counts as wrong."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

from swarm.prompts import ANSWER_RE, GAMMA, REJECT_PHRASE, fold, is_rejection, reject_reward
from swarm.tasks.base import TaskItem
from swarm.tasks.verify import grade
from swarm.training.competence import CompetenceRecord
from swarm.training.items import from_json, to_json



def is_clean_rejection(response: str) -> bool:
    """The reject phrase and nothing else (surrounding space and case ignored)."""
    return fold(response).strip() == fold(REJECT_PHRASE)


def reward(item: TaskItem, response: str, alpha: float, gamma: float = GAMMA) -> float:
    """The self-awareness reward of one reply."""
    if is_clean_rejection(response):
        return reject_reward(alpha, gamma)
    if is_rejection(response) or not ANSWER_RE.search(response or ""):
        return 0.0  # a rejection with more text, or no answer in the template: a format failure
    g = grade(item, response)
    return 1.0 if g.extracted is not None and g.correct else 0.0


def optimal_answer(p: float, alpha: float, gamma: float) -> bool:
    """Answering pays p in expectation, rejecting (1 - alpha) ** gamma."""
    return p > reject_reward(alpha, gamma)


def rl_prompts(records: Sequence[CompetenceRecord], scenarios: Sequence[float], n: int, gamma: float,
               seed: int = 0) -> list[tuple[CompetenceRecord, float]]:
    """n (query, alpha) pairs, alpha drawn per prompt, half of them with answering optimal."""
    rng = random.Random(f"rl-prompts/{seed}")
    answer, reject = [], []
    for rec in records:
        alpha = rng.choice(list(scenarios))
        (answer if optimal_answer(rec.p, alpha, gamma) else reject).append((rec, alpha))
    if not answer or not reject:  # one class empty: draw other scenarios for the other side
        for rec in records:
            for alpha in scenarios:
                (answer if optimal_answer(rec.p, alpha, gamma) else reject).append((rec, alpha))
    pools = [p for p in (answer, reject) if p]
    out = []
    for i in range(n):
        pool = pools[i % len(pools)]
        out.append(pool[rng.randrange(len(pool))])
    rng.shuffle(out)
    return out


def run_grpo(model_dir: Path, out_dir: Path, pairs: list[tuple[CompetenceRecord, float]], spec, seed: int, log=None,
             on_tokens=None) -> dict:
    """GRPO from `model_dir`; the final model saved to out_dir/'model'; resumes from its checkpoints."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    from swarm.training.generation import Prompter, load_tokenizer

    tokenizer = load_tokenizer(model_dir)
    prompter = Prompter(tokenizer)
    rows = [{"prompt": prompter.render(rec.item.prompt, alpha), "item": json.dumps(to_json(rec.item)), "alpha": alpha}
            for rec, alpha in pairs]
    dataset = Dataset.from_list(rows)
    gamma = spec.gamma
    generated = {"tokens": 0}

    def self_awareness_reward(prompts, completions, item, alpha, completion_ids=None, **_) -> list[float]:
        if completion_ids is not None:
            n = sum(len(c) for c in completion_ids)
            generated["tokens"] += n
            if on_tokens is not None:
                on_tokens(n)  # recorded as it happens: an interrupted run keeps its cost
        return [reward(from_json(json.loads(it)), text, a, gamma) for text, it, a in zip(completions, item, alpha)]

    ckpt = out_dir / "checkpoints"
    batch = spec.num_generations * spec.prompts_per_step
    config = GRPOConfig(
        output_dir=str(ckpt), use_cpu=True, report_to=[], seed=seed, max_steps=spec.max_steps,
        learning_rate=spec.learning_rate, per_device_train_batch_size=batch, gradient_accumulation_steps=1,
        num_generations=spec.num_generations, max_completion_length=spec.max_completion_length,
        temperature=spec.temperature, top_k=0, beta=spec.beta, logging_steps=1, save_strategy="steps",
        save_steps=spec.save_steps, save_total_limit=1, disable_tqdm=False, dataloader_num_workers=0,
        log_completions=False, activation_checkpointing=False,
    )
    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    trainer = GRPOTrainer(model=model, reward_funcs=self_awareness_reward, args=config, train_dataset=dataset,
                          processing_class=tokenizer)
    resume = last_checkpoint(ckpt)
    if log:
        log.info("rl: GRPO", prompts=len(rows), steps=spec.max_steps, group=spec.num_generations, resume=str(resume) if resume else None)
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    final = out_dir / "model"
    trainer.save_model(str(final))
    tokenizer.save_pretrained(str(final))
    history = [h for h in trainer.state.log_history if "reward" in h]
    return {"steps": trainer.state.global_step, "train_loss": result.training_loss, "tokens_generated": generated["tokens"],
            "reward_first": history[0]["reward"] if history else None, "reward_last": history[-1]["reward"] if history else None,
            "prompts": len(rows)}


def last_checkpoint(ckpt: Path) -> Path | None:
    from transformers.trainer_utils import get_last_checkpoint

    return Path(found) if ckpt.is_dir() and (found := get_last_checkpoint(str(ckpt))) else None
