"""The probe: P(I know | query) from the frozen model's hidden states of the prompt.

A logistic regression (torch, L-BFGS, L2) on standardised states of chosen layers, fitted to the
competence file's p(x) (soft labels), then Platt-scaled on out-of-fold scores against the agent's
greedy correctness (what it will actually reply). A second, two-feature logistic regression fuses
the probe's P with the reply's least likely token (the `confidence` policy's min_token signal):
once an agent has generated an answer it can still pass the query on (`fused`). Beside it, a training-free unfamiliarity signal:
the distance from a query's states to its k-th nearest training query (in a PCA basis fitted on
the training states); beyond the distance that 99% of training queries stay within, the agent
does not trust its probe and passes the query on.

Saved as `probe.safetensors` (arrays) and `probe.json` (everything else) in one directory.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from swarm.errors import SwarmError

FILES = ("probe.json", "probe.safetensors")
OOD_K = 10  # the neighbour whose distance measures unfamiliarity
OOD_QUANTILE = 0.99  # training queries within the threshold
OOD_DIMS = 64  # PCA basis of the unfamiliarity signal


@dataclass
class ProbeMeta:
    agent: str
    model: str
    layers: list[int]  # indices into the hidden states (0: embeddings)
    l2: float
    ood_threshold: float
    platt: tuple[float, float]  # P = sigmoid(a * logit + b)
    hidden: int  # states per layer
    n_layers: int  # hidden states returned (layers + 1)
    trained_on: dict = field(default_factory=dict)  # queries, families, label source
    selection: dict = field(default_factory=dict)  # the candidates measured and the choice
    fusion: dict = field(default_factory=dict)  # mean, scale, weight (2 each), bias: P and min-token log P -> P
    regions: str = ""  # the digest of the region map (swarm.assess.regions) `val_region` is under; "": none


class Probe:
    def __init__(self, meta: ProbeMeta, arrays: dict[str, np.ndarray]) -> None:
        self.meta = meta
        self.mean, self.scale = arrays["mean"], arrays["scale"]
        self.weight, self.bias = arrays["weight"], float(arrays["bias"][0])
        self.basis, self.bank = arrays["basis"], arrays["bank"]
        # the agent's validation data (out-of-fold P and greedy correctness on its training queries): its value curve's input
        self.val_p, self.val_correct = arrays["val_p"], arrays["val_correct"]
        self.val_min_logprob = arrays.get("val_min_logprob")  # the least likely token of each greedy reply
        self.val_region = arrays.get("val_region")  # the region of each validation query, under the map meta.regions names
        if (self.val_region is None) != (not meta.regions) or (self.val_region is not None and len(self.val_region) != len(self.val_p)):
            raise SwarmError(f"probe of agent {meta.agent!r}: its validation regions do not match its validation data or its region map")

    def set_regions(self, regions, texts) -> None:
        """Record the region of each validation query (`texts`, in the order of the validation data) under
        the map `regions` (a `swarm.assess.regions.RegionMap`): what the agent's value curve per region reads."""
        if len(texts) != len(self.val_p):
            raise SwarmError(f"{len(texts)} validation texts for {len(self.val_p)} validation queries")
        self.val_region = regions.regions_of(list(texts)).astype(np.int16)
        self.meta.regions = regions.digest

    # -- reading ----------------------------------------------------------------------------
    def _x(self, states: np.ndarray) -> np.ndarray:
        if states.ndim != 3 or states.shape[1] != self.meta.n_layers or states.shape[2] != self.meta.hidden:
            raise SwarmError(f"probe of agent {self.meta.agent!r} reads states of shape (n, {self.meta.n_layers}, "
                             f"{self.meta.hidden}), got {tuple(states.shape)}: was it trained on another model?")
        return (_select(states, self.meta.layers) - self.mean) / self.scale

    def logits(self, states: np.ndarray) -> np.ndarray:
        return self._x(states) @ self.weight + self.bias

    def p_know(self, states: np.ndarray) -> np.ndarray:
        """Calibrated P(my greedy reply is correct) per query."""
        a, b = self.meta.platt
        return _sigmoid(a * self.logits(states) + b)

    def fused(self, p_know, min_logprob) -> np.ndarray:
        """P(my reply is correct) once the reply exists: the probe's P with the reply's least likely token's log P."""
        f = self.meta.fusion
        if not f:
            raise SwarmError(f"probe of agent {self.meta.agent!r} has no token-confidence fusion (fit it again with `swarm probe`)")
        z = (_fusion_x(p_know, min_logprob) - np.asarray(f["mean"])) / np.asarray(f["scale"])
        return _sigmoid(z @ np.asarray(f["weight"]) + f["bias"])

    def token_p(self, min_logprob) -> np.ndarray:
        """P(my reply is correct) from the reply's least likely token alone: what an agent trusts on a
        query too unfamiliar for its probe (calibrated on the validation data)."""
        t = self.meta.fusion["token_only"]
        return _sigmoid(np.clip(np.asarray(min_logprob, dtype=np.float64), -20.0, 0.0) * t["weight"] + t["bias"])

    def best_fused(self, p_know) -> np.ndarray:
        """The highest fused P any reply could bring (the fusion is monotone in the token's log P, so
        one end of its range: certain tokens, unless the fit weighs them the other way)."""
        p = np.asarray(p_know, dtype=np.float64)
        return np.maximum(self.fused(p, np.zeros_like(p)), self.fused(p, np.full_like(p, -20.0)))

    def best_token_p(self) -> float:
        """The highest P the reply's token alone could bring (see best_fused)."""
        return float(max(self.token_p(0.0), self.token_p(-20.0)))

    @property
    def val_fused(self) -> np.ndarray:
        return self.fused(self.val_p, self.val_min_logprob)

    def distance(self, states: np.ndarray) -> np.ndarray:
        """Unfamiliarity: distance to the k-th nearest training query (unit vectors in the PCA basis)."""
        return _kth_distance(_unit(self._x(states) @ self.basis), self.bank, OOD_K)

    @property
    def accuracy(self) -> float:
        """The share of its validation queries the model got right (0 with none): its prior, for a query the
        probe cannot judge."""
        return float(np.mean(self.val_correct)) if len(self.val_correct) else 0.0

    def familiar(self, states: np.ndarray) -> np.ndarray:
        return self.distance(states) <= self.meta.ood_threshold

    # -- files ------------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        from safetensors.numpy import save_file

        directory.mkdir(parents=True, exist_ok=True)
        arrays = {"mean": self.mean, "scale": self.scale, "weight": self.weight, "bias": np.array([self.bias], np.float32),
                  "basis": self.basis, "bank": self.bank, "val_p": self.val_p, "val_correct": self.val_correct}
        if self.val_min_logprob is not None:
            arrays["val_min_logprob"] = self.val_min_logprob
        if self.val_region is not None:
            arrays["val_region"] = self.val_region
        # safetensors writes an array's buffer as if it were C-ordered: a transposed view would come back scrambled
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(directory / "probe.safetensors"))
        (directory / "probe.json").write_text(json.dumps(asdict(self.meta), indent=2))

    @classmethod
    def load(cls, directory: Path | str) -> Probe:
        from safetensors.numpy import load_file

        directory = Path(directory)
        missing = [f for f in FILES if not (directory / f).is_file()]
        if missing:
            raise SwarmError(f"probe directory {str(directory)!r} lacks {', '.join(missing)} (train it with `swarm probe RECIPE`)")
        try:
            meta = json.loads((directory / "probe.json").read_text())
            meta["platt"] = tuple(meta["platt"])
            arrays = load_file(str(directory / "probe.safetensors"))
            return cls(ProbeMeta(**meta), arrays)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise SwarmError(f"probe in {str(directory)!r} cannot be read: {exc}") from None


