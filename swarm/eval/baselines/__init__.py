"""Baselines: centralized routers (one agent per query) and driver-side cascades."""

from swarm.eval.baselines.cascades import AutoMix, DriverCascade, FrugalGPT
from swarm.eval.baselines.learned import FORCRouter, KNNRouter, MFRouter
from swarm.eval.baselines.simple import Largest, Oracle, Random, Smallest

__all__ = ["AutoMix", "DriverCascade", "FORCRouter", "FrugalGPT", "KNNRouter", "Largest", "MFRouter", "Oracle", "Random", "Smallest"]
