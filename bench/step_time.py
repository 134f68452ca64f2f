"""python bench/step_time.py [--model smollm2|tiny] [--batch 4] [--seq 128] [--steps 8] [--rounds 3]

Time per optimizer step of polylora's CE training (PolyloraTrainer + CE objective plugin)
against a bare PEFT + torch loop doing the same work — same model, LoRA, batch, sequence
length, precision, AdamW and gradient clipping — interleaved in one process, and print the
ratio of medians. Target: <= 1.10. Run by hand, not in CI (machines are noisy: compare the
ratio, not absolute times).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
from omegaconf import OmegaConf
from transformers import TrainerCallback

from polylora.data.formatting import PaddingCollator
from polylora.model.loading import load_base_model, wrap_lora
from polylora.objectives.ce import CrossEntropyObjective, cross_entropy_loss
from polylora.train.trainer import IndexedCollator, PolyloraTrainer, training_arguments

MODELS = {
    "smollm2": {"source": "smollm2_gguf", "cache_dir": "~/.cache/polylora"},
    "tiny": {"source": "tiny_random", "hidden_size": 64, "intermediate_size": 128,
             "num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "init_seed": 0},
}


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step, as the Trainer sees it."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._start = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.times.append(time.perf_counter() - self._start)


def make_data(tok: Any, n: int, seq: int, seed: int) -> list[dict[str, Any]]:
    """Random token sequences of exactly ``seq`` tokens; loss on the second half."""
    g = torch.Generator().manual_seed(seed)
    vocab = len(tok)
    items = []
    for i in range(n):
        ids = torch.randint(5, vocab, (seq,), generator=g).tolist()
        labels = [-100] * (seq // 2) + ids[seq // 2 :]
        items.append({"input_ids": ids, "labels": labels, "example_index": i})
    return items


def build(model_name: str, precision: str) -> tuple[Any, Any]:
    mcfg = OmegaConf.create({"trust_remote_code": False, **MODELS[model_name]})
    hw = OmegaConf.create({"device": "cpu", "precision": precision, "load_in_4bit": False,
                           "gradient_checkpointing": False})
    lora = OmegaConf.create({"rank": 16, "alpha": 16.0, "alpha_ratio": None, "dropout": 0.0,
                             "target_modules": "all-linear", "bias": "none"})
    torch.manual_seed(0)
    model, tok = load_base_model(mcfg, hw)
    return wrap_lora(model, lora, hw), tok


def polylora_steps(model: Any, tok: Any, data: list[dict[str, Any]], batch: int, steps: int,
                   tmp: str) -> list[float]:
    cfg = OmegaConf.create({
        "seed": 0,
        "train": {"learning_rate": 1e-4, "epochs": 1, "max_steps": steps, "batch_size": batch,
                  "grad_accum": 1, "warmup_ratio": 0.0, "weight_decay": 0.0,
                  "lr_scheduler": "constant", "max_grad_norm": 1.0, "logging_steps": 10_000,
                  "eval_every": 10_000, "save_every": 10_000, "save_total_limit": 1,
                  "early_stopping_patience": 0},
        "hardware": {"device": "cpu", "precision": "fp32", "gradient_checkpointing": False,
                     "dataloader_workers": 0},
    })
    args = training_arguments(cfg, __import__("pathlib").Path(tmp), has_eval=False)
    args.save_strategy = "no"
    args.disable_tqdm = True
    timer = StepTimer()
    trainer = PolyloraTrainer(model=model, args=args, train_dataset=data,
                              data_collator=IndexedCollator(tok.pad_token_id),
                              callbacks=[timer], objective=CrossEntropyObjective())
    trainer.train()
    return timer.times[1:]  # the first step pays for lazy setup


def bare_steps(model: Any, tok: Any, data: list[dict[str, Any]], batch: int,
               steps: int) -> list[float]:
    collate = PaddingCollator(tok.pad_token_id)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    model.train()
    times = []
    for s in range(steps):
        rows = data[(s * batch) % len(data):][:batch]
        b = collate([{k: v for k, v in r.items() if k != "example_index"} for r in rows])
        start = time.perf_counter()
        loss = cross_entropy_loss(model, b, None, 1)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return times[1:]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=sorted(MODELS), default="smollm2")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    import tempfile

    torch.set_num_threads(torch.get_num_threads())
    model, tok = build(a.model, "fp32")
    data = make_data(tok, a.batch * a.steps, a.seq, seed=0)
    ours: list[float] = []
    bare: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):  # interleave so drifting machine load hits both alike
            ours += polylora_steps(model, tok, data, a.batch, a.steps, tmp)
            bare += bare_steps(model, tok, data, a.batch, a.steps)
            print(f"round {r + 1}: polylora {statistics.median(ours):.3f} s/step, "
                  f"bare {statistics.median(bare):.3f} s/step", flush=True)
    ratio = statistics.median(ours) / statistics.median(bare)
    print(f"model={a.model} batch={a.batch} seq={a.seq} fp32 LoRA r16 all-linear, "
          f"{len(ours)} + {len(bare)} timed steps")
    print(f"median s/step: polylora {statistics.median(ours):.4f}  bare PEFT loop "
          f"{statistics.median(bare):.4f}")
    print(f"RATIO polylora/bare = {ratio:.3f}  (target <= 1.10)")


if __name__ == "__main__":
    main()