# -- fitting -----------------------------------------------------------------------------------

def _select(states: np.ndarray, layers: list[int]) -> np.ndarray:
    return states[:, layers, :].reshape(states.shape[0], -1)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _kth_distance(queries: np.ndarray, bank: np.ndarray, k: int, skip_self: bool = False) -> np.ndarray:
    d = np.sqrt(np.maximum(2.0 - 2.0 * queries @ bank.T, 0.0))
    k = min(k + skip_self, bank.shape[0]) - 1
    return np.partition(d, k, axis=1)[:, k]


def _fusion_x(p_know, min_logprob) -> np.ndarray:
    p, low = np.broadcast_arrays(np.asarray(p_know, dtype=np.float64), np.asarray(min_logprob, dtype=np.float64))
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.stack([np.log(p / (1 - p)), np.clip(low, -20.0, 0.0)], axis=-1)


def fit_fusion(probe: Probe, min_logprob: np.ndarray) -> None:
    """Fit the probe's token-confidence fusion on its validation data (out-of-fold P, the greedy
    replies' least likely token, their correctness) and keep `min_logprob` as validation data."""
    x = _fusion_x(probe.val_p, min_logprob)
    mean, scale = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6)
    w, b = logistic((x - mean) / scale, probe.val_correct.astype(np.float64), l2=1e-3)
    t, tb = logistic(x[:, 1:], probe.val_correct.astype(np.float64), l2=1e-3)
    probe.meta.fusion = {"mean": mean.tolist(), "scale": scale.tolist(), "weight": w.astype(float).tolist(), "bias": b,
                         "token_only": {"weight": float(t[0]), "bias": tb}}
    probe.val_min_logprob = np.asarray(min_logprob, dtype=np.float32)


