"""The shared MiniLM embedder: cached, normalized, and loadable with no network."""

from __future__ import annotations

import numpy as np
import pytest

from polylora.data import embeddings
from polylora.data.embeddings import Embedder, encode_unique, get_embedder


def test_embedder_is_cached_and_normalized() -> None:
    embedder = get_embedder()
    assert get_embedder() is embedder
    assert isinstance(embedder, Embedder)
    vectors = embedder.encode(["a first sentence", "another one", ""])
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.encode([]).shape == (0, 384)


def test_encode_unique_deduplicates_but_keeps_order(hash_embedder: object) -> None:
    texts = ["b", "a", "b", "c", "a"]
    vectors = encode_unique(texts, hash_embedder)  # type: ignore[arg-type]
    assert hash_embedder.calls == [["b", "a", "c"]]  # type: ignore[attr-defined]
    assert np.array_equal(vectors[0], vectors[2]) and np.array_equal(vectors[1], vectors[4])
    assert vectors.shape[0] == len(texts)


def test_loading_and_encoding_need_no_network(
    network_tripwire: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fresh load with every socket connection/DNS lookup refused and recorded."""
    monkeypatch.setattr(embeddings, "_EMBEDDER", None)
    vectors = get_embedder().encode(["offline please"])
    assert vectors.shape == (1, 384)
    assert network_tripwire == []
