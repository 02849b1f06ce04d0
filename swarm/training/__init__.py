"""Self-awareness training: teach an agent's model when to say "I don't know!".

`train(recipe)` runs one agent's pipeline (competence sampling, SFT labels per scenario, SFT,
GRPO, reports, model card) from a YAML recipe (`swarm train RECIPE.yaml`); see swarm.training.recipe
for the schema and the README's "Self-awareness training" section for measured numbers.
"""

from swarm.training.labels import build_sft_data, should_answer
from swarm.training.pipeline import TrainResult, train
from swarm.training.recipe import Recipe, RecipeError, load_recipe, parse_recipe
from swarm.training.rl import is_clean_rejection, optimal_answer, reward

__all__ = [
    "Recipe", "RecipeError", "TrainResult", "build_sft_data", "is_clean_rejection", "load_recipe", "optimal_answer",
    "parse_recipe", "reward", "should_answer", "train",
]
