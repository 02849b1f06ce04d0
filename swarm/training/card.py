"""Training cost per stage (wall time, CPU seconds, tokens generated), kept in costs.json across
interruptions, and the model card written beside the trained weights: the recipe, the data
sizes, the cost (which the paper did not report) and the before/after numbers."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path

from swarm.training.recipe import Recipe
from swarm.training.report import markdown


class Costs:
    """Per-stage cost, accumulated over every run of the stage (a resumed stage adds to it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stages: dict[str, dict] = json.loads(path.read_text()) if path.exists() else {}

    @contextmanager
    def measure(self, stage: str):
        """Times the block; the block adds tokens with `add(stage, tokens)`."""
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            row = self.stages.setdefault(stage, {"wall_s": 0.0, "cpu_s": 0.0, "tokens_generated": 0})
            row["wall_s"] = round(row["wall_s"] + time.perf_counter() - wall, 2)
            row["cpu_s"] = round(row["cpu_s"] + time.process_time() - cpu, 2)
            self.save()

    def add(self, stage: str, tokens: int) -> None:
        row = self.stages.setdefault(stage, {"wall_s": 0.0, "cpu_s": 0.0, "tokens_generated": 0})
        row["tokens_generated"] += int(tokens)
        self.save()

    def set_tokens(self, stage: str, tokens: int) -> None:
        row = self.stages.setdefault(stage, {"wall_s": 0.0, "cpu_s": 0.0, "tokens_generated": 0})
        row["tokens_generated"] = int(tokens)
        self.save()

    def total(self) -> dict:
        keys = ("wall_s", "cpu_s", "tokens_generated")
        return {k: round(sum(s.get(k, 0) for s in self.stages.values()), 2) for k in keys}

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.stages, indent=2))


def write_card(model_dir: Path, recipe: Recipe, data: dict, costs: Costs, reports: dict[str, dict]) -> Path:
    """README.md (the card) and training.json (the same, machine-readable) in `model_dir`."""
    recipe_json = json.loads(recipe.model_dump_json())
    record = {"recipe": recipe_json, "data": data, "cost": {"stages": costs.stages, "total": costs.total()}, "reports": reports}
    (model_dir / "training.json").write_text(json.dumps(record, indent=2))
    total = costs.total()
    cost_rows = "\n".join(f"| {stage} | {c['wall_s']:.1f} | {c['cpu_s']:.1f} | {c['tokens_generated']:,} |" for stage, c in costs.stages.items())
    text = f"""# {recipe.name}: self-aware agent

Trained by `swarm train` from `{recipe.model}`: competence sampling (N = {recipe.competence.samples}), SFT
({recipe.sft.method}), then {"GRPO (gamma = " + str(recipe.rl.gamma) + ")" if recipe.rl.enabled else "no RL"}. Scenarios
(alpha): {", ".join(f"{a:.2f}" for a in recipe.scenarios)}. Point an agent's YAML at this directory with
`policy: {{kind: self_aware}}`.

## Data
```json
{json.dumps(data, indent=2)}
```

## Training cost (this machine; CPU seconds are the process's, all threads)
| stage | wall s | CPU s | tokens generated |
|---|---|---|---|
{cost_rows}
| total | {total['wall_s']:.1f} | {total['cpu_s']:.1f} | {int(total['tokens_generated']):,} |

{markdown(recipe.name, reports).replace("# Self-awareness report", "## Before and after")}
## Recipe
```json
{json.dumps(recipe_json, indent=2)}
```
"""
    (model_dir / "README.md").write_text(text)
    return model_dir / "README.md"
