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
    from polylora.record.redaction import redacted_config
    from polylora.record.tracking import flatten

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


def finished_step(checkpoint: Path) -> int | None:
    """The step of ``checkpoint`` when its run had already reached its ``max_steps`` (nothing
    is left to train: resuming must not take another step), else None."""
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    step, limit = int(state.get("global_step", 0)), int(state.get("max_steps", 0) or 0)
    return step if limit > 0 and step >= limit else None


def finished_weights(out_dir: Path, checkpoint: Path) -> Path:
    """The folder holding the weights a finished run ended with: its saved adapter, else the
    checkpoint the Trainer would have restored (the best one when it kept the best)."""
    from polylora.record import names

    saved = out_dir / names.ADAPTER_DIR
    if (saved / "adapter_model.safetensors").is_file():
        return saved
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    best = state.get("best_model_checkpoint")
    return Path(best) if best and Path(best).is_dir() else checkpoint


def load_finished_weights(model: Any, folder: Path) -> None:
    """Put the adapter weights saved in ``folder`` into the LoRA-wrapped ``model`` as they are."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(folder / "adapter_model.safetensors"))


def finished_metrics(out_dir: Path, step: int) -> dict[str, float]:
    """The training metrics the finished run recorded (its ``metrics.json``); the step alone
    when it recorded none."""
    from polylora.record import names

    path = out_dir / names.METRICS_FILE
    recorded = json.loads(path.read_text()) if path.is_file() else {}
    out = {k: float(v) for k, v in recorded.items() if k.startswith(names.TRAIN_PREFIX)}
    out[names.TRAIN_STEPS] = float(step)
    out.setdefault(names.TRAIN_EVALUATED_STEP, float(step))
    return out
