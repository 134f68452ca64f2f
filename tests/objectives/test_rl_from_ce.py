"""SFT -> RL in two runs: a CE run's adapter continued by pure RL (ce_weight 0). On the tiny
random model every sample is wrong, so GRPO has no signal: the run still trains (zero
gradient, no crash), tags the no-signal warning, and starts from the CE adapter."""

from __future__ import annotations

from pathlib import Path

import torch
from helpers import runs_of
from safetensors.torch import load_file


def test_pure_grpo_continues_a_ce_adapter_and_warns_without_signal(compose_cfg,
                                                                     tmp_path: Path) -> None:
    from polylora.run.pipeline import run

    sft = compose_cfg(["+experiment=smoke", "eval.enabled=false"], tmp_path / "sft")
    run(sft)
    adapter = tmp_path / "sft" / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file()

    rl = compose_cfg([
        "+experiment=smoke", "eval.enabled=false", "objective=grpo", "objective.ce_weight=0",
        "objective.no_signal_patience=2", "objective.max_new_tokens=4",
        "objective.n_generations=2", "train.max_steps=3", "train.weight_decay=0",
        f"model.adapter={adapter}",
    ], tmp_path / "rl")
    run(rl)
    (record,) = [r for r in runs_of(rl)
                 if r.data.tags.get("polylora.output_dir") == str(tmp_path / "rl")]
    assert record.info.status == "FINISHED"
    assert record.data.tags["polylora.warning.no_signal"].startswith("step ")
    assert record.data.metrics["train/no_signal"] == 1.0
    # No signal and no CE: the adapter is the CE run's, unchanged.
    before = load_file(adapter / "adapter_model.safetensors")
    after = load_file(tmp_path / "rl" / "adapter" / "adapter_model.safetensors")
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert any(v.abs().sum() > 0 for k, v in before.items() if "lora_B" in k)
