"""Cluster texts (personas, prompts) by meaning: k-means on L2-normalized sentence embeddings.

Used to partition data into topical clusters (e.g. one adapter per cluster) and to judge
whether the clusters are real: a silhouette near 0 means the partition is arbitrary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from polylora.errors import ConfigError, DataError


class Embedder(Protocol):
    """Anything that maps a list of texts to an ``(n, d)`` array (e.g. SentenceTransformer)."""

    def encode(self, sentences: list[str]) -> Any: ...


@dataclass(frozen=True)
class ClusterResult:
    """Cluster label per text, L2-normalized centroids ``(k, d)``, and the cosine silhouette.

    ``silhouette`` is NaN when it is undefined (fewer than 2 distinct clusters, or one text
    per cluster).
    """

    labels: np.ndarray
    centroids: np.ndarray
    silhouette: float

    @property
    def sizes(self) -> list[int]:
        """Number of texts in each cluster, indexed by label."""
        return np.bincount(self.labels, minlength=len(self.centroids)).tolist()


def cluster_examples(
    texts: Sequence[str], k: int, seed: int, embedder: Embedder | None = None
) -> ClusterResult:
    """K-means (scikit-learn, seeded) on the texts' normalized embeddings, with silhouette.

    ``embedder`` is any object with ``encode(list[str]) -> array``; when None the project's
    shared MiniLM embedder (``polylora.data.embeddings.get_embedder``) is loaded.
    """
    texts = list(texts)
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ConfigError(f"number of clusters k must be an integer >= 2, got {k!r}")
    if k > len(texts):
        raise ConfigError(
            f"number of clusters k={k} exceeds the number of texts ({len(texts)}); "
            f"lower k to at most {len(texts)} or add data"
        )
    if embedder is None:
        from polylora.data.embeddings import get_embedder

        embedder = get_embedder()
    vectors = normalize_rows(np.asarray(embedder.encode(texts), dtype=np.float64))
    if vectors.ndim != 2 or vectors.shape[0] != len(texts):
        raise DataError(
            f"embedder returned shape {vectors.shape} for {len(texts)} texts; "
            "it must return one vector per text, shape (n_texts, dim)"
        )

    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    model = KMeans(n_clusters=k, random_state=seed, n_init=10)
    labels = model.fit_predict(vectors).astype(np.int64)
    centroids = normalize_rows(np.asarray(model.cluster_centers_, dtype=np.float64))
    n_labels = len(np.unique(labels))
    if 2 <= n_labels <= len(texts) - 1:
        silhouette = float(silhouette_score(vectors, labels, metric="cosine"))
    else:
        silhouette = float("nan")
    return ClusterResult(labels=labels, centroids=centroids, silhouette=silhouette)


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Scale each row to unit L2 norm (zero rows stay zero), so cosine = dot product."""
    if matrix.ndim != 2:
        return matrix
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)
