"""The testbed ladder: small Qwen2 models trained from scratch on the procedural task families,
so that accuracy rises with size on every difficulty.

`build_ladder(out_dir, quick)` trains every rung (deterministic given the seed), saves each as a
normal transformers directory ``out_dir/<name>/`` (model, character tokenizer, chat template),
evaluates all of them on one held-out set, and writes ``report.json`` and ``report.png``. A
``manifest.json`` holds a hash of the settings: a second call with the same settings returns at
once.

Training and evaluation: each rung trains, then is evaluated, in a spawned process of its own
with one thread and the CPU math pinned (`swarm.reproducible`: the same bits on any x86-64 CPU
with AVX2), two at a time on the two cores (the largest first). Each rung is seeded on its own,
so the result depends neither on which process ran it nor on the machine's core count.

Evaluation is greedy exact match computed by teacher forcing: an item counts as solved when the
model's arg-max token equals the gold reply's token (`reply_text`: the worked solution, then the
answer template) at every reply position, end-of-sequence included. That is exactly "greedy
decoding produces the gold reply", in one forward pass per batch instead of one per generated
token. (A greedy reply that takes other steps but still states the right number counts as wrong
here; the verifier would accept it.)

Cost: each model's YAML cost is normalised like the paper, by log FLOPs per token: 0.1 for the
cheapest, 0.9 for the most expensive, log-linear in between; FLOPs per token are estimated as
2 x parameters (embeddings included, since the tied output layer uses them) plus the attention
term 2 x layers x context x hidden at a context of 64 tokens.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from swarm.tasks.testbed_families import (
    DIFFICULTIES,
    FAMILIES,
    IN_DOMAIN_FAMILIES,
    OOD_FAMILIES,
    held_out,
    reply_text,
    training_stream,
)
from swarm.costscale import log_cost_scale
from swarm.prompts import Renderer, user_turn
from swarm.testbed.tokenizer import build_tokenizer

VERSION = 9  # bump when training or evaluation changes so that caches are rebuilt


@dataclass(frozen=True)
class Rung:
    name: str
    hidden: int
    layers: int
    heads: int
    steps: int
    lr: float


# Bigger models also get more training steps (as real model families get more compute). Near
# these budgets the rungs sit on either side of learning each family's algorithm, which is what
# makes the gaps: the smallest learns single-column sums, the next the easy half of the items,
# the top two nearly everything. The full ladder is the quick one plus a fifth, larger rung (the
# paper's ladder has five models): its first four rungs are the quick ladder's, trained alike
# (a full build after a quick one copies them and trains the fifth only). Trained apart, on
# another held-out exclusion, tb-l came out below tb-m (0.91 against 0.94): these budgets sit
# near each family's learning threshold, so the ladder is tuned and checked as a whole.
QUICK_RUNGS = (
    Rung("tb-xs", hidden=48, layers=2, heads=4, steps=700, lr=4e-3),
    Rung("tb-s", hidden=64, layers=2, heads=4, steps=700, lr=4e-3),
    Rung("tb-m", hidden=64, layers=3, heads=4, steps=900, lr=3e-3),
    Rung("tb-l", hidden=96, layers=3, heads=4, steps=1000, lr=2.5e-3),
)
FULL_RUNGS = (*QUICK_RUNGS, Rung("tb-xl", hidden=128, layers=4, heads=4, steps=1500, lr=2e-3))
BATCH = 64
EVAL_PER_CELL = {True: 200, False: 200}  # held-out items per family x difficulty (fewer where a cell's space is small)
CONTEXT = 64


@dataclass
class ModelReport:
    name: str
    path: str
    params: int
    flops_per_token: int
    cost: float
    train_seconds: float
    steps: int
    accuracy: dict[str, dict[str, float]] = field(default_factory=dict)  # family -> difficulty -> accuracy
    overall: float = 0.0
    by_difficulty: dict[str, float] = field(default_factory=dict)


@dataclass
class LadderReport:
    out_dir: str
    quick: bool
    seed: int
    settings_hash: str
    families: list[str]
    ood_families: list[str]
    in_domain_families: list[str]
    eval_items: dict[str, dict[str, int]]
    cost_rule: str
    models: list[ModelReport]
    seconds: float
    cached: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LadderReport:
        data = dict(data)
        data["models"] = [ModelReport(**m) for m in data["models"]]
        return cls(**data)

    def model_dirs(self) -> list[Path]:
        return [Path(m.path) for m in self.models]


def settings(quick: bool, seed: int) -> dict[str, Any]:
    rungs = QUICK_RUNGS if quick else FULL_RUNGS
    return {"version": VERSION, "quick": quick, "seed": seed, "rungs": [asdict(r) for r in rungs], "batch": BATCH,
            "eval_per_cell": EVAL_PER_CELL[quick], "families": list(FAMILIES), "ood": list(OOD_FAMILIES)}


def settings_hash(quick: bool, seed: int) -> str:
    return hashlib.sha256(json.dumps(settings(quick, seed), sort_keys=True).encode()).hexdigest()[:16]


def _log(msg: str) -> None:
    print(f"[testbed] {msg}", file=sys.stderr, flush=True)


def _cached(out: Path, digest: str) -> LadderReport | None:
    manifest = out / "manifest.json"
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return None
    if data.get("settings_hash") != digest:
        return None
    try:
        report = LadderReport.from_json(json.loads((out / "report.json").read_text()))
    except (OSError, ValueError, TypeError):
        return None
    for m in report.models:  # a ladder directory may have been moved or copied: its models are beside the report
        m.path = str((out / m.name).resolve())
    report.out_dir = str(out.resolve())
    if not all((Path(m.path) / "config.json").is_file() for m in report.models):
        return None
    report.cached = True
    return report


def build_ladder(out_dir: str | os.PathLike, quick: bool = False, seed: int = 0, workers: int = 2) -> LadderReport:
    """Train (or load from the cache) the testbed ladder into `out_dir`; see the module docstring.

    `workers` rungs train at once, each in a process of its own with one thread (1: all in this
    process). A rung already trained with the same settings (an interrupted build) is reused."""
    out = Path(out_dir)
    digest = settings_hash(quick, seed)
    hit = _cached(out, digest)
    if hit is not None:
        return hit
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise OSError(f"testbed cache directory {str(out)!r} is not writable ({exc.strerror}); "
                      "choose another (swarm testbed build --out DIR, or set SWARM_CACHE_DIR)") from None
    (out / "manifest.json").unlink(missing_ok=True)

    started = time.monotonic()
    rungs = QUICK_RUNGS if quick else FULL_RUNGS
    test = held_out(seed, EVAL_PER_CELL[quick])
    exclude = sorted({item.prompt for item in test})
    trained = _train_all(rungs, seed, out, exclude, workers)
    with _pool(workers, len(rungs)) as pool:
        evaluated = [pool.submit(_evaluate_rung, str(out / rung.name), seed, quick) for rung in rungs]
        evaluated = [future.result() for future in evaluated]
    models: list[ModelReport] = []
    for rung, (params, flops, solved) in zip(rungs, evaluated, strict=True):
        path = out / rung.name
        report = ModelReport(rung.name, str(path.resolve()), params, flops, 0.0, trained[rung.name], rung.steps)
        _fill_accuracy(report, test, solved)
        _log(f"{rung.name}: {report.params:,} params, trained in {report.train_seconds:.0f} s, overall {report.overall:.3f}, "
             f"by difficulty {report.by_difficulty}")
        models.append(report)
    _set_costs(models)
    counts: dict[str, dict[str, int]] = {}
    for item in test:
        cell = counts.setdefault(item.domain.split("/")[1], {})
        cell[str(item.difficulty)] = cell.get(str(item.difficulty), 0) + 1
    ladder = LadderReport(str(out.resolve()), quick, seed, digest, list(FAMILIES), list(OOD_FAMILIES), list(IN_DOMAIN_FAMILIES),
                          counts, "log_flops: 0.1 cheapest, 0.9 most expensive, log-linear in FLOPs per token",
                          models, round(time.monotonic() - started, 1))
    (out / "report.json").write_text(json.dumps(ladder.to_json(), indent=2))
    _heatmap(ladder, out / "report.png")
    (out / "manifest.json").write_text(json.dumps({"settings_hash": digest, "settings": settings(quick, seed),
                                                   "models": [m.name for m in models]}, indent=2))
    _log(f"ladder built in {ladder.seconds:.0f} s -> {out}")
    return ladder


# -- training -------------------------------------------------------------------------------

def _config(rung: Rung, tokenizer):
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=rung.hidden, intermediate_size=rung.hidden * 4,
        num_hidden_layers=rung.layers, num_attention_heads=rung.heads, num_key_value_heads=rung.heads,
        max_position_embeddings=256, tie_word_embeddings=True, rope_theta=10000.0,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )


def _encode(tokenizer, pairs: list[tuple[str, str]]):
    """Right-padded input ids, attention mask and labels (-100 on prompt and padding)."""
    import torch

    rows, labels = [], []
    for prompt, reply in pairs:
        p = tokenizer(prompt, add_special_tokens=False).input_ids
        r = tokenizer(reply, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
        rows.append(p + r)
        labels.append([-100] * len(p) + r)
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    lab = torch.tensor([l + [-100] * (width - len(l)) for l in labels])
    return ids, mask, lab


def rung_key(rung: Rung, seed: int, exclude: list[str]) -> str:
    """What a rung's weights depend on: the same key, the same model (training is deterministic)."""
    spec = {"version": VERSION, "rung": asdict(rung), "seed": seed, "batch": BATCH, "families": list(FAMILIES),
            "exclude": hashlib.sha256("\n".join(sorted(exclude)).encode()).hexdigest()}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _trained_key(path: Path) -> str | None:
    try:
        return json.loads((path / "trained.json").read_text()).get("rung_key")
    except (OSError, ValueError, AttributeError):
        return None


