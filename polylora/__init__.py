"""polylora: LoRA fine-tuning experiments with pluggable (diversity-aware) objectives."""

__version__ = "0.1.0"
