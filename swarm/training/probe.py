"""`swarm probe RECIPE...`: fit an agent's probe (`swarm.assess`) from its recipe; the model's weights are never touched.

1. the competence file of the recipe's training queries (shared with `swarm train`: sampled once);
2. the agent's greedy (forced) replies to its training queries, its held-out queries, the held-out
   family `rev` and general questions (BIG-bench qa_wikidata), and p(x) sampled on the held-out
   queries (the per-agent oracle's threshold reads it);
3. the prompt's hidden states (one prefill each, `swarm.backends.hf_states`);
4. the probe (`swarm.assess.probe.fit_probe`: layers and L2 chosen by out-of-fold AUROC);
5. the calibration report: AUROC and ECE of P(I know) in domain, on each in-domain family held out
   of the probe's training, on `rev` and on general questions; the decision beside always-answer,
   always-reject and the per-agent oracle (`swarm.assess.calibration`).

Everything lands in `<output_dir>/probe/` (probe.json, probe.safetensors, calibration.json,
report.md); a topology's agent selects it with `policy: {kind: probe, path: <that directory>}`.
Each stage's outputs are cached in that directory, so a second run redoes only what is missing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import structlog

from swarm.assess.calibration import auroc, decision_table, ece
from swarm.assess.probe import Probe, candidate_layers, fit_fusion, fit_probe
from swarm.errors import SwarmError
from swarm.prompts import SCENARIOS, Renderer, build_messages
from swarm.training.recipe import Recipe, as_recipe

GENERAL = ("bigbench/qa_wikidata", 100)  # general questions from outside the testbed: the task, how many


def probe_dir(recipe: Recipe) -> Path:
    return recipe.output_dir / "probe"


def train_probe(recipe: Recipe | str | os.PathLike[str] | dict, regions=None) -> Path:
    """With `regions` (a `swarm.assess.regions.RegionMap`), the probe records the region of each of its
    validation queries under that map (what its value curve per region reads)."""
    from swarm.reproducible import pin_cpu_math
    from swarm.training.card import Costs
    from swarm.training.generation import load_model, load_tokenizer
    from swarm.training.items import ood_items
    from swarm.training.pipeline import competence_stage, preflight

    recipe = as_recipe(recipe)
    log = structlog.get_logger("swarm.assess").bind(agent=recipe.name)
    pin_cpu_math(recipe.threads)
    base_model, train_set, held = preflight(recipe)
    out = probe_dir(recipe)
    out.mkdir(parents=True, exist_ok=True)
    (recipe.output_dir / "recipe.json").write_text(recipe.model_dump_json(indent=2))
    costs = Costs(out / "costs.json")
    log.info("probe training starts", model=str(base_model), output=str(out), train_queries=len(train_set), held_out=len(held))
    table = competence_stage(recipe, base_model, train_set, costs, log)
    targets = np.array([r.p for r in table], dtype=np.float64)

    tokenizer, model = load_tokenizer(base_model), load_model(base_model)
    sets = {"train": train_set, "in_domain": held, "ood": ood_items(recipe), "general": _general(recipe)}
    with costs.measure("forced"):
        forced = {name: _forced(model, tokenizer, items, out / f"forced-{name}.json", recipe, log) for name, items in sets.items()}
        correct = {name: f[0] for name, f in forced.items()}
        min_logprob = {name: f[1] for name, f in forced.items()}
    with costs.measure("states"):
        from swarm.backends.hf_states import VERSION

        states = {name: _states(model, tokenizer, items, out / f"states-v{VERSION}-{name}.npy", log) for name, items in sets.items()}
    with costs.measure("held_out_competence"):
        from swarm.training.pipeline import sample_items

        p_true = np.array([r.p for r in sample_items(recipe, base_model, held, out / "competence-held-out.jsonl", log)])

    with costs.measure("fit"):
        probe, val_p = fit_probe(recipe.name, recipe.model, states["train"], targets, correct["train"], seed=recipe.seed,
                                 progress=lambda m: log.info("probe candidate", result=m))
        fit_fusion(probe, min_logprob["train"])
        if regions is not None:
            probe.set_regions(regions, [i.prompt for i in sets["train"]])
        probe.save(out)
        log.info("probe fitted", layers=probe.meta.layers, l2=probe.meta.l2, chosen=probe.meta.selection["chosen"])
        held_family = _held_out_families(recipe, probe, states, targets, correct, sets)
    report = calibration_report(probe, states, correct, min_logprob, p_true, held_family)
    report["costs"] = costs.stages
    (out / "calibration.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(markdown(recipe.name, report))
    log.info("probe done", directory=str(out), auroc_in_domain=report["sets"]["in_domain"]["auroc"],
             auroc_ood=report["sets"]["ood"]["auroc"])
    return out


def record_regions(directory: Path, regions) -> bool:
    """Record, in the probe `swarm probe` wrote into `directory`, the region of each of its validation queries
    under the map `regions` (a `swarm.assess.regions.RegionMap`); the queries are made again from the recipe
    beside it (its items are deterministic). False when the probe already holds them under that map."""
    from swarm.training.items import training_prompts

    directory = Path(directory)
    probe = Probe.load(directory)
    if probe.meta.regions == regions.digest:
        return False
    recorded = directory.parent / "recipe.json"
    if not recorded.is_file():
        raise SwarmError(f"probe {str(directory)!r} has no recipe.json beside it, so its validation queries are unknown: "
                         "fit it with `swarm probe RECIPE --regions MAP`")
    recipe = as_recipe(json.loads(recorded.read_text()))
    probe.set_regions(regions, training_prompts(recipe))
    probe.save(directory)
    return True


def _general(recipe: Recipe) -> list:
    from swarm.tasks.loaders import load

    name, n = GENERAL
    return load(name, split="test", seed=recipe.seed)[:n]


def answer_prompts(tokenizer, items) -> list[list[int]]:
    """Each item's answer prompt as token ids, rendered as every backend renders it (the prompt a probe reads)."""
    renderer = Renderer(tokenizer)
    return [renderer.prompt(build_messages(i.prompt, 0.5, allow_reject=False))[0] for i in items]


