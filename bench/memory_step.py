"""HF_HUB_OFFLINE=1 .venv/bin/python bench/memory_step.py [--steps 2] [-- OVERRIDE ...]

Where a polychromic training step's memory goes: builds ``polychromic_0.3`` (embedded
SmolLM2, untrained adapter: its samples run long, the worst case), then runs ``--steps``
objective steps (loss, backward) on one batch of 8 word-task prompts, printing the process's
RSS and peak RSS after loading, after each phase the objective exposes (sampling, scoring,
the teacher-forced pass over the samples) and after the backward. The objective gets the
Trainer's backward (micro-batched PG pass) unless ``--single-pass``. Overrides (after ``--``)
go to the composed config, e.g. ``hardware=cpu_bf16`` or ``objective.max_new_tokens=8``.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from polylora.config import build, register_configs  # noqa: E402
from polylora.data.formatting import encode_example  # noqa: E402
from polylora.model.loading import autocast, load_base_model, wrap_lora  # noqa: E402
from polylora.objectives.base import ObjectiveContext  # noqa: E402
from polylora.run.pipeline import prompt_format  # noqa: E402
from polylora.train.trainer import IndexedCollator  # noqa: E402

PHASES = ("generate", "score_sets", "pg_terms")


def report(tag: str) -> None:
    rss = psutil.Process().memory_info().rss / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{tag:34s} RSS {rss:7.0f} MB   peak {peak:7.0f} MB", flush=True)


def main() -> None:
    from hydra import compose, initialize_config_dir

    p = argparse.ArgumentParser(description="memory of a polychromic step, by phase")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--single-pass", action="store_true",
                   help="no backward handed to the objective: the PG pass as one graph")
    p.add_argument("overrides", nargs="*")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "polylora" / "conf")):
        cfg = compose(config_name="config", overrides=[
            "+experiment=polychromic_0.3", "output_dir=bench-out", *a.overrides])
    report("start (torch, transformers imported)")
    model, tok = load_base_model(cfg.model, cfg.hardware)
    model = wrap_lora(model, cfg.lora, cfg.hardware)
    report("model + LoRA loaded")
    objective = build(cfg.objective, _convert_="all")
    examples = build(cfg.data.source).load()[:64]
    fmt = prompt_format(cfg, examples)
    objective.bind(ObjectiveContext(tokenizer=tok, examples=examples, prompt_format=fmt,
                                    checker=build(cfg.data.checker),
                                    max_length=cfg.data.max_length))
    feats = [{**encode_example(e, tok, fmt, cfg.data.max_length), "example_index": i}
             for i, e in enumerate(examples[:8])]
    batch = IndexedCollator(tok.pad_token_id)(feats)
    for name in PHASES:  # report after each phase the objective has
        if hasattr(objective, name):
            fn = getattr(objective, name)

            def wrapped(*args: Any, _fn: Any = fn, _name: str = name, **kw: Any) -> Any:
                out = _fn(*args, **kw)
                report(f"  after {_name}")
                return out

            setattr(objective, name, wrapped)
    # as the Trainer does: the objective backpropagates micro-batches
    backward = None if a.single_pass else (lambda t: t.backward())
    model.train()
    for step in range(a.steps):
        torch.manual_seed(step)
        t = time.perf_counter()
        with autocast(cfg.hardware):
            out = objective.compute_loss(model, batch, None, 1, backward=backward)
        out.loss.backward()
        model.zero_grad(set_to_none=True)
        report(f"step {step}: after backward")
        tokens = out.metrics.get("train/sample_tokens")
        print(f"step {step}: {time.perf_counter() - t:.1f} s, mean sample tokens {tokens}")


if __name__ == "__main__":
    main()
