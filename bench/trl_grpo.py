"""HF_HUB_OFFLINE=1 .venv/bin/python bench/trl_grpo.py [--steps 6] [--precision fp32 bf16]

TRL's ``GRPOTrainer`` against polylora's pure pass@1 RL (``+experiment=rl_from_ce`` without an
adapter: GRPO, ce_weight 0) on the same work, in one process: the embedded SmolLM2-135M, the
word task's prompts rendered as polylora renders them, 8 prompts × 4 samples per step, 32 new
tokens, LoRA r16 α16 dropout 0.1 on all linear layers, lr 2e-4, the word checker as reward,
2 threads. Both run under a ``transformers`` Trainer for ``--steps`` optimizer steps; the
reported step time is the median over the steps after the first (warm-up). TRL runs with its
defaults (gradient checkpointing on) and with gradient checkpointing off, at each precision
(fp32; bf16 autocast with fp32 weights). Each line also prints the compute floor: the matmul
FLOPs of one polylora step (generation + teacher-forced pass + backward) over this CPU's
measured matmul rate (bench/compute_floor.py).

``trl`` is not a polylora dependency: ``pip install -e ".[bench]"`` installs it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from compute_floor import counted_flops, floor_line, matmul_rate  # noqa: E402
from transformers import TrainerCallback, TrainingArguments  # noqa: E402

from polylora.config import build, register_configs  # noqa: E402
from polylora.data.formatting import EncodedDataset, render_prompt  # noqa: E402
from polylora.model.loading import load_base_model, wrap_lora  # noqa: E402
from polylora.objectives.base import ObjectiveContext  # noqa: E402
from polylora.run.pipeline import prompt_format  # noqa: E402
from polylora.train.trainer import IndexedCollator, IndexedDataset, PolyloraTrainer  # noqa: E402

PROMPTS, SAMPLES, NEW_TOKENS, LR = 8, 4, 32, 2e-4


class StepClock(TrainerCallback):
    """Wall time of each optimizer step (from its start to its end, as the Trainer sees it)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._start = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.times.append(time.perf_counter() - self._start)

    def median(self) -> float:
        return statistics.median(self.times[1:] or self.times)


def compose(autocast: str) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_configs()
    overrides = ["+experiment=rl_from_ce", "output_dir=bench-out", f"hardware.autocast={autocast}",
                 f"objective.n_generations={SAMPLES}", f"objective.max_new_tokens={NEW_TOKENS}",
                 f"train.batch_size={PROMPTS}", f"train.learning_rate={LR}"]
    with initialize_config_dir(config_dir=str(REPO / "polylora" / "conf"), version_base=None):
        return hydra_compose(config_name="config", overrides=overrides)


def polylora_run(cfg: Any, examples: list[Any], steps: int, bf16: bool, out: Path,
                 count: bool) -> tuple[float, int | None]:
    """Median step time of polylora's GRPO under its Trainer; with ``count``, also the matmul
    FLOPs of one step (an extra step run under the counter)."""
    model, tok = load_base_model(cfg.model, cfg.hardware)
    model = wrap_lora(model, cfg.lora, cfg.hardware)
    fmt = prompt_format(cfg, examples)
    objective = build(cfg.objective, _convert_="all")
    checker = build(cfg.data.checker)
    objective.bind(ObjectiveContext(tokenizer=tok, examples=examples, prompt_format=fmt,
                                    checker=checker, max_length=cfg.data.max_length))
    clock = StepClock()
    args = TrainingArguments(output_dir=str(out / "polylora"), max_steps=steps,
                             per_device_train_batch_size=PROMPTS, learning_rate=LR,
                             use_cpu=True, bf16=bf16, report_to="none", save_strategy="no",
                             logging_steps=1, remove_unused_columns=False, disable_tqdm=True)
    dataset = IndexedDataset(EncodedDataset(examples, tok, fmt, cfg.data.max_length))
    trainer = PolyloraTrainer(model=model, args=args, train_dataset=dataset,
                              data_collator=IndexedCollator(tok.pad_token_id),
                              objective=objective, callbacks=[clock])
    trainer.train()
    flops = None
    if count:
        batch = IndexedCollator(tok.pad_token_id)([dataset[i] for i in range(PROMPTS)])
        model.train()

        def one_step() -> None:
            ctx = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)
            with ctx:
                objective.compute_loss(model, batch, None, 1).loss.backward()

        _, flops = counted_flops(one_step)
    return clock.median(), flops