def logistic(x: np.ndarray, y: np.ndarray, l2: float, iters: int = 200) -> tuple[np.ndarray, float]:
    """Weights and bias minimising mean binary cross-entropy against soft targets `y` plus l2 * |w|^2."""
    import torch

    X, Y = torch.from_numpy(x.astype(np.float64)), torch.from_numpy(y.astype(np.float64))
    w = torch.zeros(X.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=iters, line_search_fn="strong_wolfe")

    def loss_fn():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(X @ w + b, Y) + l2 * (w @ w)
        loss.backward()
        return loss

    opt.step(loss_fn)
    return w.detach().numpy().astype(np.float32), float(b.detach()[0])


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    return mean.astype(np.float32), np.where(scale < 1e-6, 1.0, scale).astype(np.float32)


def folds(n: int, k: int, seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return [order[i::k] for i in range(k)]


def out_of_fold_logits(states: np.ndarray, targets: np.ndarray, layers: list[int], l2: float, parts: list[np.ndarray]) -> np.ndarray:
    """Each query's logit from a probe fitted without its fold."""
    x = _select(states, layers)
    out = np.zeros(len(x), dtype=np.float64)
    for test in parts:
        train = np.setdiff1d(np.arange(len(x)), test)
        mean, scale = _standardise(x[train])
        w, b = logistic((x[train] - mean) / scale, targets[train], l2)
        out[test] = ((x[test] - mean) / scale) @ w + b
    return out


def candidate_layers(n_layers: int) -> dict[str, list[int]]:
    """The layer sets measured: each layer alone, the middle third, and all of them."""
    out = {f"layer {i}": [i] for i in range(n_layers)}
    third = max(1, n_layers // 3)
    out["middle third"] = list(range(third, min(n_layers, 2 * third + 1)))
    out["all"] = list(range(n_layers))
    return out


def platt(logits: np.ndarray, correct: np.ndarray) -> tuple[float, float]:
    """(a, b) with sigmoid(a * logit + b) calibrated against 0/1 `correct`."""
    a_b_w, bias = logistic(logits[:, None], correct.astype(np.float64), l2=1e-4)
    return float(a_b_w[0]), bias


def fit_probe(agent: str, model: str, states: np.ndarray, targets: np.ndarray, correct: np.ndarray, seed: int = 0,
              l2s: tuple[float, ...] = (1e-3, 1e-2, 1e-1), k: int = 5, layer_sets: dict[str, list[int]] | None = None,
              progress=None) -> tuple[Probe, np.ndarray]:
    """Choose the layers and L2 by k-fold AUROC against `correct`, fit on everything, Platt-scale on
    the out-of-fold logits; also returns the out-of-fold calibrated P (the agent's validation scores)."""
    from swarm.assess.calibration import auroc

    parts = folds(len(states), k, seed)
    scores: dict[str, dict[str, float]] = {}
    best = (-1.0, None, None, None)
    layer_sets = layer_sets or candidate_layers(states.shape[1])
    for name, layers in layer_sets.items():
        scores[name] = {}
        for l2 in l2s:
            oof = out_of_fold_logits(states, targets, layers, l2, parts)
            score = auroc(oof, correct)
            scores[name][f"{l2:g}"] = round(score, 4)
            if score > best[0]:
                best = (score, name, l2, oof)
            if progress:
                progress(f"{name}, l2 {l2:g}: out-of-fold AUROC {score:.3f}")
    _, name, l2, oof = best
    layers = layer_sets[name]
    x = _select(states, layers)
    mean, scale = _standardise(x)
    z = (x - mean) / scale
    w, b = logistic(z, targets, l2)
    a, c = platt(oof, correct)
    dims = min(OOD_DIMS, z.shape[1], z.shape[0])
    basis = np.linalg.svd(z - z.mean(axis=0), full_matrices=False)[2][:dims].T.astype(np.float32)
    bank = _unit(z @ basis).astype(np.float32)
    own = _kth_distance(bank, bank, OOD_K, skip_self=True)
    meta = ProbeMeta(agent=agent, model=model, layers=layers, l2=l2, ood_threshold=float(np.quantile(own, OOD_QUANTILE)),
                     platt=(a, c), hidden=states.shape[2], n_layers=states.shape[1],
                     selection={"chosen": name, "l2": l2, "out_of_fold_auroc": scores})
    val_p = _sigmoid(a * oof + c).astype(np.float32)
    probe = Probe(meta, {"mean": mean, "scale": scale, "weight": w, "bias": np.array([b], np.float32), "basis": basis, "bank": bank,
                         "val_p": val_p, "val_correct": np.asarray(correct, dtype=np.float32)})
    return probe, val_p
