"""One agent's whole self-awareness training: checks, competence sampling, SFT data, SFT, RL,
reports before and after each stage, the final model directory and its card.

Every stage leaves its result in the output directory and is skipped when it is already there,
so an interrupted run resumes where it stopped (inside a stage too: competence sampling appends
per batch, SFT and RL restart from their last checkpoint)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import structlog

from swarm.outdir import OutputDirError, check_output_dir
from swarm.training.card import Costs, write_card
from swarm.training.competence import sample_competence
from swarm.training.items import eval_items, ood_items, training_items
from swarm.training.labels import LabelError, build_sft_data
from swarm.training.recipe import RUN_MARKER, Recipe, RecipeError, as_recipe, check_memory


@dataclass(frozen=True)
class TrainResult:
    model_dir: Path  # the directory an agent's YAML points to
    reports: dict[str, dict]  # stage -> numbers on held-out queries
    costs: dict[str, dict]
    data: dict


def preflight(recipe: Recipe) -> tuple[Path, list, list]:
    """Every check that needs no training: the recipe's output dir (new, empty, or holding recipe.json
    of the same recipe: `swarm.outdir`), the tokenizer, memory, the items."""
    from swarm.backends.fit import count_parameters, free_bytes

    out = recipe.output_dir
    try:  # checked when the recipe was read too; again here, before a stage writes or deletes anything in it
        check_output_dir(out, RUN_MARKER)
    except OutputDirError as exc:
        raise RecipeError(recipe.name, "output_dir", str(exc)) from None
    recorded = out / RUN_MARKER
    if recorded.exists() and _recorded_recipe(recorded) != _comparable(json.loads(recipe.model_dump_json())):
        raise RecipeError(recipe.name, "output_dir", f"{out} holds a run of a different recipe (see its recipe.json); "
                          "use another output_dir, or delete it to start over")
    model_dir = recipe.model_dir()
    if recipe.competence.engine == "vllm" and not (out / "competence.done").exists():
        from swarm.training.vllm_sampling import VLLMUnavailable, resolve_engine

        try:
            resolve_engine("vllm", model_dir)
        except VLLMUnavailable as exc:
            raise RecipeError(recipe.name, "competence.engine", f"vllm: {exc}; or set competence.engine to auto or "
                              "transformers") from None
    try:
        from swarm.training.generation import load_tokenizer

        tokenizer = load_tokenizer(model_dir)
    except Exception as exc:  # noqa: BLE001 - one line for the user
        raise RecipeError(recipe.name, "model", f"cannot load the tokenizer of {recipe.model}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if tokenizer.eos_token is None:
        raise RecipeError(recipe.name, "model", f"the tokenizer of {recipe.model} has no end-of-sequence token")
    if len(set(recipe.scenarios)) > 1:
        from swarm.training.generation import Prompter

        prompter = Prompter(tokenizer)
        shown = {prompter.render("1+1=", a) for a in recipe.scenarios}
        if len(shown) < len(set(recipe.scenarios)):
            raise RecipeError(recipe.name, "model", f"the chat template of {model_dir} renders the same prompt for different "
                              "scenarios (it drops the scenario instruction), so the model cannot learn per-scenario behaviour; "
                              "fix the template or train a single scenario")
    config = json.loads((model_dir / "config.json").read_text())
    text = config.get("text_config", config)
    params = count_parameters(str(model_dir)) or 0
    check_memory(recipe, params, int(text.get("hidden_size", 1024)), int(text.get("num_hidden_layers", 24)),
                 int(text.get("vocab_size", 32000)), free_bytes("cpu"))
    held = eval_items(recipe)
    train = training_items(recipe, held)
    return model_dir, train, held


def train(recipe: Recipe | str | os.PathLike[str] | dict) -> TrainResult:
    """Train one agent from its recipe (a Recipe, a YAML path, or a mapping); resumable."""
    recipe = as_recipe(recipe)
    with _terminate_as_interrupt():
        return _train(recipe)


@contextmanager
def _terminate_as_interrupt():
    """SIGTERM (kill, a scheduler's stop) unwinds like Ctrl-C, so the cost of the work done so far is saved."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _train(recipe: Recipe) -> TrainResult:
    from swarm.reproducible import pin_cpu_math
    from swarm.training.report import evaluate, markdown

    log = structlog.get_logger("swarm.training").bind(agent=recipe.name)
    pin_cpu_math(recipe.threads)
    base_model, train_set, held = preflight(recipe)
    out = recipe.output_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / RUN_MARKER).write_text(recipe.model_dump_json(indent=2))  # first: the mark of a directory training made
    costs = Costs(out / "costs.json")
    reports: dict[str, dict] = {}
    log.info("training starts", model=str(base_model), output=str(out), train_queries=len(train_set), held_out=len(held))

    ood = ood_items(recipe)

    def measured(path: Path, stage: str, model_dir: Path, items: list) -> dict:
        if path.exists():
            return json.loads(path.read_text())
        with costs.measure(f"eval_{stage}"):
            rep = evaluate(model_dir, items, list(recipe.scenarios), recipe.eval.max_new_tokens, recipe.eval.batch_size,
                           recipe.rl.gamma)
        costs.add(f"eval_{stage}", rep["tokens_generated"])
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(rep, indent=2))
        return rep

    def report(stage: str, model_dir: Path) -> None:
        rep = measured(out / "reports" / f"{stage}.json", stage, model_dir, held)
        if ood:  # the out-of-domain families: never trained on, reported beside
            rep = {**rep, "ood": measured(out / "reports" / f"{stage}-ood.json", stage, model_dir, ood)}
        reports[stage] = rep
        log.info("report", stage=stage, forced_accuracy=rep["forced_accuracy"],
                 answer_rate={a: s["answer_rate"] for a, s in rep["scenarios"].items()},
                 f1={a: s["self_assessment"]["f1"] for a, s in rep["scenarios"].items()},
                 ood_forced_accuracy=rep.get("ood", {}).get("forced_accuracy"))
        (out / "report.md").write_text(markdown(recipe.name, reports))

    # 1. competence sampling
    c = recipe.competence
    table = competence_stage(recipe, base_model, train_set, costs, log)
    mean_p = sum(r.p for r in table) / len(table)
    log.info("competence", queries=len(table), mean_p=round(mean_p, 4), p0=sum(r.p == 0 for r in table), p1=sum(r.p == 1 for r in table))
    report("base", base_model)

    # 2. SFT data and SFT
    try:
        data = build_sft_data(table, recipe.scenarios, recipe.sft.examples, recipe.sft.validation_fraction,
                              recipe.sft.balance, recipe.seed, recipe.sft.forced_share)
    except LabelError as exc:
        raise RecipeError(recipe.name, "sft", str(exc)) from None
    _write_jsonl(out / "sft_data" / "train.jsonl", [e.to_json() for e in data.train])
    _write_jsonl(out / "sft_data" / "validation.jsonl", [e.to_json() for e in data.validation])
    sizes = {"train_queries": len(train_set), "held_out_queries": len(held), "competence_samples": len(table) * c.samples,
             "mean_competence": round(mean_p, 4), "sft": data.stats}
    sft_dir = out / "sft"
    if not (sft_dir / "done.json").exists():
        from swarm.training.sft import run_sft

        with costs.measure("sft"):
            info = run_sft(base_model, sft_dir, data.train, data.validation, recipe.sft, recipe.seed, log)
        (sft_dir / "done.json").write_text(json.dumps(info, indent=2))
        _clean_checkpoints(sft_dir)
    sizes["sft"]["result"] = json.loads((sft_dir / "done.json").read_text())
    stage_model = sft_dir / "model"
    report("sft", stage_model)

    # 3. RL
    if recipe.rl.enabled:
        from swarm.training.rl import rl_prompts, run_grpo

        rl_dir = out / "rl"
        pairs = rl_prompts(table, recipe.scenarios, recipe.rl.prompts, recipe.rl.gamma, recipe.seed)
        if not (rl_dir / "done.json").exists():
            with costs.measure("rl"):
                info = run_grpo(stage_model, rl_dir, pairs, recipe.rl, recipe.seed, log,
                                on_tokens=lambda n: costs.add("rl", n))
            (rl_dir / "done.json").write_text(json.dumps(info, indent=2))
            _clean_checkpoints(rl_dir)
        sizes["rl"] = json.loads((rl_dir / "done.json").read_text())
        stage_model = rl_dir / "model"
        report("rl", stage_model)

    final = out / "model"
    if final.exists():
        shutil.rmtree(final)
    shutil.copytree(stage_model, final)
    write_card(final, recipe, sizes, costs, reports)
    (out / "report.md").write_text(markdown(recipe.name, reports))
    log.info("training done", model=str(final), cost=costs.total())
    return TrainResult(final, reports, costs.stages, sizes)


