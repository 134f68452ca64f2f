"""Fixtures of the adapter tests: four tiny adapters saved like pipeline runs save them."""

from __future__ import annotations

import pytest
from helpers import tiny_adapter_set


@pytest.fixture(scope="module")
def tiny_adapters(tmp_path_factory: pytest.TempPathFactory):
    """The smoke config and four tiny adapters (see ``helpers.tiny_adapter_set``)."""
    return tiny_adapter_set(tmp_path_factory.mktemp("adapters"))
