"""Fixtures for the tests of embeddings and what uses them (metrics, data): a counting fake
embedder and a network tripwire. A plugin of ``tests/conftest.py``, so every folder has them."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pytest


class HashEmbedder:
    """Deterministic bag-of-words embedder (unit vectors) that counts its encode calls."""

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim
        self.calls: list[list[str]] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for token in text.lower().split() or [""]:
                digest = hashlib.sha256(token.encode()).digest()
                out[i, digest[0] % self.dim] += 1.0
            out[i] /= np.linalg.norm(out[i])
        return out


@pytest.fixture
def hash_embedder() -> HashEmbedder:
    """A fresh counting fake embedder."""
    return HashEmbedder()


@pytest.fixture
def make_hash_embedder() -> Callable[[], HashEmbedder]:
    """Factory for more fake embedders within one test."""
    return HashEmbedder


@pytest.fixture
def network_tripwire(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Make every outgoing connection / DNS lookup fail AND record it, so a test can assert
    that nothing even tried (a library might swallow the error and fall back)."""
    attempts: list[str] = []

    def refuse(kind: str) -> Callable[..., None]:
        def _raise(*args: object, **kwargs: object) -> None:
            attempts.append(f"{kind}{args[1:] if kind == 'connect' else args}")
            raise OSError(f"network disabled in tests ({kind})")

        return _raise

    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("connect_ex"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    yield attempts
