"""Resuming a run safely: the checkpoint remembers the training config it was made with,
and ``train.resume=true`` with a config that trains differently is refused, naming the keys.

"Trains differently" is everything under ``model``, ``lora``, ``objective``, ``data`` and
``train`` plus ``seed`` and the numeric side of ``hardware``; evaluation, tracking, logging
cadence and thread counts may change on resume.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from polylora.errors import ConfigError

log = logging.getLogger(__name__)

RECORD = "polylora_training_config.json"
TRAINING_PREFIXES = ("model.", "lora.", "objective.", "data.", "train.", "seed")
TRAINING_HARDWARE = ("hardware.precision", "hardware.load_in_4bit", "hardware.bnb_4bit_quant_type")
IGNORED = ("train.resume", "train.logging_steps", "model.cache_dir")


def training_config(cfg: DictConfig) -> dict[str, Any]:
    """The flattened, resolved and redacted config keys that change training."""
    from polylora.redaction import redacted_config
    from polylora.tracking import flatten

    flat = flatten(redacted_config(cfg))
    return {
        key: value
        for key, value in sorted(flat.items())
        if (key.startswith(TRAINING_PREFIXES) or key in TRAINING_HARDWARE) and key not in IGNORED
    }


def record(cfg: DictConfig, checkpoint_dir: Path) -> None:
    """Remember the training config next to the checkpoints it produces."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(training_config(cfg), indent=1, sort_keys=True, default=str)
    (checkpoint_dir / RECORD).write_text(text)


def changed_keys(cfg: DictConfig, checkpoint_dir: Path) -> list[str] | None:
    """Keys whose values differ from the recorded ones (None: nothing recorded)."""
    path = checkpoint_dir / RECORD
    if not path.is_file():
        return None
    before = json.loads(path.read_text())
    now = json.loads(json.dumps(training_config(cfg), default=str))
    return sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))


def check(cfg: DictConfig, checkpoint_dir: Path) -> None:
    """Refuse ``train.resume=true`` when the config trains differently from the checkpoint's."""
    changed = changed_keys(cfg, checkpoint_dir)
    if changed is None:
        if any(checkpoint_dir.glob("checkpoint-*")):
            log.warning("%s has no %s: cannot check the config matches", checkpoint_dir, RECORD)
        return
    if changed:
        more = f" (+{len(changed) - 8} more)" if len(changed) > 8 else ""
        shown = ", ".join(changed[:8]) + more
        raise ConfigError(
            f"train.resume=true but the config differs from the checkpoint's in {shown}; "
            f"resume with the same values (see {checkpoint_dir / RECORD}) or start a new run "
            "without train.resume"
        )
