"""A region map: a few clusters of query embeddings that every agent uses alike, so that value
curves can be given per region (`swarm.assess.curves.region_curves`).

The map is fitted on query texts' embeddings only (k-means, scikit-learn's, seeded), never on
anyone's outcomes: it is a convention the agents share, like the grid of alphas, not knowledge of
one another. k = 1 is one region: the curves of old.

In a launched swarm the map is a file the topology names (`regions:`; `swarm regions fit` writes
one): the centroids and the encoder's name, in a NumPy .npz read without pickle. Its `digest`
names it on the wire: an agent reads a peer's region curves, and a query's region, only under the
map it holds itself.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from swarm.assess.encoder import ENCODER, encode, encode_all  # the one encoder a map may name
from swarm.errors import SwarmError
from swarm.protocol import MAX_REGIONS  # what the wire carries (Member.region_curves, Query.region)



@dataclass(frozen=True)
class RegionMap:
    centroids: np.ndarray  # (k, d)
    encoder: str = ENCODER

    @property
    def k(self) -> int:
        return len(self.centroids)

    @property
    def digest(self) -> str:
        """The map's name on the wire: a hash of its encoder and centroids (as float32)."""
        h = hashlib.sha256(self.encoder.encode())
        h.update(np.ascontiguousarray(self.centroids, dtype=np.float32).tobytes())
        return h.hexdigest()[:16]

    @classmethod
    def fit(cls, x: np.ndarray, k: int, seed: int = 0) -> RegionMap:
        x = np.asarray(x, dtype=np.float64)
        if not 1 <= k <= len(x):
            raise ValueError(f"regions: k must be 1 to {len(x)} (the number of queries to fit on), not {k}")
        if k == 1:
            return cls(x.mean(axis=0, keepdims=True))
        try:
            from sklearn.cluster import KMeans
        except ImportError:
            raise SwarmError("fitting a region map needs scikit-learn: pip install -c constraints.txt -e '.[eval]'") from None
        return cls(KMeans(k, random_state=seed, n_init=10).fit(x).cluster_centers_)

    @classmethod
    def fit_texts(cls, texts: Sequence[str], k: int, seed: int = 0) -> tuple[RegionMap, np.ndarray]:
        """The map of `texts`' embeddings (k at most MAX_REGIONS, what the wire carries), and the region of each text."""
        if not 1 <= k <= MAX_REGIONS:
            raise ValueError(f"regions: k must be 1 to {MAX_REGIONS}, not {k}")
        x = encode_all(list(texts))
        fitted = cls(cls.fit(x, k, seed).centroids.astype(np.float32))
        return fitted, fitted.assign(x)

    def assign(self, x: np.ndarray) -> np.ndarray:
        """The region (0..k-1) of each row of `x`: its nearest centroid."""
        x = np.asarray(x, dtype=np.float64)
        d = (x * x).sum(axis=1)[:, None] - 2 * x @ self.centroids.T + (self.centroids ** 2).sum(axis=1)[None, :]
        return d.argmin(axis=1)

    def regions_of(self, texts: Sequence[str]) -> np.ndarray:
        """The region of each text, embedded with the map's encoder (nothing kept in memory: a serving agent's call)."""
        return self.assign(encode(list(texts))) if texts else np.zeros(0, dtype=np.int64)

    # -- files ------------------------------------------------------------------------------
    def save(self, path: Path | str) -> Path:
        path = Path(path)
        with path.open("wb") as f:
            np.savez(f, centroids=np.asarray(self.centroids, dtype=np.float32), encoder=np.array(self.encoder))
        return path

    @classmethod
    def load(cls, path: Path | str) -> RegionMap:
        """A map file, checked: a clear error naming the file and what is wrong with it."""
        path = Path(path)
        where = f"region map {str(path)!r}"
        if not path.is_file():
            raise SwarmError(f"{where} is not a file (write one with `swarm regions fit`)")
        try:
            with np.load(path, allow_pickle=False) as z:
                missing = [key for key in ("centroids", "encoder") if key not in z.files]
                if missing:
                    raise SwarmError(f"{where} lacks {', '.join(missing)} (write it with `swarm regions fit`)")
                centroids, encoder = z["centroids"], str(z["encoder"])
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise SwarmError(f"{where} cannot be read as a .npz file: {str(exc)[:200]}") from None
        if encoder != ENCODER:
            raise SwarmError(f"{where} names encoder {encoder[:80]!r}; this version embeds with {ENCODER!r} only")
        if centroids.ndim != 2 or not 1 <= len(centroids) <= MAX_REGIONS or centroids.shape[1] != 384:
            raise SwarmError(f"{where}: centroids of shape {tuple(centroids.shape)}, expected (k, 384) with k 1 to {MAX_REGIONS}")
        if centroids.dtype.kind != "f" or not np.isfinite(centroids).all():
            raise SwarmError(f"{where}: centroids must be finite floats")
        return cls(centroids.astype(np.float32), encoder)


MAX_QUERIES_BYTES = 256 << 20  # a queries file larger than this is not the right file


def read_queries(path: Path | str) -> list[str]:
    """The query texts to fit a map on: JSON lines whose objects carry a "query" (an outcome matrix, a replay
    table) or "prompt" field, or plain text, one query a line. Every problem names the file and the line."""
    from swarm.jsonlines import json_lines

    path = Path(path)
    where = f"queries file {str(path)!r}"
    if not path.is_file():
        raise SwarmError(f"{where} is not a file")

    def fail(line: int, problem: str) -> SwarmError:
        return SwarmError(f"{where}, line {line}: {problem}")

    out: list[str] = []
    with path.open("rb") as fh:
        first = fh.read(1)
        fh.seek(0)
        if first == b"{":
            for line, row in json_lines(fh, fail, MAX_QUERIES_BYTES):
                text = row.get("query", row.get("prompt")) if isinstance(row, dict) else None
                if not isinstance(text, str) or not text.strip():
                    raise fail(line, 'expected an object with a non-empty "query" (or "prompt") string')
                out.append(text)
        else:
            data = fh.read(MAX_QUERIES_BYTES + 1)
            if len(data) > MAX_QUERIES_BYTES:
                raise SwarmError(f"{where} is larger than {MAX_QUERIES_BYTES >> 20} MiB; is it the right file?")
            try:
                out = [t for t in data.decode("utf-8").splitlines() if t.strip()]
            except UnicodeDecodeError as exc:
                raise SwarmError(f"{where}: not UTF-8 text (byte {exc.start + 1})") from None
    if not out:
        raise SwarmError(f"{where} holds no query")
    return out