def _forced(model, tokenizer, items, path: Path, recipe: Recipe, log) -> tuple[np.ndarray, np.ndarray]:
    """Whether the agent's greedy reply to each item is correct, and the log P of the reply's least
    likely token (end of sequence included, as the serving backend counts it); cached in `path`."""
    if path.exists():
        cached = json.loads(path.read_text())
        return np.array(cached["correct"], dtype=bool), np.array(cached["min_logprob"], dtype=np.float64)
    import torch
    from transformers import LogitsProcessorList

    from swarm.backends.hf_generation import LogprobRecorder, left_pad
    from swarm.tasks.verify import verify

    log.info("forced replies", queries=len(items), set=path.stem)
    eos = model.generation_config.eos_token_id
    eos = {i for i in [*(eos if isinstance(eos, list) else [eos]), tokenizer.eos_token_id] if i is not None}
    rows, ok, low = answer_prompts(tokenizer, items), [], []
    for start in range(0, len(rows), recipe.eval.batch_size):
        ids, mask = left_pad(rows[start:start + recipe.eval.batch_size], tokenizer.pad_token_id, model.device)
        recorder = LogprobRecorder()
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=recipe.eval.max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=sorted(eos),
                                 logits_processor=LogitsProcessorList([recorder]), return_dict_in_generate=True)
        generated = out.sequences[:, ids.shape[1]:]
        logprobs = recorder.logprobs(generated)
        for i, item in enumerate(items[start:start + recipe.eval.batch_size]):
            tokens = generated[i].tolist()
            n = next((j + 1 for j, t in enumerate(tokens) if t in eos), len(tokens))
            ok.append(verify(item, tokenizer.decode(tokens[:n], skip_special_tokens=True).strip()))
            low.append(min(logprobs[i][:n]) if n else -20.0)
    path.write_text(json.dumps({"correct": ok, "min_logprob": low}))
    return np.array(ok, dtype=bool), np.array(low, dtype=np.float64)


def _states(model, tokenizer, items, path: Path, log) -> np.ndarray:
    if path.exists():
        return np.load(path)
    from swarm.backends.hf_states import prompt_states

    log.info("hidden states", queries=len(items), set=path.stem)
    states = prompt_states(model, answer_prompts(tokenizer, items), tokenizer.pad_token_id)
    np.save(path, states)
    return states


def _held_out_families(recipe: Recipe, probe: Probe, states, targets, correct, sets) -> dict[str, dict]:
    """Per in-domain family: the probe refitted (same layers and L2) without that family's training
    queries, measured on that family's held-out queries: how a probe fares on a kind of query it never saw."""
    name = probe.meta.selection["chosen"]
    layers = {name: candidate_layers(probe.meta.n_layers)[name]}
    out = {}
    for family in recipe.tasks.families:
        keep = np.array([not _of(i, family) for i in sets["train"]])
        test = np.array([_of(i, family) for i in sets["in_domain"]])
        if keep.all() or not test.any():
            continue
        refit, _ = fit_probe(recipe.name, recipe.model, states["train"][keep], targets[keep], correct["train"][keep],
                             seed=recipe.seed, l2s=(probe.meta.l2,), layer_sets=layers)
        p = refit.p_know(states["in_domain"][test])
        out[family] = {"n": int(test.sum()), "auroc": round(auroc(p, correct["in_domain"][test]), 4),
                       "ece": round(ece(p, correct["in_domain"][test]), 4),
                       "familiar": round(float(refit.familiar(states["in_domain"][test]).mean()), 4)}
    return out


