"""Clustering with an injected fake embedder: recovers separated clusters, validates k."""

from __future__ import annotations

import numpy as np
import pytest

from polylora.data.clustering import ClusterResult, cluster_examples, normalize_rows
from polylora.errors import ConfigError, DataError


class FakeEmbedder:
    """Texts named 'c<j>-<i>' map to a tight cloud around the j-th well-separated direction."""

    def __init__(self, dim: int = 16, noise: float = 0.05, seed: int = 0) -> None:
        self.dim = dim
        self.noise = noise
        self.rng = np.random.default_rng(seed)
        self.calls = 0

    def encode(self, sentences: list[str]) -> np.ndarray:
        self.calls += 1
        rows = []
        for text in sentences:
            cluster = int(text.split("-")[0][1:])
            base = np.zeros(self.dim)
            base[cluster] = 5.0  # scale is irrelevant: vectors are normalized
            rows.append(base + self.rng.normal(0.0, self.noise * 5.0, self.dim))
        return np.stack(rows)


def texts_for(sizes: list[int]) -> tuple[list[str], list[int]]:
    texts, truth = [], []
    for j, size in enumerate(sizes):
        for i in range(size):
            texts.append(f"c{j}-{i}")
            truth.append(j)
    return texts, truth


def same_partition(a: np.ndarray, b: list[int]) -> bool:
    mapping: dict[int, int] = {}
    for x, y in zip(a.tolist(), b, strict=True):
        if mapping.setdefault(x, y) != y:
            return False
    return len(set(mapping.values())) == len(mapping)


def test_recovers_separated_clusters_with_high_silhouette() -> None:
    texts, truth = texts_for([12, 7, 20, 9])
    result = cluster_examples(texts, k=4, seed=0, embedder=FakeEmbedder())
    assert isinstance(result, ClusterResult)
    assert result.labels.shape == (len(texts),)
    assert same_partition(result.labels, truth)
    assert result.silhouette > 0.8
    assert sorted(result.sizes) == [7, 9, 12, 20]
    assert result.centroids.shape == (4, 16)
    assert np.allclose(np.linalg.norm(result.centroids, axis=1), 1.0)


def test_silhouette_is_low_when_there_is_no_structure() -> None:
    texts = [f"c0-{i}" for i in range(40)]
    result = cluster_examples(texts, k=3, seed=0, embedder=FakeEmbedder(noise=1.0))
    assert result.silhouette < 0.5


def test_deterministic_for_a_seed() -> None:
    texts, _ = texts_for([10, 10, 10])
    a = cluster_examples(texts, k=3, seed=5, embedder=FakeEmbedder(seed=1))
    b = cluster_examples(texts, k=3, seed=5, embedder=FakeEmbedder(seed=1))
    assert np.array_equal(a.labels, b.labels) and np.allclose(a.centroids, b.centroids)
    assert a.silhouette == b.silhouette


@pytest.mark.parametrize("k", [1, 0, -3, 6, 2.0, True])
def test_bad_k_is_a_config_error(k: object) -> None:
    embedder = FakeEmbedder()
    with pytest.raises(ConfigError, match="k"):
        cluster_examples([f"c0-{i}" for i in range(5)], k=k, seed=0, embedder=embedder)  # type: ignore[arg-type]
    assert embedder.calls == 0  # validated before any embedding work


def test_k_equal_to_n_gives_undefined_silhouette() -> None:
    texts, _ = texts_for([1, 1, 1])
    result = cluster_examples(texts, k=3, seed=0, embedder=FakeEmbedder())
    assert sorted(result.labels.tolist()) == [0, 1, 2]
    assert np.isnan(result.silhouette)


def test_embedder_with_wrong_shape_is_a_data_error() -> None:
    class Broken:
        def encode(self, sentences: list[str]) -> np.ndarray:
            return np.zeros((len(sentences) - 1, 4))

    with pytest.raises(DataError, match="one vector per text"):
        cluster_examples(["a", "b", "c"], k=2, seed=0, embedder=Broken())


def test_normalize_rows_keeps_zero_rows() -> None:
    out = normalize_rows(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert np.allclose(out, [[0.6, 0.8], [0.0, 0.0]])


@pytest.mark.slow
def test_default_embedder_separates_topics() -> None:
    """End to end with the shared MiniLM embedder (skipped when that module is absent)."""
    pytest.importorskip("polylora.data.embeddings")
    cooking = [
        "How do I bake sourdough bread?",
        "Best recipe for chocolate cake",
        "How long to roast a chicken",
        "Simmer the tomato sauce for an hour",
    ]
    code = [
        "Python list comprehension syntax",
        "How to fix a segfault in C",
        "Rust borrow checker error",
        "Git rebase vs merge",
    ]
    result = cluster_examples(cooking + code, k=2, seed=0)
    assert same_partition(result.labels, [0] * 4 + [1] * 4)
    assert result.silhouette > 0
