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
from swarm.assess.probe import Probe, candidate_layers, fit_probe
from swarm.prompts import SCENARIOS, Renderer, build_messages
from swarm.training.recipe import Recipe, as_recipe

GENERAL = ("bigbench/qa_wikidata", 100)  # general questions from outside the testbed: the task, how many


def probe_dir(recipe: Recipe) -> Path:
    return recipe.output_dir / "probe"


def train_probe(recipe: Recipe | str | os.PathLike[str] | dict) -> Path:
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
        correct = {name: _forced(model, tokenizer, items, out / f"forced-{name}.json", recipe, log) for name, items in sets.items()}
    with costs.measure("states"):
        from swarm.backends.hf_states import VERSION

        states = {name: _states(model, tokenizer, items, out / f"states-v{VERSION}-{name}.npy", log) for name, items in sets.items()}
    with costs.measure("held_out_competence"):
        from swarm.training.pipeline import sample_items

        p_true = np.array([r.p for r in sample_items(recipe, base_model, held, out / "competence-held-out.jsonl", log)])

    with costs.measure("fit"):
        probe, val_p = fit_probe(recipe.name, recipe.model, states["train"], targets, correct["train"], seed=recipe.seed,
                                 progress=lambda m: log.info("probe candidate", result=m))
        probe.save(out)
        log.info("probe fitted", layers=probe.meta.layers, l2=probe.meta.l2, chosen=probe.meta.selection["chosen"])
        held_family = _held_out_families(recipe, probe, states, targets, correct, sets)
    report = calibration_report(probe, val_p, states, correct, p_true, held_family, sets)
    report["costs"] = costs.stages
    (out / "calibration.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(markdown(recipe.name, report))
    log.info("probe done", directory=str(out), auroc_in_domain=report["sets"]["in_domain"]["auroc"],
             auroc_ood=report["sets"]["ood"]["auroc"])
    return out


def _general(recipe: Recipe) -> list:
    from swarm.tasks.loaders import load

    name, n = GENERAL
    return load(name, split="test", seed=recipe.seed)[:n]


def _prompts(tokenizer, items) -> list[list[int]]:
    renderer = Renderer(tokenizer)
    return [renderer.prompt(build_messages(i.prompt, 0.5, allow_reject=False))[0] for i in items]


def _forced(model, tokenizer, items, path: Path, recipe: Recipe, log) -> np.ndarray:
    """Whether the agent's greedy reply to each item is correct (cached in `path`)."""
    if path.exists():
        return np.array(json.loads(path.read_text()), dtype=bool)
    from swarm.tasks.verify import verify
    from swarm.training.generation import Prompter, generate

    log.info("forced replies", queries=len(items), set=path.stem)
    prompter = Prompter(tokenizer)
    res = generate(model, tokenizer, [prompter.render(i.prompt, 0.5, allow_reject=False) for i in items],
                   max_new_tokens=recipe.eval.max_new_tokens, batch_size=recipe.eval.batch_size)
    ok = [verify(i, r[0]) for i, r in zip(items, res.texts)]
    path.write_text(json.dumps(ok))
    return np.array(ok, dtype=bool)


def _states(model, tokenizer, items, path: Path, log) -> np.ndarray:
    if path.exists():
        return np.load(path)
    from swarm.backends.hf_states import prompt_states

    log.info("hidden states", queries=len(items), set=path.stem)
    states = prompt_states(model, _prompts(tokenizer, items), tokenizer.pad_token_id)
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


def calibration_report(probe: Probe, val_p, states, correct, p_true, held_family, sets) -> dict:
    alphas = list(SCENARIOS.values())
    rows = {}
    for name in ("in_domain", "ood", "general"):
        p = probe.p_know(states[name])
        familiar = probe.familiar(states[name])
        rows[name] = {"n": len(p), "forced_accuracy": round(float(correct[name].mean()), 4),
                      "auroc": round(auroc(p, correct[name]), 4), "ece": round(ece(p, correct[name]), 4),
                      "mean_p": round(float(p.mean()), 4), "familiar": round(float(familiar.mean()), 4),
                      "decisions": decision_table(np.where(familiar, p, 0.0), correct[name], alphas,
                                                  p_true=p_true if name == "in_domain" else None)}
    rows["validation"] = {"n": len(val_p), "forced_accuracy": round(float(correct["train"].mean()), 4),
                          "auroc": round(auroc(val_p, correct["train"]), 4), "ece": round(ece(val_p, correct["train"]), 4),
                          "mean_p": round(float(np.mean(val_p)), 4)}
    return {"agent": probe.meta.agent, "model": probe.meta.model, "layers": probe.meta.layers, "l2": probe.meta.l2,
            "selection": probe.meta.selection, "ood_threshold": probe.meta.ood_threshold, "sets": rows,
            "held_out_family": held_family}


def markdown(name: str, r: dict) -> str:
    lines = [f"# Probe calibration report: {name}", "",
             f"P(I know) from the frozen model's hidden states (layers {r['layers']}: {r['selection']['chosen']}, L2 {r['l2']:g}); "
             "labels: the agent's greedy reply correct. AUROC and ECE (10 bins) of P; familiar: share of queries within the "
             "training distance (the rest are passed on).", "",
             "| set | n | forced acc. | AUROC | ECE | mean P | familiar |", "|---|---|---|---|---|---|---|"]
    for s, row in r["sets"].items():
        lines.append(f"| {s} | {row['n']} | {row['forced_accuracy']:.3f} | {row['auroc']:.3f} | {row['ece']:.3f} | {row['mean_p']:.3f} | "
                     f"{row.get('familiar', 1.0):.3f} |")
    for fam, row in r["held_out_family"].items():
        lines.append(f"| {fam} (held out of the probe) | {row['n']} | - | {row['auroc']:.3f} | {row['ece']:.3f} | - | {row['familiar']:.3f} |")
    lines += ["", "Decisions (answer when P >= (1 - alpha) ** 0.5 and the query is familiar), beside the trivial policies. "
              "Reward: 1 correct, 0 wrong, (1 - alpha) ** 0.5 rejected; F1: rejection against a wrong forced reply; "
              "per-agent oracle: the best fixed threshold on p(x) sampled on these queries (in domain) or on the forced "
              "correctness (elsewhere), chosen with hindsight.", "",
              "| set | alpha | policy | reward | answer rate | F1 |", "|---|---|---|---|---|---|"]
    for s in ("in_domain", "ood", "general"):
        for alpha, rows in r["sets"][s]["decisions"].items():
            for policy, row in rows.items():
                lines.append(f"| {s} | {alpha} | {policy} | {row['reward']:.3f} | {row['answer_rate']:.3f} | {row['f1']:.3f} |")
    return "\n".join(lines) + "\n"
