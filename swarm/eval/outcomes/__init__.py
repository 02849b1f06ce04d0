"""Outcome matrices: per query, each real model's correctness, answer and dollar cost, read from
RouterBench's CSV files or the generic JSON-lines format (`matrix`), replayed as a swarm
(`replay`), split by domain (`split`). `swarm outcomes` is the command."""

from swarm.eval.outcomes.matrix import ModelOutcome, OutcomeRow, model_names, outcomes_json_schema, read_outcomes, write_outcomes
from swarm.eval.outcomes.replay import ReplaySwarm, agent_name, mean_dollars, replay_swarm
from swarm.eval.outcomes.routerbench import read_routerbench
from swarm.eval.outcomes.split import stratified_split

__all__ = ["ModelOutcome", "OutcomeRow", "ReplaySwarm", "agent_name", "mean_dollars", "model_names", "outcomes_json_schema",
           "read_outcomes", "read_routerbench", "replay_swarm", "stratified_split", "write_outcomes"]