def competence_stage(recipe: Recipe, base_model: Path, train_set: list, costs: Costs, log) -> list:
    """The competence file of the recipe's training queries (sampled once; the self-awareness
    training and the probe (`swarm.training.probe`) both read it)."""
    out = recipe.output_dir
    with costs.measure("competence"):
        if (out / "competence.done").exists():
            from swarm.training.competence import read_table

            return read_table(out / "competence.jsonl")
        table = _sample(recipe, base_model, train_set, log)
        costs.set_tokens("competence", sum(r.tokens for r in table))  # counts the samples of an interrupted run too
        (out / "competence.done").write_text("")
        return table


def _comparable(recipe_json: dict) -> dict:
    """A recorded recipe as far as results go: threads and the sampling engine change speed, not what is learnt."""
    out = {k: v for k, v in recipe_json.items() if k != "threads"}
    out["competence"] = {k: v for k, v in out.get("competence", {}).items() if k not in ("engine", "kv_cache_space_gb")}
    return out


def _recorded_recipe(path: Path) -> dict | None:
    """The recipe a run recorded in its output dir, as far as results go (None: unreadable)."""
    try:
        return _comparable(json.loads(path.read_text()))
    except (OSError, ValueError, AttributeError):
        return None


def _sample(recipe: Recipe, base_model: Path, train_set: list, log) -> list:
    return sample_items(recipe, base_model, train_set, recipe.output_dir / "competence.jsonl", log)


