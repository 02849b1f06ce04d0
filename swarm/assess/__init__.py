"""Calibrated self-assessment that leaves the model untouched: a probe on the frozen model's hidden
states of the prompt estimates P(I know | query) (`probe`), read in one prefill
(`swarm.backends.hf_states`); value curves make each agent's answer bar know the pool behind it
(`curves`); `calibration` holds the report's measures (AUROC, ECE, the trivial baselines). The
command that fits a probe, `swarm probe RECIPE`, is `swarm.training.probe`."""
