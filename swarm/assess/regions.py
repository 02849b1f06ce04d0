"""A region map: a few clusters of query embeddings that every agent uses alike, so that value
curves can be given per region (`swarm.assess.curves.region_curves`).

The map is fitted on query texts' embeddings only (k-means, scikit-learn's, seeded), never on
anyone's outcomes: it is a convention the agents share, like the grid of alphas, not knowledge of
one another. k = 1 is one region: the curves of old.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RegionMap:
    centroids: np.ndarray  # (k, d)

    @property
    def k(self) -> int:
        return len(self.centroids)

    @classmethod
    def fit(cls, x: np.ndarray, k: int, seed: int = 0) -> RegionMap:
        x = np.asarray(x, dtype=np.float64)
        if not 1 <= k <= len(x):
            raise ValueError(f"regions: k must be 1 to {len(x)} (the number of queries to fit on), not {k}")
        if k == 1:
            return cls(x.mean(axis=0, keepdims=True))
        from sklearn.cluster import KMeans

        return cls(KMeans(k, random_state=seed, n_init=10).fit(x).cluster_centers_)

    def assign(self, x: np.ndarray) -> np.ndarray:
        """The region (0..k-1) of each row of `x`: its nearest centroid."""
        x = np.asarray(x, dtype=np.float64)
        d = (x * x).sum(axis=1)[:, None] - 2 * x @ self.centroids.T + (self.centroids ** 2).sum(axis=1)[None, :]
        return d.argmin(axis=1)