def trl_run(cfg: Any, examples: list[Any], steps: int, bf16: bool, checkpointing: bool,
            out: Path) -> float:
    """Median step time of TRL's GRPOTrainer on the same prompts, reward and LoRA."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    model, tok = load_base_model(cfg.model, cfg.hardware)
    fmt = prompt_format(cfg, examples)
    checker = build(cfg.data.checker)
    data = Dataset.from_list([{"prompt": render_prompt(e, tok, fmt), "index": i}
                              for i, e in enumerate(examples)])

    def reward(prompts: list[str], completions: list[str], index: list[int],
               **kwargs: Any) -> list[float]:
        return [float(checker(examples[i], c).correct) for i, c in zip(index, completions,
                                                                       strict=True)]

    config = GRPOConfig(output_dir=str(out / f"trl-{checkpointing}"), max_steps=steps,
                        per_device_train_batch_size=PROMPTS * SAMPLES,
                        num_generations=SAMPLES, max_completion_length=NEW_TOKENS,
                        learning_rate=LR, use_cpu=True, bf16=bf16, report_to="none",
                        save_strategy="no", logging_steps=1, disable_tqdm=True,
                        gradient_checkpointing=checkpointing)
    lora = LoraConfig(r=cfg.lora.rank, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules="all-linear", task_type="CAUSAL_LM")
    clock = StepClock()
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=config, train_dataset=data,
                          processing_class=tok, peft_config=lora, callbacks=[clock])
    trainer.train()
    return clock.median()


def main() -> None:
    parser = argparse.ArgumentParser(description="TRL GRPOTrainer vs polylora GRPO step time")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"],
                        choices=["fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-trl-checkpointing", action="store_true",
                        help="only TRL without gradient checkpointing (its faster setting)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs at start; "
          f"threads={torch.get_num_threads()} torch={torch.__version__}")
    import trl

    print(f"trl {trl.__version__}; {PROMPTS} prompts x {SAMPLES} samples, {NEW_TOKENS} new "
          f"tokens, {args.steps} steps (median of all but the first)")
    with tempfile.TemporaryDirectory() as tmp:
        for precision in args.precision:
            bf16 = precision == "bf16"
            cfg = compose("bf16" if bf16 else "off")
            examples = build(cfg.data.source).load()[: PROMPTS * args.steps]
            rate = matmul_rate(bf16=bf16)
            torch.manual_seed(0)
            poly, flops = polylora_run(cfg, examples, args.steps, bf16, Path(tmp), count=True)
            times = {"polylora GRPO": poly}
            for checkpointing in ([False] if args.skip_trl_checkpointing else [True, False]):
                torch.manual_seed(0)
                state = "on" if checkpointing else "off"
                name = f"TRL GRPOTrainer (gradient checkpointing {state})"
                times[name] = trl_run(cfg, examples, args.steps, bf16, checkpointing, Path(tmp))
            fastest_trl = min(v for k, v in times.items() if k.startswith("TRL"))
            print(f"\n{precision}:")
            for name, value in times.items():
                print(f"  {name:<48} {value:6.2f} s/step")
            print(f"  polylora / TRL's faster: {poly / fastest_trl:.2f}x   [target <= 0.35x]")
            if flops is not None:
                print("  " + floor_line("one polylora step", flops, rate, poly))
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