def _train_all(rungs, seed: int, out: Path, exclude: list[str], workers: int) -> dict[str, float]:
    """Train every rung not already trained with these settings, here (an interrupted build) or in a
    sibling ladder of the same cache (the full ladder shares the quick one's rungs); returns
    training seconds by rung."""
    import shutil

    done: dict[str, float] = {}
    todo = []
    for rung in rungs:
        key = rung_key(rung, seed, exclude)
        if _trained_key(out / rung.name) != key:
            for sibling in sorted(out.parent.glob(f"*/{rung.name}")):
                if sibling.parent != out and _trained_key(sibling) == key:
                    shutil.rmtree(out / rung.name, ignore_errors=True)
                    shutil.copytree(sibling, out / rung.name)
                    _log(f"{rung.name}: trained with the same settings in {sibling.parent}, copied")
                    break
        if _trained_key(out / rung.name) == key:
            _log(f"{rung.name}: already trained with these settings, reused")
            done[rung.name] = json.loads((out / rung.name / "trained.json").read_text())["train_seconds"]
        else:
            todo.append(rung)
    todo.sort(key=lambda r: r.steps * r.layers * r.hidden**2, reverse=True)  # the longest first
    for rung in todo:
        _log(f"training {rung.name}: hidden {rung.hidden}, {rung.layers} layers, {rung.steps} steps")
    if not todo:
        return done
    with _pool(workers, len(todo)) as pool:
        futures = {rung.name: pool.submit(_train_rung, rung, seed, str(out), exclude, k) for k, rung in enumerate(todo)}
        for name, future in futures.items():
            done[name] = future.result()
    return done


