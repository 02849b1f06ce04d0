"""A Hugging Face model run in the agent's own process, with micro-batching.

Concurrent queries to one agent are gathered by a `MicroBatcher` into one `model.generate` call,
run in a worker thread so the agent's event loop stays responsive. Each row of a batch keeps its
own limits: it stops at its own max_tokens, at end-of-sequence, or, for a self-aware agent, as soon
as its reply starts with the reject phrase (so a rejection costs a prefill and a few tokens).
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from swarm.backends.base import Backend, Generation, GenerationRequest
from swarm.backends.batching import MicroBatcher
from swarm.backends.fit import count_parameters, ensure_fits, free_bytes
from swarm.errors import BackendError
from swarm.prompts import Renderer, TemplateRefused
from swarm.specs import HUB_ID, OFFLINE_PREFIX, TESTBED_PREFIX, TransformersBackendSpec

log = structlog.get_logger("swarm.backends.transformers")
_WARM_UP = [{"role": "user", "content": "Hello"}]


@dataclass(frozen=True)
class ModelSource:
    location: str  # a directory, or a hub id
    gguf_file: str | None = None
    hub: bool = False

    def describe(self) -> str:
        return str(Path(self.location) / self.gguf_file) if self.gguf_file else self.location


def resolve_source(model: str) -> ModelSource:
    """Where a spec's `model` points: an offline package model, a local directory or GGUF file, or a hub id."""
    if model.startswith(OFFLINE_PREFIX):
        from swarm.offline import offline_model_dir

        return ModelSource(str(offline_model_dir(model.removeprefix(OFFLINE_PREFIX))))
    if model.startswith(TESTBED_PREFIX):
        from swarm.testbed.models import testbed_model_dir

        return ModelSource(str(testbed_model_dir(model)))
    path = Path(model).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return ModelSource(str(path))
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) != 1:
            raise BackendError(f"model directory {str(path)!r} holds no model (no config.json, and not exactly one .gguf file)")
        path = ggufs[0]
    if path.is_file():
        with path.open("rb") as fh:
            if fh.read(4) != b"GGUF":
                raise BackendError(f"model file {str(path)!r} is not a GGUF file (expected a model directory or a .gguf file)")
        return ModelSource(str(path.parent), gguf_file=path.name)
    if path.exists():
        raise BackendError(f"model path {str(path)!r} is neither a directory nor a file")
    if HUB_ID.match(model) and not model.endswith(".gguf"):
        return ModelSource(model, hub=True)
    raise BackendError(f"model path {str(path)!r} does not exist")


@dataclass(frozen=True)
class _Row:
    ids: list[int]  # the prompt's tokens
    max_new: int
    logprobs: bool
    reject_phrase: str | None  # stop as soon as the reply starts with it
    on_text: Any = None  # streaming: each new piece of this row's reply, called from the worker thread


@dataclass(frozen=True)
class _AssessRow:
    ids: list[int]
    max_new: int
    judge: Any  # states -> answer?
    logprobs: bool
    on_text: Any = None  # streaming, once the judge said answer: each new piece of this row's reply (worker thread)


@dataclass(frozen=True)
class _ScoreRow:
    ids: list[int]
    target: int  # the reject phrase's first token


