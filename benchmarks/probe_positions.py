"""Where and when a probe should read: which positions of the prompt, and how many generated tokens.

For each agent of the quick ladder but the last (its probe already fitted by `swarm probe
recipes/<rung>.yaml` into results/training/<rung>/probe, whose training queries, competence labels
and greedy correctness it reuses), the agent greedily generates k = 0, 2, 4, 8, 16 tokens of its
answer, and a probe (logistic regression on every layer, fitted to p(x), the better of two L2
weights) reads the hidden states at one of three positions: the last token, the mean over the
prompt (and the k tokens), or both side by side (what `swarm.backends.hf_states` reads, at k = 0).
Each cell is the 5-fold out-of-fold AUROC against the greedy reply being right, beside the
trivial reading of the same replies, the reply's least likely token (the `confidence` policy's
signal, available only once the whole reply exists). Deciding later costs k generated tokens per
rejection; the table says what they buy.

Run:  python benchmarks/probe_positions.py [--probes results/training]   (about 3 minutes on 2 cores)
Writes benchmarks/results/probe_positions.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("SWARM_LOG_LEVEL", "warning")
ROOT = Path(__file__).resolve().parent.parent
RUNGS = ("tb-xs", "tb-s", "tb-m")
TOKENS = (0, 2, 4, 8, 16)
POSITIONS = ("last token", "mean", "last token + mean")


def features(model, tokenizer, rows: list[list[int]], tokens: tuple[int, ...]) -> dict[tuple[int, str], np.ndarray]:
    """(k, position) -> [queries, layers + 1, width] after k greedy tokens."""
    import torch

    from swarm.backends.hf_generation import left_pad

    out: dict[tuple[int, str], list] = {(k, p): [] for k in tokens for p in POSITIONS}
    for start in range(0, len(rows), 100):
        ids, mask = left_pad(rows[start:start + 100], tokenizer.pad_token_id, model.device)
        with torch.inference_mode():
            seq = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max(tokens), min_new_tokens=max(tokens),
                                 do_sample=False, pad_token_id=tokenizer.pad_token_id)
            full = torch.cat([mask, torch.ones(seq.shape[0], seq.shape[1] - ids.shape[1], dtype=mask.dtype)], dim=1)
            positions = (full.cumsum(-1) - 1).clamp(min=0)
            hidden = torch.stack(model(input_ids=seq, attention_mask=full, position_ids=positions,
                                       output_hidden_states=True).hidden_states, dim=1).float()
        prompt_len = ids.shape[1]
        for k in tokens:
            h, m = hidden[:, :, :prompt_len + k], full[:, None, :prompt_len + k, None].float()
            last, mean = h[:, :, -1], (h * m).sum(2) / m.sum(2)
            out[(k, "last token")].append(last.numpy())
            out[(k, "mean")].append(mean.numpy())
            out[(k, "last token + mean")].append(torch.cat([last, mean], dim=-1).numpy())
    return {key: np.concatenate(v) for key, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--probes", type=Path, default=ROOT / "results" / "training", help="where `swarm probe` fitted the rungs' probes")
    args = p.parse_args(argv)

    from swarm.assess.calibration import auroc
    from swarm.assess.probe import folds, out_of_fold_logits
    from swarm.eval.summary import write_summary
    from swarm.reproducible import pin_cpu_math
    from swarm.training import load_recipe
    from swarm.training.competence import read_table
    from swarm.training.generation import load_model, load_tokenizer
    from swarm.training.items import eval_items, training_items
    from swarm.training.probe import answer_prompts
    from swarm.testbed.models import testbed_model_dir

    pin_cpu_math(1)
    results: dict[str, dict] = {}
    for rung in RUNGS:
        out = args.probes / rung
        forced = out / "probe" / "forced-train.json"
        if not forced.is_file():
            print(f"error: {forced} is missing: run `swarm probe recipes/{rung}.yaml` first", file=sys.stderr)
            return 1
        recipe = load_recipe(ROOT / "recipes" / f"{rung}.yaml")
        train = training_items(recipe, eval_items(recipe))
        targets = np.array([r.p for r in read_table(out / "competence.jsonl")])
        cached = json.loads(forced.read_text())
        correct, low = np.array(cached["correct"], bool), np.array(cached["min_logprob"])
        model_dir = testbed_model_dir(recipe.model)
        tokenizer, model = load_tokenizer(model_dir), load_model(model_dir)
        print(f"{rung}: {len(train)} training queries, generating {max(TOKENS)} tokens each ...", flush=True)
        feats = features(model, tokenizer, answer_prompts(tokenizer, train), TOKENS)
        parts = folds(len(train), 5, 0)
        cells = {}
        for (k, position), x in feats.items():
            layers = list(range(x.shape[1]))
            cells[f"{k}|{position}"] = round(max(auroc(out_of_fold_logits(x, targets, layers, l2, parts), correct)
                                                 for l2 in (1e-3, 1e-2)), 4)
        results[rung] = {"queries": len(train), "auroc": cells, "token_confidence_auroc": round(auroc(low, correct), 4)}

    header = "| agent | generated tokens | " + " | ".join(POSITIONS) + " | token confidence (whole reply) |"
    lines = [header, "|" + "---|" * (len(POSITIONS) + 3)]
    for rung, r in results.items():
        for k in TOKENS:
            lines.append(f"| {rung} | {k} | " + " | ".join(f"{r['auroc'][f'{k}|{p}']:.3f}" for p in POSITIONS)
                         + f" | {r['token_confidence_auroc']:.3f} |")
    table = "\n".join(lines)
    print(table)
    print(write_summary(ROOT / "benchmarks" / "results" / "probe_positions.json", ROOT, table, {"agents": results},
                        program=__file__, args=argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
