"""Per-row pieces of one batched `model.generate` call: left padding, stopping, log-probabilities.

transformers stops a row when a stopping criterion returns True for it (a bool tensor with one
entry per row) and pads that row from then on, so rows of one batch can stop at different times:
a rejection after two tokens, a short max_tokens, an end-of-sequence token.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor, StoppingCriteria

from swarm.prompts import fold


def left_pad(rows: list[list[int]], pad_id: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists -> (input_ids, attention_mask), padded on the left to the longest row."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row):] = 1
    return ids.to(device), mask.to(device)


class RowStop(StoppingCriteria):
    """Stops each row at its own token limit, or as soon as its reply starts with its reject phrase.

    `phrases[i]` is None for a row that must not stop at the phrase. A row whose reply can no longer
    become the phrase is not decoded again. `stopped_at[i]` is the number of generated tokens when
    row i stopped at its phrase (None otherwise). `cancelled[i]()` says whether row i's caller gave
    up (its query was cancelled): that row stops at once and `cancelled_rows` counts it.
    """

    def __init__(self, tokenizer, prompt_len: int, limits: list[int], phrases: list[str | None],
                 cancelled: list | None = None) -> None:
        self.tokenizer, self.prompt_len = tokenizer, prompt_len
        self.limits = limits
        self.keys = [fold(p) if p else None for p in phrases]
        self.stopped_at: list[int | None] = [None] * len(limits)
        self.cancelled = cancelled or [lambda: False] * len(limits)
        self.gave_up: set[int] = set()

    @property
    def cancelled_rows(self) -> int:
        return len(self.gave_up)

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        generated = input_ids.shape[1] - self.prompt_len
        done = torch.tensor([generated >= limit for limit in self.limits], dtype=torch.bool)
        for i, gave_up in enumerate(self.cancelled):
            if i not in self.gave_up and gave_up():
                self.gave_up.add(i)
            if i in self.gave_up:
                done[i] = True
        for i, key in enumerate(self.keys):
            if key is None:
                continue
            text = fold(self.tokenizer.decode(input_ids[i, self.prompt_len:], skip_special_tokens=True))
            text = text.rstrip("\ufffd")  # half of a multi-byte character: wait for the rest
            if text.startswith(key):
                self.stopped_at[i] = generated
                self.keys[i] = None
                done[i] = True
            elif not key.startswith(text):
                self.keys[i] = None  # cannot become the phrase any more
        return done.to(input_ids.device)


class RowStreamer(StoppingCriteria):
    """Streams each row of a micro-batch on its own (transformers' own streamers take a batch of one):
    after every decoding step, a row with a listener (`listeners[i]`, else None) is decoded up to its
    first end token and the text it gained is passed on. The text passed on is always a prefix of
    the row's final, stripped reply: half of a multi-byte character, and whitespace that may yet turn
    out to end the reply, wait for the next step. Never stops a row itself."""

    def __init__(self, tokenizer, prompt_len: int, listeners: list, limits: list[int], eos: set[int]) -> None:
        self.tokenizer, self.prompt_len, self.limits, self.eos = tokenizer, prompt_len, limits, eos
        self.listeners = listeners
        self.sent = ["" for _ in listeners]

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        for i, listener in enumerate(self.listeners):
            if listener is None:
                continue
            tokens = input_ids[i, self.prompt_len:self.prompt_len + self.limits[i]].tolist()
            end = next((j for j, t in enumerate(tokens) if t in self.eos), None)
            if end is not None:
                self.listeners[i] = None  # its reply is complete: nothing more to stream
                tokens = tokens[:end]
            text = self.tokenizer.decode(tokens, skip_special_tokens=True).rstrip("\ufffd").strip()
            if text.startswith(self.sent[i]) and len(text) > len(self.sent[i]):
                listener(text[len(self.sent[i]):])
                self.sent[i] = text
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


class LogprobRecorder(LogitsProcessor):
    """Records log P of each generated token under the distribution it was drawn from.

    A logits processor sees step t's distribution before the token is chosen and, at step t + 1,
    the chosen token: so it keeps one step's log-softmax, never the whole (steps x vocab) history.
    """

    def __init__(self) -> None:
        self.steps: list[torch.Tensor] = []
        self._last: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._last is not None:
            self.steps.append(self._last.gather(1, input_ids[:, -1:]).squeeze(1))
        self._last = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def logprobs(self, generated: torch.Tensor) -> list[list[float]]:
        """Per row, the log-probability of each token of `generated` (batch x steps)."""
        steps = list(self.steps)
        n = generated.shape[1]
        if len(steps) < n and self._last is not None:  # the last token: chosen after the last call
            steps.append(self._last.gather(1, generated[:, len(steps):len(steps) + 1]).squeeze(1))
        if not steps:
            return [[] for _ in range(generated.shape[0])]
        return torch.stack(steps[:n], dim=1).cpu().tolist()