def _of(item, family: str) -> bool:
    """Is the item of the recipe's family (testbed items' domains are "testbed/<family>")?"""
    return item.domain in (family, f"testbed/{family}")


def calibration_report(probe: Probe, states, correct, min_logprob, p_true, held_family) -> dict:
    alphas = list(SCENARIOS.values())
    rows = {}
    for name in ("in_domain", "ood", "general", "validation"):
        if name == "validation":  # out-of-fold on the training queries
            p, familiar, y = probe.val_p, np.ones(len(probe.val_p), bool), correct["train"]
            fused = probe.val_fused
        else:
            p, familiar, y = probe.p_know(states[name]), probe.familiar(states[name]), correct[name]
            fused = probe.fused(p, min_logprob[name])
        rows[name] = {"n": len(p), "forced_accuracy": round(float(y.mean()), 4),
                      "auroc": round(auroc(p, y), 4), "ece": round(ece(p, y), 4),
                      "auroc_fused": round(auroc(fused, y), 4), "ece_fused": round(ece(fused, y), 4),
                      "auroc_token_confidence": round(auroc(min_logprob["train" if name == "validation" else name], y), 4),
                      "mean_p": round(float(p.mean()), 4), "familiar": round(float(familiar.mean()), 4)}
        if name != "validation":
            rows[name]["decisions"] = decision_table(
                {"probe + token confidence": np.where(familiar, fused, probe.token_p(min_logprob[name])),
                 "probe (prompt only)": np.where(familiar, p, 0.0)},
                y, alphas, p_true=p_true if name == "in_domain" else None)
    return {"agent": probe.meta.agent, "model": probe.meta.model, "layers": probe.meta.layers, "l2": probe.meta.l2,
            "selection": probe.meta.selection, "ood_threshold": probe.meta.ood_threshold, "sets": rows,
            "held_out_family": held_family}


def markdown(name: str, r: dict) -> str:
    lines = [f"# Probe calibration report: {name}", "",
             f"P(I know) from the frozen model's hidden states (layers {r['layers']}: {r['selection']['chosen']}, L2 {r['l2']:g}); "
             "labels: the agent's greedy reply correct. AUROC and ECE (10 bins) of P from the prompt alone (before any token), "
             "of the token confidence alone (the reply's least likely token) and of the two fused (after the reply); "
             "familiar: share of queries within the training distance (the rest are passed on). Validation: out of fold, "
             "on the training queries.", "",
             "| set | n | forced acc. | AUROC prompt | ECE prompt | AUROC token conf. | AUROC fused | ECE fused | mean P | familiar |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s, row in r["sets"].items():
        lines.append(f"| {s} | {row['n']} | {row['forced_accuracy']:.3f} | {row['auroc']:.3f} | {row['ece']:.3f} | "
                     f"{row['auroc_token_confidence']:.3f} | {row['auroc_fused']:.3f} | {row['ece_fused']:.3f} | {row['mean_p']:.3f} | "
                     f"{row['familiar']:.3f} |")
    for fam, row in r["held_out_family"].items():
        lines.append(f"| {fam} (held out of the probe) | {row['n']} | - | {row['auroc']:.3f} | {row['ece']:.3f} | - | - | - | - | "
                     f"{row['familiar']:.3f} |")
    lines += ["", "Decisions (answer when P >= (1 - alpha) ** 0.5; probe + token confidence: P fused with the reply's least "
              "likely token, or that token alone on an unfamiliar query; prompt only: P, and an unfamiliar query is passed on), "
              "beside the trivial policies. "
              "Reward: 1 correct, 0 wrong, (1 - alpha) ** 0.5 rejected; F1: rejection against a wrong forced reply; "
              "per-agent oracle: the best fixed threshold on p(x) sampled on these queries (in domain) or on the forced "
              "correctness (elsewhere), chosen with hindsight.", "",
              "| set | alpha | policy | reward | answer rate | F1 |", "|---|---|---|---|---|---|"]
    for s in ("in_domain", "ood", "general"):
        for alpha, rows in r["sets"][s]["decisions"].items():
            for policy, row in rows.items():
                lines.append(f"| {s} | {alpha} | {policy} | {row['reward']:.3f} | {row['answer_rate']:.3f} | {row['f1']:.3f} |")
    return "\n".join(lines) + "\n"
