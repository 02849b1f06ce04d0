"""The training recipe: a YAML file validated by a strict pydantic schema.

Every failure raises `RecipeError` ("file:line: path: problem"), before any model is loaded:
unknown keys, alpha outside [0, 1], N < 1, a model directory with no tokenizer, out-of-domain
task families, a task set with no items (checked when the tasks are built), a batch that does
not fit in memory (`check_memory`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from swarm.errors import RecipeError
from swarm.prompts import GAMMA, SCENARIOS
from swarm.specs import locate_path
from swarm.yamlfile import parse_yaml, read_text, validate

_STRICT = ConfigDict(extra="forbid", frozen=True)
RUN_MARKER = "recipe.json"  # written into output_dir before any stage: the mark of a directory training made


class TasksSpec(BaseModel):
    """Where training and held-out queries come from.

    testbed: the procedural families of swarm.testbed (in-domain ones only); training queries
    from `training_stream`, held-out ones from `held_out` (never a training question).
    loader: datasets of swarm.tasks.loaders by name; `train_split` for training, `eval_split` held out.
    """

    model_config = _STRICT
    source: Literal["testbed", "loader"] = "testbed"
    families: list[str] = Field(default_factory=lambda: ["add", "sub", "sum", "max"], min_length=1)
    train_queries: int = Field(400, ge=1, description="training queries (each sampled N times)")
    eval_per_cell: int = Field(25, ge=1, description="held-out queries per family x difficulty (testbed) or per dataset")
    train_split: Literal["train", "validation", "test"] = "train"
    eval_split: Literal["train", "validation", "test"] = "test"

    @field_validator("families", mode="after")
    @classmethod
    def _in_domain(cls, families: list[str], info) -> list[str]:
        if info.data.get("source", "testbed") == "testbed":
            from swarm.tasks.testbed_families import FAMILIES, OOD_FAMILIES

            for f in families:
                if f in OOD_FAMILIES:
                    raise ValueError(f"{f!r} is out-of-domain: held out of self-awareness training")
                if f not in FAMILIES:
                    raise ValueError(f"unknown testbed family {f!r} (expected one of: {', '.join(FAMILIES)})")
            return families
        from swarm.tasks.domains import domain_group
        from swarm.tasks.loaders import UnknownTask

        for f in families:
            try:
                group = domain_group(f)
            except UnknownTask as exc:
                raise ValueError(str(exc)) from None
            if group != "in":
                raise ValueError(f"{f!r} is out-of-domain: held out of self-awareness training")
        return families


class CompetenceSpec(BaseModel):
    model_config = _STRICT
    samples: int = Field(8, ge=1, description="N: answers sampled per training query")
    temperature: float = Field(1.0, gt=0, le=5)
    max_new_tokens: int = Field(80, ge=1)
    batch_size: int = Field(32, ge=1, description="queries per generate call (each with N samples)")
    engine: Literal["auto", "transformers", "vllm"] = Field(
        "auto", description="sampler: vllm (vllm.LLM; an error when vLLM is missing or cannot run the model), "
        "transformers (batched generate), or auto: vllm when it imports and supports the model's architecture and "
        "head size, else transformers")
    kv_cache_space_gb: float = Field(1.0, gt=0, description="vLLM on CPU: the KV cache (VLLM_CPU_KVCACHE_SPACE wins)")


class LoraSpec(BaseModel):
    model_config = _STRICT
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    merge: bool = Field(True, description="merge the adapter into the weights (else: base plus adapter)")


class SftSpec(BaseModel):
    model_config = _STRICT
    method: Literal["full", "lora"] = "full"
    lora: LoraSpec = LoraSpec()
    examples: int = Field(1200, ge=2, description="training examples, half accept and half reject")
    validation_fraction: float = Field(0.1, gt=0, lt=1, description="share of queries held out for validation")
    balance: bool = Field(True, description="accept and reject 50/50 (the minority class is repeated)")
    forced_share: float = Field(0.25, ge=0, le=4, description="extra forced-answer (rehearsal) examples, as a share of "
                                "`examples`: the prompt without the reject option and one of the model's own correct replies")
    epochs: float = Field(2.0, gt=0)
    learning_rate: float = Field(5e-4, gt=0)
    batch_size: int = Field(16, ge=1)
    max_length: int = Field(256, ge=8)
    save_steps: int = Field(50, ge=1, description="checkpoint every this many steps (resume point)")


class RlSpec(BaseModel):
    model_config = _STRICT
    enabled: bool = True
    gamma: float = Field(GAMMA, ge=0, le=5, description="reject reward (1 - alpha) ** gamma")
    prompts: int = Field(256, ge=1, description="RL prompts (query x sampled scenario), 50/50 answer/reject optimal")
    num_generations: int = Field(8, ge=2, description="completions per prompt (the GRPO group)")
    prompts_per_step: int = Field(8, ge=1)
    max_steps: int = Field(30, ge=1)
    learning_rate: float = Field(1e-4, gt=0)
    beta: float = Field(0.0, ge=0, description="KL weight against the SFT model")
    temperature: float = Field(1.0, gt=0)
    max_completion_length: int = Field(80, ge=1)
    save_steps: int = Field(10, ge=1)


class EvalSpec(BaseModel):
    model_config = _STRICT
    max_new_tokens: int = Field(80, ge=1)
    batch_size: int = Field(64, ge=1)


class Recipe(BaseModel):
    """One agent's self-awareness training, from its base model to the directory its YAML points to."""

    model_config = _STRICT
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    model: str = Field(description="the agent's base model: a transformers directory with its tokenizer, or a testbed "
                                   "rung 'testbed:<ladder>/<rung>' (built into the cache on first use)")
    output_dir: Path
    seed: int = 0
    threads: int = Field(1, ge=1, description="torch CPU threads")
    scenarios: list[float] = Field(default_factory=lambda: [SCENARIOS[s] for s in SCENARIOS], min_length=1,
                                   description="alphas (or scenario names) trained for")
    tasks: TasksSpec = TasksSpec()
    competence: CompetenceSpec = CompetenceSpec()
    sft: SftSpec = SftSpec()
    rl: RlSpec = RlSpec()
    eval: EvalSpec = EvalSpec()

    @field_validator("scenarios", mode="before")
    @classmethod
    def _alphas(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        out = []
        for v in value:
            if isinstance(v, str):
                if v not in SCENARIOS:
                    raise ValueError(f"unknown scenario {v!r} (expected one of: {', '.join(SCENARIOS)}, or an alpha in [0, 1])")
                v = SCENARIOS[v]
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"alpha must lie in [0, 1], got {v}")
            out.append(v)
        return out

    @field_validator("output_dir", mode="after")
    @classmethod
    def _resolve(cls, value: Path, info) -> Path:
        """Absolute; a directory training may write into and delete parts of: new, empty or one a run
        made (it holds recipe.json), never /, the home or current directory (`swarm.outdir`)."""
        from swarm.outdir import check_output_dir

        base = (info.context or {}).get("base_dir") or Path.cwd()
        value = value.expanduser()
        value = value if value.is_absolute() else (Path(base) / value).resolve()
        check_output_dir(value, RUN_MARKER)
        return value

    @field_validator("model", mode="after")
    @classmethod
    def _model(cls, value: str, info) -> str:
        if value.startswith("testbed:"):
            from swarm.testbed.models import parse_ref

            parse_ref(value)
            return value
        path, _ = locate_path(Path((info.context or {}).get("base_dir") or Path.cwd()), value, "model directory")
        return str(_model_dir(path))

    def model_dir(self) -> Path:
        """The base model's directory (a testbed rung's ladder is built first if it is not cached)."""
        if self.model.startswith("testbed:"):
            from swarm.testbed.models import testbed_model_dir

            return _model_dir(testbed_model_dir(self.model))
        return Path(self.model)


