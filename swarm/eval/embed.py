"""Sentence embeddings with all-MiniLM-L6-v2 for the evaluation (`swarm.assess.encoder` encodes;
it keeps a long text's last 128 tokens). Embeddings are cached per text in memory, and by
`embed_cached` on disk too (``$SWARM_CACHE_DIR/embeddings/all-MiniLM-L6-v2`` by default, never the
repository); `remember` puts precomputed vectors in the memory cache (tests, other encoders)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from swarm.assess.encoder import encode


_cache: dict[str, np.ndarray] = {}
KEY_VERSION = "tail-128"  # in each disk key: vectors embedded another way are never read back


def cache_key(text: str) -> str:
    """The disk cache's key for `text`'s embedding."""
    return hashlib.sha256(f"{KEY_VERSION}\0{text}".encode("utf-8", "surrogatepass")).hexdigest()


def embed(texts: Sequence[str], batch: int = 64) -> np.ndarray:
    """(len(texts), 384) float32, unit rows; every text's vector is kept in memory for the next call."""
    todo = [t for t in dict.fromkeys(texts) if t not in _cache]
    for start in range(0, len(todo), batch):
        part = todo[start:start + batch]
        for text, row in zip(part, encode(part), strict=True):
            _cache[text] = row
    return np.stack([_cache[t] for t in texts]) if texts else np.zeros((0, 384), np.float32)


def remember(texts: Sequence[str], vectors: np.ndarray) -> None:
    """Use `vectors` (one row per text) as the embeddings of `texts` from now on."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(texts):
        raise ValueError(f"remember: {len(texts)} texts but vectors of shape {vectors.shape}")
    for text, row in zip(texts, vectors, strict=True):
        _cache[text] = row


def default_cache_dir() -> Path:
    from swarm.offline import cache_dir

    return cache_dir() / "embeddings" / "all-MiniLM-L6-v2"


def embed_cached(texts: Sequence[str], folder: Path | None = None, batch: int = 64) -> np.ndarray:
    """`embed(texts)`, reading and adding to an on-disk cache in `folder` (shards keyed by
    `cache_key`, the SHA-256 of the text and the way it was embedded; a shard that cannot be read is skipped and its texts embedded again)."""
    folder = Path(folder) if folder is not None else default_cache_dir()
    keys = {t: cache_key(t) for t in dict.fromkeys(texts) if t not in _cache}
    if keys:
        wanted = {k: t for t, k in keys.items()}
        for shard in sorted(folder.glob("shard-*.npz")) if folder.is_dir() else ():
            try:
                with np.load(shard, allow_pickle=False) as data:
                    for k, row in zip(data["keys"].tolist(), data["vectors"], strict=True):
                        if k in wanted:
                            _cache[wanted.pop(k)] = row.astype(np.float32)
            except (OSError, ValueError, KeyError):
                continue
            if not wanted:
                break
        if wanted:
            new = list(wanted.values())
            vectors = embed(new, batch)
            try:
                folder.mkdir(parents=True, exist_ok=True)
                name = hashlib.sha256("".join(sorted(wanted)).encode()).hexdigest()[:16]
                np.savez(folder / f"shard-{name}.npz", keys=np.array(list(wanted)), vectors=vectors)
            except OSError:
                pass  # a cache that cannot be written only costs time
    return embed(texts, batch)