def sample_items(recipe: Recipe, base_model: Path, train_set: list, path: Path, log) -> list:
    """Competence sampling of `train_set` into `path` with the recipe's engine; `auto` falls back to
    transformers when vLLM cannot run the model or fails to start (the records sampled so far are
    kept: it resumes)."""
    from swarm.training.generation import load_model, load_tokenizer
    from swarm.training.vllm_sampling import (
        VLLMSampler,
        VLLMUnavailable,
        resolve_engine,
    )

    c = recipe.competence
    try:
        engine = resolve_engine(c.engine, base_model, log)
    except VLLMUnavailable as exc:
        raise RecipeError(recipe.name, "competence.engine", f"vllm: {exc}") from None
    log.info("competence sampling", queries=len(train_set), n=c.samples, engine=engine)
    tokenizer = load_tokenizer(base_model)
    args = (train_set, path, c.samples, c.temperature, c.max_new_tokens, c.batch_size, log)
    if engine == "vllm":
        try:
            with VLLMSampler(base_model, tokenizer, kv_cache_space_gb=c.kv_cache_space_gb) as sampler:
                return sample_competence(None, tokenizer, *args, sampler=sampler, seed=recipe.seed)[0]
        except VLLMUnavailable as exc:
            if c.engine == "vllm":
                raise RecipeError(recipe.name, "competence.engine", f"vllm: {exc}") from None
            log.warning("vLLM failed; competence sampling goes on with transformers", reason=str(exc))
    return sample_competence(load_model(base_model), tokenizer, *args, seed=recipe.seed)[0]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _clean_checkpoints(stage_dir: Path) -> None:
    """The stage finished: its resume checkpoints are no longer needed."""
    shutil.rmtree(stage_dir / "checkpoints", ignore_errors=True)


def train_json(recipe_json: dict) -> TrainResult:
    """`train` of a recipe sent as JSON (a Ray task's argument: `swarm.cluster.training.train_many`)."""
    from swarm.logging import configure_logging

    configure_logging()
    return train(Recipe.model_validate(recipe_json))
