"""Evaluation: metrics, the harness that runs methods on a real swarm, baselines, experiments."""
