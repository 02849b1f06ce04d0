"""What a probe reads: per layer, the hidden state of the prompt's last token beside the mean over
the prompt's tokens, from one prefill (measured on the testbed: the mean adds 0.02-0.04 of
out-of-fold AUROC to the last token alone, which reads only the chat template's closing tokens).

The backend and the probe's training call the same function on the same rendered prompt, so the
probe sees at inference exactly what it was fitted on. The prefill's cache is returned too: an
agent that decides to answer continues generating from it (no second prefill)."""

from __future__ import annotations

from typing import Any

import numpy as np

VERSION = 2  # what `prefill` returns; cached states of another version are computed again


def prefill(model: Any, rows: list[list[int]], pad_id: int) -> tuple[np.ndarray, Any, Any, Any]:
    """One batched forward pass over left-padded prompts: (states [rows, layers + 1, 2 * hidden]:
    each layer's last-token state then its mean over the prompt, as float32; the KV cache,
    input_ids, attention_mask)."""
    import torch

    from swarm.backends.hf_generation import left_pad

    input_ids, mask = left_pad(rows, pad_id, model.device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, output_hidden_states=True,
                    use_cache=True, logits_to_keep=1)
    weights = (mask / mask.sum(-1, keepdim=True)).unsqueeze(-1).float()
    states = torch.stack([torch.cat([h[:, -1, :].float(), (h.float() * weights).sum(1)], dim=-1) for h in out.hidden_states],
                         dim=1).cpu().numpy()
    return states, out.cache, input_ids, mask


def prompt_states(model: Any, rows: list[list[int]], pad_id: int, batch_size: int = 32, progress: Any = None) -> np.ndarray:
    """`prefill`'s states for many prompts, in batches (no cache kept)."""
    out = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        out.append(prefill(model, chunk, pad_id)[0])
        if progress is not None:
            progress.update(len(chunk))
    return np.concatenate(out) if out else np.zeros((0, 0, 0), dtype=np.float32)
