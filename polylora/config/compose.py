"""Composing ``polylora/conf/config.yaml`` with Hydra overrides outside a Hydra app, as
``python -m polylora`` would: how ``polylora merge`` and the recipes build a job's config."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def compose_config(overrides: Sequence[str], output_dir: str | Path | None = None) -> DictConfig:
    """The config of one job: ``output_dir`` (when given, before the overrides, which may
    replace it) and ``overrides``; a bad override is one :class:`ConfigError` line."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from polylora.config.overrides import hydra_quote
    from polylora.config.schemas import register_configs
    from polylora.errors import ConfigError

    register_configs()
    first = [] if output_dir is None else [f"output_dir={hydra_quote(str(output_dir))}"]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR)):
            return compose(config_name="config", overrides=[*first, *overrides])
    except (HydraException, OmegaConfBaseException) as exc:
        line = str(exc).strip().splitlines()[0]
        raise ConfigError(f"cannot compose the config from {list(overrides)}: {line}") from None
    finally:
        GlobalHydra.instance().clear()