class TransformersBackend(Backend):
    scores_first_token = True
    reads_states = True

    def __init__(self, spec: TransformersBackendSpec, agent_name: str) -> None:
        self.spec, self.agent_name = spec, agent_name
        self.log = log.bind(agent=agent_name)
        self.model: Any = None
        self.tokenizer: Any = None
        self.context = 0  # the longest prompt accepted, in tokens
        self._renderer: Renderer | None = None
        self._eos: set[int] = set()
        self._lock = threading.Lock()  # one forward pass at a time, whichever batcher calls
        self._batcher: MicroBatcher[_Row, Generation] | None = None
        self._scorer: MicroBatcher[_ScoreRow, tuple[float, int]] | None = None
        self._assessor: MicroBatcher[_AssessRow, Generation] | None = None
        self._prefill_again = False  # this model's prefill cache cannot be continued (see _assess_rows)
        self.rows_cancelled = 0  # rows stopped part way because their query was cancelled

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self.model is not None:
            return
        started = time.monotonic()
        self.log.info("loading model", model=self.spec.model)
        with structlog.contextvars.bound_contextvars(agent=self.agent_name):  # for the offline converter's lines
            await asyncio.to_thread(self._load)
        params = sum(p.numel() for p in self.model.parameters())
        self.log.info("model loaded", seconds=round(time.monotonic() - started, 2), params=params,
                      device=str(self.model.device), dtype=str(self.model.dtype).removeprefix("torch."),
                      chat_template=self._renderer.templated, context=self.context)
        self._batcher = MicroBatcher(self._generate_batch, self.spec.max_batch, self.spec.max_wait_ms, sees_cancels=True)
        self._scorer = MicroBatcher(self._score_batch, self.spec.max_batch, self.spec.max_wait_ms)
        self._assessor = MicroBatcher(self._assess_batch, self.spec.max_batch, self.spec.max_wait_ms, sees_cancels=True)
        warm = time.monotonic()
        ids, _ = self._prompt(_WARM_UP)
        await asyncio.to_thread(self._generate_rows, [_Row(ids, 2, True, None)])
        await asyncio.to_thread(self._score_rows, [_ScoreRow(ids, ids[-1])])
        self.log.info("model warmed up", seconds=round(time.monotonic() - warm, 2))

    async def close(self) -> None:
        closed = BackendError(f"agent {self.agent_name!r}: backend closed", fatal=True)
        for batcher in (self._batcher, self._scorer, self._assessor):
            if batcher is not None:
                await batcher.close(closed)
        self._batcher = self._scorer = self._assessor = None
        device = self.model.device if self.model is not None else None
        self.model = self.tokenizer = None
        gc.collect()
        if device is not None and device.type == "cuda":
            import torch

            torch.cuda.empty_cache()

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self.spec.threads:
            torch.set_num_threads(self.spec.threads)
        device = self.spec.device if self.spec.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        if device == "cuda" and not torch.cuda.is_available():
            raise BackendError(f"agent {self.agent_name!r}: device: cuda, but this machine has no CUDA device (use device: auto or cpu)")
        dtype = getattr(torch, self.spec.dtype) if self.spec.dtype != "auto" else (torch.bfloat16 if device == "cuda" else torch.float32)
        source = resolve_source(self.spec.model)
        kwargs: dict[str, Any] = {"gguf_file": source.gguf_file} if source.gguf_file else {}
        params = None if source.hub else count_parameters(source.location, source.gguf_file)
        if params:
            ensure_fits(params, dtype.itemsize, free_bytes(device), device, source.describe())

        def load(**extra: Any) -> tuple[Any, Any]:
            tokenizer = AutoTokenizer.from_pretrained(source.location, **kwargs, **extra)
            model = AutoModelForCausalLM.from_pretrained(source.location, dtype=dtype, **kwargs, **extra)
            return tokenizer, model

        try:
            if source.hub:
                try:
                    tokenizer, model = load(local_files_only=True)  # in the local hub cache already?
                except OSError:
                    tokenizer, model = load()
            else:
                tokenizer, model = load()
        except BackendError:
            raise
        except Exception as exc:  # noqa: BLE001 - one line for the user, not a traceback
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            if source.hub:
                raise BackendError(f"model {source.location!r} is not a local path and cannot be fetched from the Hugging Face "
                                   f"hub: this machine has no hub access (or no such model); use a local directory, a .gguf "
                                   f"file or offline:<name> ({reason})") from None
            raise BackendError(f"cannot load model {source.describe()!r}: {reason}") from None
        if tokenizer.pad_token_id is None:
            if tokenizer.eos_token is None:
                raise BackendError(f"model {source.describe()!r}: its tokenizer has neither a pad nor an end-of-sequence token")
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
        eos = model.generation_config.eos_token_id
        self._eos = {i for i in [*(eos if isinstance(eos, list) else [eos]), tokenizer.eos_token_id] if i is not None}
        self._renderer = Renderer(tokenizer, use_template=self.spec.chat_template == "auto")
        self.context = self.spec.max_prompt_tokens or getattr(model.config, "max_position_embeddings", None) or 2048
        self.tokenizer, self.model = tokenizer, model.to(device).eval()

    # -- prompts ----------------------------------------------------------------------------

    def _prompt(self, messages: list[dict[str, str]]) -> tuple[list[int], str]:
        """(token ids, the text the reply continues), by the model's chat template or the plain one."""
        try:
            return self._renderer.prompt(messages)
        except TemplateRefused as exc:
            raise BackendError(f"agent {self.agent_name!r}: {exc}") from None

    def _checked_prompt(self, request: GenerationRequest) -> tuple[list[int], str]:
        if self.model is None or self._batcher is None:
            raise BackendError(f"agent {self.agent_name!r}: backend not started (or closed)")
        messages = request.messages or [{"role": "user", "content": request.query}]
        ids, text = self._prompt(messages)
        if len(ids) > self.context:
            raise BackendError(f"prompt of {len(ids)} tokens exceeds the context of {self.context}")
        return ids, text

    def _reply_start_token(self, prompt_ids: list[int], prompt_text: str, phrase: str) -> int:
        """The first token of `phrase` as the model would generate it right after the prompt."""
        if not phrase.strip():
            raise BackendError("the reject phrase is empty")
        reply = self._renderer.reply_prefix(phrase)
        joint = self._renderer.encode(prompt_text + reply)
        if joint[: len(prompt_ids)] == prompt_ids and len(joint) > len(prompt_ids):
            return joint[len(prompt_ids)]
        return self.tokenizer(reply, add_special_tokens=False).input_ids[0]

    # -- serving ----------------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> Generation:
        ids, _ = self._checked_prompt(request)
        phrase = request.reject_phrase if request.allow_reject and request.stop_at_reject else None
        assert self._batcher is not None
        return await self._batcher.submit(_Row(ids, request.max_tokens or self.spec.max_new_tokens, request.logprobs, phrase, request.on_text))

    async def reject_logprob(self, request: GenerationRequest) -> tuple[float, int]:
        ids, text = self._checked_prompt(request)
        assert self._scorer is not None
        return await self._scorer.submit(_ScoreRow(ids, self._reply_start_token(ids, text, request.reject_phrase)))

    async def assess(self, request: GenerationRequest, judge) -> Generation:
        ids, _ = self._checked_prompt(request)
        assert self._assessor is not None
        return await self._assessor.submit(_AssessRow(ids, request.max_tokens or self.spec.max_new_tokens, judge, request.logprobs,
                                                      request.on_text))

    async def _assess_batch(self, rows: list[_AssessRow], cancelled: list | None = None) -> list[Generation | BackendError]:
        return await asyncio.to_thread(self._assess_rows, rows, cancelled)

    async def _generate_batch(self, rows: list[_Row], cancelled: list | None = None) -> list[Generation]:
        return await asyncio.to_thread(self._generate_rows, rows, cancelled)

    async def _score_batch(self, rows: list[_ScoreRow]) -> list[tuple[float, int]]:
        return await asyncio.to_thread(self._score_rows, rows)

    def _generate_rows(self, rows: list[_Row], cancelled: list | None = None) -> list[Generation]:
        """One `model.generate` for the batch; a row whose query was cancelled meanwhile stops at once."""
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        from swarm.backends.hf_generation import LogprobRecorder, RowStop, RowStreamer, left_pad

        with self._lock:
            model, tokenizer = self._loaded()
            started = time.perf_counter()
            input_ids, mask = left_pad([r.ids for r in rows], tokenizer.pad_token_id, model.device)
            prompt_len = input_ids.shape[1]
            stop = RowStop(tokenizer, prompt_len, [r.max_new for r in rows], [r.reject_phrase for r in rows], cancelled)
            criteria = [stop]
            if any(r.on_text for r in rows):
                criteria.append(RowStreamer(tokenizer, prompt_len, [r.on_text for r in rows], [r.max_new for r in rows], self._eos))
            recorder = LogprobRecorder() if any(r.logprobs for r in rows) else None
            sampling: dict[str, Any] = {"do_sample": True, "temperature": self.spec.temperature} if self.spec.temperature > 0 else {"do_sample": False}
            with torch.inference_mode():
                out = model.generate(
                    input_ids=input_ids, attention_mask=mask, max_new_tokens=max(r.max_new for r in rows), **sampling,
                    pad_token_id=tokenizer.pad_token_id, eos_token_id=sorted(self._eos) or None,
                    stopping_criteria=StoppingCriteriaList(criteria),
                    logits_processor=LogitsProcessorList([recorder] if recorder else []),
                    return_dict_in_generate=True,
                )
            generated = out.sequences[:, prompt_len:]
            logprobs = recorder.logprobs(generated) if recorder else None
            seconds = time.perf_counter() - started
        results = []
        for i, row in enumerate(rows):
            tokens = generated[i].tolist()
            n, reason = self._row_end(tokens, row.max_new, stop.stopped_at[i])
            text = tokenizer.decode(tokens[:n], skip_special_tokens=True).strip()
            row_logprobs = tuple(logprobs[i][:n]) if logprobs is not None and row.logprobs else ()
            results.append(Generation(text, len(row.ids), n, seconds / len(rows), row_logprobs, reason))
        self.rows_cancelled += stop.cancelled_rows
        self.log.debug("batch generated", rows=len(rows), seconds=round(seconds, 3), tokens_out=sum(r.tokens_out for r in results),
                       cancelled=stop.cancelled_rows)
        return results

    def _assess_rows(self, rows: list[_AssessRow], cancelled: list | None = None) -> list[Generation | BackendError]:
        """One prefill for the batch; each row's judge reads its states; the rows that answer continue
        from the prefill's cache (all but its last position, which generate feeds again to get the
        first token's logits), the others generate nothing."""
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        from swarm.backends.hf_generation import LogprobRecorder, RowStop, RowStreamer
        from swarm.backends.hf_states import prefill

        with self._lock:
            model, tokenizer = self._loaded()
            started = time.perf_counter()
            states, cache, input_ids, mask = prefill(model, [r.ids for r in rows], tokenizer.pad_token_id)
            decided = time.perf_counter()
            answer, failed = [], {}
            for i, r in enumerate(rows):
                try:
                    answer.append(bool(r.judge(states[i])))
                except Exception as exc:  # noqa: BLE001 - that row's failure, not the batch's
                    failed[i] = exc if isinstance(exc, BackendError) else BackendError(f"the probe's judge failed: {exc!r}")
                    answer.append(False)
            keep = [i for i, a in enumerate(answer) if a]
            texts: dict[int, tuple[str, int, str, tuple[float, ...]]] = {}
            if keep:
                prompt_len = input_ids.shape[1]
                limits = [rows[i].max_new for i in keep]
                stop = RowStop(tokenizer, prompt_len, limits, [None] * len(keep), [cancelled[i] for i in keep] if cancelled else None)
                criteria = [stop]
                if any(rows[i].on_text for i in keep):
                    criteria.append(RowStreamer(tokenizer, prompt_len, [rows[i].on_text for i in keep], limits, self._eos))
                recorder = LogprobRecorder() if any(rows[i].logprobs for i in keep) else None
                sampling: dict[str, Any] = {"do_sample": True, "temperature": self.spec.temperature} if self.spec.temperature > 0 else {"do_sample": False}
                options = dict(attention_mask=mask[keep], max_new_tokens=max(limits), **sampling, pad_token_id=tokenizer.pad_token_id,
                               eos_token_id=sorted(self._eos) or None, stopping_criteria=StoppingCriteriaList(criteria),
                               logits_processor=LogitsProcessorList([recorder] if recorder else []), return_dict_in_generate=True)
                with torch.inference_mode():
                    try:
                        if getattr(model.generation_config, "cache_implementation", None):
                            raise ValueError("the model's generation config names its own cache_implementation")
                        if len(keep) < len(rows):
                            cache.batch_select_indices(torch.tensor(keep, device=input_ids.device))
                        cache.crop(-1)  # generate feeds the last prompt token again, for the first reply token's logits
                        options["cache"] = cache
                    except (RuntimeError, ValueError) as exc:  # a cache that cannot be cut back (sliding window, linear
                        # attention) or that generate would not take beside a cache_implementation of the model's
                        if not self._prefill_again:  # said once: it holds for every batch of this model
                            self.log.warning("cannot continue from the prefill's cache; answers are prefilled again", error=str(exc)[:200])
                        self._prefill_again = True
                    out = model.generate(input_ids=input_ids[keep], **options)
                self.rows_cancelled += stop.cancelled_rows
                generated = out.sequences[:, prompt_len:]
                logprobs = recorder.logprobs(generated) if recorder else None
                for j, i in enumerate(keep):
                    tokens = generated[j].tolist()
                    n, reason = self._row_end(tokens, rows[i].max_new, None)
                    row_logprobs = tuple(logprobs[j][:n]) if logprobs is not None and rows[i].logprobs else ()
                    texts[i] = (tokenizer.decode(tokens[:n], skip_special_tokens=True).strip(), n, reason, row_logprobs)
            ended = time.perf_counter()
        prefill_share = (decided - started) / len(rows)
        generate_share = (ended - decided) / max(len(keep), 1)
        return [failed[i] if i in failed
                else Generation(texts[i][0], len(r.ids), texts[i][1], prefill_share + generate_share, texts[i][3], texts[i][2]) if i in texts
                else Generation("", len(r.ids), 0, prefill_share, (), "reject") for i, r in enumerate(rows)]

    def _row_end(self, tokens: list[int], limit: int, rejected_at: int | None) -> tuple[int, str]:
        """(tokens generated by this row, its finish reason)."""
        if rejected_at is not None:
            return rejected_at, "reject"
        for j, token in enumerate(tokens[:limit]):
            if token in self._eos:
                return j + 1, "stop"
        n = min(len(tokens), limit)
        return n, "length" if n == limit else "stop"

    def _score_rows(self, rows: list[_ScoreRow]) -> list[tuple[float, int]]:
        import torch

        from swarm.backends.hf_generation import left_pad

        with self._lock:
            model, tokenizer = self._loaded()
            input_ids, mask = left_pad([r.ids for r in rows], tokenizer.pad_token_id, model.device)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            with torch.inference_mode():
                logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, logits_to_keep=1).logits[:, -1]
            logp = torch.log_softmax(logits.float(), dim=-1)
            return [(float(logp[i, r.target]), len(r.ids)) for i, r in enumerate(rows)]

    def _loaded(self) -> tuple[Any, Any]:
        model, tokenizer = self.model, self.tokenizer
        if model is None:
            raise BackendError(f"agent {self.agent_name!r}: backend closed", fatal=True)
        return model, tokenizer

