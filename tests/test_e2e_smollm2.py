"""End to end on the real embedded SmolLM2-135M-Instruct (slow: converts the GGUF once)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import runs_of

from polylora.model.loading import smollm2_folder
from polylora.run.pipeline import execute

pytestmark = pytest.mark.slow

SHORT = ["train.max_steps=3", "train.batch_size=2", "train.eval_every=3", "train.save_every=3",
         "eval.subset_size=3", "eval.n_samples=2", "eval.ks=[1,2]", "eval.max_new_tokens=6",
         "eval.metrics=[test_loss,accuracy,pass@1,pass@2,distinct_2]", "data.source.n_examples=60"]


def test_baseline_runs_a_few_steps_on_the_embedded_model(compose_cfg, tmp_path: Path) -> None:
    cfg = compose_cfg(["+experiment=baseline", *SHORT], output_dir=tmp_path / "b")
    res = execute(cfg)
    (run,) = runs_of(cfg)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["model/total_params"] > 1e8  # the real 135M model, not a toy
    assert 0 < run.data.metrics["model/trainable_params"] < 1e7
    assert (res.output_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert 0.0 <= run.data.metrics["eval/pass_at_2"] <= 1.0
    # The converted folder is a cache: a second call reuses it untouched.
    folder = smollm2_folder(cfg.model.cache_dir)
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert smollm2_folder(cfg.model.cache_dir) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
