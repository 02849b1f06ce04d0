"""The CPU testbed: a ladder of small models trained here on procedural task families."""

from swarm.testbed.ladder import LadderReport, ModelReport, build_ladder
from swarm.tasks.testbed_families import FAMILIES, IN_DOMAIN_FAMILIES, OOD_FAMILIES, held_out

__all__ = ["FAMILIES", "IN_DOMAIN_FAMILIES", "OOD_FAMILIES", "LadderReport", "ModelReport", "build_ladder", "held_out"]
