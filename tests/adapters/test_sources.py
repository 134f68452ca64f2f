"""Adapter sources: a run's stored config is read as data, never as code."""

from __future__ import annotations

import pytest

from polylora.adapters.sources import stored_section


def test_stored_configs_are_data_not_code(caplog) -> None:
    from polylora.errors import ConfigError

    run = {
        "model": {"name": "m", "source": "hf", "path": "/models/x", "trust_remote_code": True},
        "hardware": {"name": "cpu", "device": "cpu"},
    }
    model = stored_section(run, "model", "runs:/abc/adapter")
    assert model.trust_remote_code is False and model.path == "/models/x"
    assert "ignoring model.trust_remote_code=true" in caplog.text
    sneaky = {"model": {"name": "m", "source": "hf", "path": "${oc.env:ANTHROPIC_API_KEY}"}}
    with pytest.raises(ConfigError, match=r"interpolation in model\.path"):
        stored_section(sneaky, "model", "runs:/abc/adapter")
