"""Trained LoRA adapters combined: :mod:`~polylora.adapters.sources` (which adapters, on which
base model), :mod:`~polylora.adapters.merging` (static PEFT merges into one adapter) and
:mod:`~polylora.adapters.routing` (a per-prompt top-k mixture)."""
