"""The config: typed schemas per group (:mod:`.schemas`) and building ``_target_`` nodes under
the trust rule (:mod:`.targets`). Every group's checks (:mod:`polylora.train.config_checks`)
read the stages they check (data, metrics, judge): import them from their module."""

from polylora.config.schemas import (
    CodeExecutionSettings,
    CompareConfig,
    DataConfig,
    EvalConfig,
    HardwareConfig,
    JudgeSettings,
    LoraConfig,
    ModelConfig,
    PolyloraConfig,
    SplitConfig,
    TrackingConfig,
    TrainConfig,
    example_data_path,
    register_configs,
)
from polylora.config.targets import build, trusted_target_patterns

__all__ = [
    "CodeExecutionSettings", "CompareConfig", "DataConfig", "EvalConfig", "HardwareConfig",
    "JudgeSettings", "LoraConfig", "ModelConfig", "PolyloraConfig", "SplitConfig",
    "TrackingConfig", "TrainConfig", "build", "example_data_path", "register_configs",
    "trusted_target_patterns",
]  # fmt: skip
