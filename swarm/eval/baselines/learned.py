"""Centralized learned routers over all-MiniLM-L6-v2 query embeddings, trained on every agent's
forced-answer correctness on the training items only. Each predicts P(agent answers correctly)
for every agent and picks the agent with the highest predicted utility P - alpha x cost.

- KNNRouter: P = share of correct answers among the k nearest training queries (cosine).
- FORCRouter (FORC style): one MLP with an output per agent (multi-label), sklearn's MLPClassifier,
  its L2 penalty chosen by 5-fold cross-validated log-loss. (sklearn's `early_stopping` scores the
  multi-label MLP by exact-match accuracy on 10% of the data; on a 2-agent pool it stopped after
  14 iterations, predicted the cheap agent always right and routed everything to it: utility 0.09
  against kNN's 0.50.)
- MFRouter (RouteLLM's matrix factorisation, generalised from a strong/weak pair to K agents):
  logit P = <v_agent, W e_query> + b_agent, fitted with logistic loss in torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from swarm.eval.embed import embed
from swarm.tasks.base import TaskItem

Labels = Mapping[str, Mapping[str, bool]]


def label_matrix(items: Sequence[TaskItem], labels: Labels, agents: Sequence[str]) -> np.ndarray:
    return np.array([[float(labels[i.id][a]) for a in agents] for i in items], dtype=np.float32)


class _UtilityRouter:
    agents: list[str]

    def fit(self, items: Sequence[TaskItem], labels: Labels, agents: Sequence[str]):
        self.agents = list(agents)
        self._fit(embed([i.prompt for i in items]), label_matrix(items, labels, self.agents))
        return self

    def predict(self, items: Sequence[TaskItem]) -> np.ndarray:
        """(items, agents) predicted probability of a correct answer."""
        return self._predict(embed([i.prompt for i in items]))

    def choose(self, items, alpha, agents):
        if list(agents) != self.agents:
            raise ValueError(f"router trained on agents {self.agents}, asked to route among {list(agents)}: retrain it")
        p = self.predict(items)
        costs = np.array([agents[a] for a in self.agents])
        return [self.agents[k] for k in np.argmax(p - alpha * costs, axis=1)]

    def _fit(self, x: np.ndarray, y: np.ndarray) -> None: ...

    def _predict(self, x: np.ndarray) -> np.ndarray: ...


class KNNRouter(_UtilityRouter):
    def __init__(self, k: int = 16) -> None:
        self.k = k

    def _fit(self, x, y):
        from sklearn.neighbors import NearestNeighbors

        self.y = y
        self.nn = NearestNeighbors(n_neighbors=min(self.k, len(x)), metric="cosine").fit(x)

    def _predict(self, x):
        _, idx = self.nn.kneighbors(x)
        return self.y[idx].mean(axis=1)


class FORCRouter(_UtilityRouter):
    PENALTIES = (0.01, 0.1, 1.0, 3.0)  # L2 strengths tried by cross-validation

    def __init__(self, hidden: int = 128, seed: int = 0) -> None:
        self.hidden, self.seed = hidden, seed

    def _mlp(self, penalty: float):
        from sklearn.neural_network import MLPClassifier

        return MLPClassifier((self.hidden,), alpha=penalty, max_iter=300, random_state=self.seed)

    def _cv_loss(self, x, y, penalty: float) -> float:
        from sklearn.model_selection import KFold

        losses = []
        for tr, va in KFold(5, shuffle=True, random_state=self.seed).split(x):
            p = np.clip(self._mlp(penalty).fit(x[tr], y[tr].astype(int)).predict_proba(x[va]), 1e-4, 1 - 1e-4)
            losses.append(-np.mean(y[va] * np.log(p) + (1 - y[va]) * np.log(1 - p)))
        return float(np.mean(losses))

    def _fit(self, x, y):
        import warnings

        from sklearn.exceptions import ConvergenceWarning

        self.constant = {k: float(y[0, k]) for k in range(y.shape[1]) if y[:, k].min() == y[:, k].max()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.cv_loss = {pen: self._cv_loss(x, y, pen) for pen in self.PENALTIES} if len(x) >= 10 else {1.0: 0.0}
            self.penalty = min(self.cv_loss, key=self.cv_loss.get)
            self.mlp = self._mlp(self.penalty).fit(x, y.astype(int))

    def _predict(self, x):
        p = np.asarray(self.mlp.predict_proba(x), dtype=np.float32)
        for k, v in self.constant.items():  # an agent always (or never) right in training
            p[:, k] = v
        return p


class MFRouter(_UtilityRouter):
    def __init__(self, dim: int = 32, epochs: int = 300, lr: float = 0.01, weight_decay: float = 1e-4, seed: int = 0) -> None:
        self.dim, self.epochs, self.lr, self.weight_decay, self.seed = dim, epochs, lr, weight_decay, seed

    def _fit(self, x, y):
        import torch

        g = torch.Generator().manual_seed(self.seed)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        self.w = (torch.randn(x.shape[1], self.dim, generator=g) * 0.05).requires_grad_()
        self.v = (torch.randn(y.shape[1], self.dim, generator=g) * 0.05).requires_grad_()
        self.b = torch.zeros(y.shape[1], requires_grad=True)
        opt = torch.optim.Adam([self.w, self.v, self.b], lr=self.lr, weight_decay=self.weight_decay)
        for _ in range(self.epochs):
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(self._logits(xt), yt)
            loss.backward()
            opt.step()

    def _logits(self, xt):
        return (xt @ self.w) @ self.v.T + self.b

    def _predict(self, x):
        import torch

        with torch.no_grad():
            return torch.sigmoid(self._logits(torch.from_numpy(x))).numpy()
