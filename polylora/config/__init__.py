"""The config: typed schemas per group (:mod:`.schemas`), their checks (:mod:`.validation`) and
building ``_target_`` nodes under the trust rule (:mod:`.targets`)."""

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
from polylora.config.validation import validate

__all__ = [
    "CodeExecutionSettings", "CompareConfig", "DataConfig", "EvalConfig", "HardwareConfig",
    "JudgeSettings", "LoraConfig", "ModelConfig", "PolyloraConfig", "SplitConfig",
    "TrackingConfig", "TrainConfig", "build", "example_data_path", "register_configs",
    "trusted_target_patterns", "validate",
]  # fmt: skip
