"""Prompts and batched generation for training, rendered exactly as every backend renders them at
inference (`swarm.prompts.build_messages`, then `swarm.prompts.Renderer`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarm.prompts import Renderer, build_messages


class Prompter:
    """Renders a query and a scenario into the text the reply continues: `swarm.prompts.Renderer`
    over `build_messages`, as every backend renders it at inference."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.renderer = Renderer(tokenizer)

    @property
    def templated(self) -> bool:
        return self.renderer.templated

    def render(self, query: str, alpha: float, allow_reject: bool = True) -> str:
        return self.renderer.text(build_messages(query, alpha, allow_reject))

    def completion(self, reply: str) -> str:
        """The training target after the prompt."""
        return self.renderer.reply_prefix(reply)


def load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def load_model(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path)).eval()


@dataclass
class Sampled:
    texts: list[list[str]]  # per prompt, n replies
    counts: list[int]  # per prompt, tokens generated for its n replies

    @property
    def tokens(self) -> int:
        return sum(self.counts)


def generate(model, tokenizer, prompts: list[str], n: int = 1, temperature: float = 0.0, max_new_tokens: int = 80,
             batch_size: int = 32, progress: Any = None) -> Sampled:
    """n replies per prompt (greedy when temperature is 0), in batches of `batch_size` prompts."""
    import torch

    texts: list[list[str]] = []
    counts: list[int] = []
    eos = model.generation_config.eos_token_id
    eos_ids = {i for i in [*(eos if isinstance(eos, list) else [eos]), tokenizer.eos_token_id] if i is not None}
    sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0} if temperature > 0 else {"do_sample": False}
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, num_return_sequences=n, **sampling,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=sorted(eos_ids))
        gen = out[:, enc["input_ids"].shape[1]:]
        for i in range(len(chunk)):
            row, count = [], 0
            for j in range(n):
                ids = gen[i * n + j].tolist()
                k = next((t + 1 for t, tok in enumerate(ids) if tok in eos_ids), len(ids))
                count += k
                row.append(tokenizer.decode(ids[:k], skip_special_tokens=True).strip())
            texts.append(row)
            counts.append(count)
        if progress is not None:
            progress.update(len(chunk))
    return Sampled(texts, counts)