def _pool(workers: int, jobs: int):
    """Worker processes for rungs: spawned, not forked (the parent may hold threads, torch's or Ray's,
    that a fork would copy broken), and never the parent itself, whose torch may already have
    computed with other kernels or threads."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max(1, min(workers, jobs)), mp_context=multiprocessing.get_context("spawn"))


def _train_rung(rung: Rung, seed: int, out: str, exclude: list[str], position: int) -> float:
    """Train one rung and save it as a transformers directory (run in a worker process)."""
    from swarm.reproducible import pin_cpu_math

    pin_cpu_math(threads=1)
    tokenizer = build_tokenizer()
    t0 = time.monotonic()
    model = _train(rung, tokenizer, seed, set(exclude), position)
    seconds = round(time.monotonic() - t0, 1)
    path = Path(out) / rung.name
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / "trained.json").write_text(json.dumps({"rung_key": rung_key(rung, seed, exclude), "train_seconds": seconds}))
    return seconds


def _pairs(tokenizer, items) -> list[tuple[str, str]]:
    """(prompt, reply) of each item: the prompt as the tokenizer's chat template renders the question
    (`swarm.prompts.Renderer`, as every backend and training render it), the worked reply."""
    renderer = Renderer(tokenizer)
    return [(renderer.text(user_turn(i.prompt)), reply_text(i)) for i in items]


def _batches(tokenizer, stream):
    """Endless training batches, each a uniform mix of every family and difficulty. (Batches of
    one length, which waste no padding, trained worse: 3% against 7% for a small rung.)"""
    while True:
        items = [next(stream) for _ in range(BATCH)]
        yield _encode(tokenizer, _pairs(tokenizer, items))


def _train(rung: Rung, tokenizer, seed: int, exclude: set[str], position: int = 0):
    import torch
    from transformers import Qwen2ForCausalLM

    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(_config(rung, tokenizer))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=rung.lr, weight_decay=0.01, betas=(0.9, 0.98))
    warm = max(1, rung.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / rung.steps)))))
    batches = _batches(tokenizer, training_stream(seed, exclude))
    bar = (tqdm(range(rung.steps), desc=rung.name, file=sys.stderr, mininterval=2.0, position=position)
           if tqdm else range(rung.steps))
    for step in bar:
        ids, mask, lab = next(batches)
        loss = model(input_ids=ids, attention_mask=mask, labels=lab).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if tqdm and step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
        elif not tqdm and step % 100 == 0:
            _log(f"{rung.name} step {step}/{rung.steps} loss {loss.item():.3f}")
    if tqdm:
        bar.close()
    model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def _evaluate_rung(path: str, seed: int, quick: bool) -> tuple[int, int, list[bool]]:
    """Parameters, FLOPs per token and the solved flags of one trained rung on the held-out set
    (run in a worker process)."""
    from transformers import Qwen2ForCausalLM

    from swarm.reproducible import pin_cpu_math

    pin_cpu_math(threads=1)
    tokenizer = build_tokenizer()
    test = held_out(seed, EVAL_PER_CELL[quick])
    model = Qwen2ForCausalLM.from_pretrained(path)
    solved = _evaluate(model, _encode(tokenizer, _pairs(tokenizer, test)))
    return sum(p.numel() for p in model.parameters()), _flops(model.config), solved


def _evaluate(model, batch, chunk: int = 512) -> list[bool]:
    """Greedy exact match by teacher forcing (see the module docstring)."""
    import torch

    ids, mask, lab = batch
    solved: list[bool] = []
    with torch.inference_mode():
        for s in range(0, len(ids), chunk):
            logits = model(input_ids=ids[s:s + chunk], attention_mask=mask[s:s + chunk]).logits
            pred = logits[:, :-1].argmax(-1)
            gold = lab[s:s + chunk, 1:]
            ok = (pred == gold) | (gold == -100)
            solved.extend(ok.all(-1).tolist())
    return solved


def _fill_accuracy(report: ModelReport, test, solved: list[bool]) -> None:
    cells: dict[tuple[str, int], list[bool]] = {}
    for item, ok in zip(test, solved):
        cells.setdefault((item.domain.split("/")[1], item.difficulty), []).append(ok)
    for (family, d), oks in cells.items():
        report.accuracy.setdefault(family, {})[str(d)] = round(sum(oks) / len(oks), 4)
    for d in DIFFICULTIES:
        per = [report.accuracy[f][str(d)] for f in FAMILIES if str(d) in report.accuracy.get(f, {})]
        report.by_difficulty[str(d)] = round(sum(per) / len(per), 4)
    report.overall = round(sum(report.by_difficulty.values()) / len(report.by_difficulty), 4)


def _flops(config) -> int:
    h, layers, v, inter = config.hidden_size, config.num_hidden_layers, config.vocab_size, config.intermediate_size
    params = layers * (4 * h * h + 3 * h * inter) + v * h
    return int(2 * params + 2 * layers * CONTEXT * h)


def _set_costs(models: list[ModelReport]) -> None:
    costs = log_cost_scale({m.name: m.flops_per_token for m in models})
    for m in models:
        m.cost = costs[m.name]


def _heatmap(ladder: LadderReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [(f, str(d)) for f in ladder.families for d in DIFFICULTIES]
    grid = [[m.accuracy.get(f, {}).get(d, float("nan")) for f, d in cols] for m in ladder.models]
    fig, ax = plt.subplots(figsize=(1 + 0.55 * len(cols), 1.2 + 0.5 * len(ladder.models)))
    im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(cols)), [f"{f}{'*' if f in ladder.ood_families else ''}\nd{d}" for f, d in cols], fontsize=7)
    ax.set_yticks(range(len(ladder.models)), [f"{m.name} ({m.params / 1e6:.2f}M)" for m in ladder.models], fontsize=8)
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="white" if v < 0.6 else "black")
    ax.set_title(f"testbed ladder accuracy ({'quick' if ladder.quick else 'full'}, seed {ladder.seed}; * out-of-domain)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.02)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