def _model_dir(value: Path) -> Path:
    if not value.is_dir():
        raise ValueError(f"model directory {str(value)!r} does not exist")
    if not (value / "config.json").is_file():
        raise ValueError(f"model directory {str(value)!r} has no config.json (not a transformers model directory)")
    if not any((value / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")):
        raise ValueError(f"model directory {str(value)!r} has no tokenizer (tokenizer.json or tokenizer_config.json)")
    return value


def parse_recipe(text: str, source: str = "<string>", base_dir: Path | None = None) -> Recipe:
    """Validate recipe YAML text; relative paths resolve against `base_dir` (default: the cwd)."""
    data, root = parse_yaml(text, source, RecipeError)
    return validate(Recipe, data, source, root, base_dir, RecipeError)


def load_recipe(path: str | os.PathLike[str]) -> Recipe:
    """Read and validate a recipe file; relative paths resolve against its directory."""
    path = Path(path)
    text = read_text(path, RecipeError)
    return parse_recipe(text, source=str(path), base_dir=path.resolve().parent)


def as_recipe(recipe: Recipe | str | os.PathLike[str] | dict) -> Recipe:
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, dict):
        return validate(Recipe, recipe, "<recipe>", None, None, RecipeError)
    return load_recipe(recipe)


def check_memory(recipe: Recipe, parameters: int, hidden: int, layers: int, vocab: int, available: int) -> None:
    """Refuse a batch that will not fit: weights, gradients and two Adam moments (full fine-tune),
    plus activations of the largest batch (SFT batch, or the RL group) at the longest sequence."""
    trainable = parameters if recipe.sft.method == "full" else parameters // 50
    state = parameters * 4 + trainable * 4 * 3
    rows = max(recipe.sft.batch_size, recipe.rl.num_generations * recipe.rl.prompts_per_step if recipe.rl.enabled else 0,
               recipe.competence.batch_size * recipe.competence.samples)
    seq = recipe.sft.max_length
    activations = rows * seq * (hidden * layers * 24 + vocab * 2) * 4  # rough: per token, per layer, fp32
    needed = int((state + activations) * 1.2)
    if needed > available:
        gib = 1024**3
        raise RecipeError(recipe.name, "", f"the chosen batches need about {needed / gib:.1f} GiB of memory ({rows} rows x {seq} "
                          f"tokens, {parameters / 1e6:,.1f}M parameters) but only {available / gib:.1f} GiB is free; "
                          "lower sft.batch_size, rl.num_generations x rl.prompts_per_step or competence.batch_size")
