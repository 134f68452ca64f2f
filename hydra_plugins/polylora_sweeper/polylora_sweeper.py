"""Hydra's entry to the ``polylora_optuna`` sweeper: Hydra discovers sweepers by importing the
modules under ``hydra_plugins``; the sweeper itself is :mod:`polylora.sweep.plugin`."""

from polylora.sweep.plugin import PolyloraOptunaSweeper, PolyloraOptunaSweeperConf

__all__ = ["PolyloraOptunaSweeper", "PolyloraOptunaSweeperConf"]
