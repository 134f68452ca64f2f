"""HF_HUB_OFFLINE=1 .venv/bin/python bench/polychromic_step.py --reps 3 --ce-warmup-steps 30

Wall time of one optimizer step (loss + backward + AdamW step) with the polychromic objective
over the same step with CE, on the same batch in the same process. Repetitions interleave the
two (CE first, then polychromic first, ...) so load from other processes hits both; the
report is the median of the per-repetition ratios, with the polychromic step split into
generation, scoring (quality + diversity + advantages) and the extra forward/backward.

The model, LoRA and objective come from the ``polychromic_0.3`` experiment (rank 16, α 16,
dropout 0.1, all-linear; λ 0.3, semantic diversity). Quality defaults to
``reference_similarity`` so the extra forward/backward always runs: with
``--quality checker`` an untrained model whose samples all fail gets all-zero advantages and
the objective skips that forward (cheaper, but not what a training run pays once it learns).
The untrained base model answers in sentences and tends to use all ``--new-tokens`` (the
worst case for generation and the extra pass); ``--ce-warmup-steps 30`` first trains on
other examples with CE until answers are short, as they are a little way into a run.
``--threads 1`` gives steadier numbers on a machine shared with other jobs (small ops with
two OpenMP threads stall whenever the other thread is descheduled).
``--model tiny`` runs the tiny random model (seconds; for checking the script).
``--autocast`` is the run's ``hardware.autocast`` (default ``auto``: bf16 where the CPU computes
it natively, as a default run); ``off`` times fp32. The batch defaults to ``make run``'s (8).
The last lines give the compute floor of each step (its matmul FLOPs over this CPU's measured
matmul rate, bench/compute_floor.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
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

from polylora.config import build, register_configs  # noqa: E402
from polylora.data.formatting import PaddingCollator, encode_example  # noqa: E402
from polylora.model.loading import (  # noqa: E402
    autocast,
    autocast_dtype,
    load_base_model,
    wrap_lora,
)
from polylora.objectives.base import ObjectiveContext  # noqa: E402
from polylora.objectives.ce import CrossEntropyObjective  # noqa: E402
from polylora.objectives.polychromic import PolychromicObjective  # noqa: E402
from polylora.run.pipeline import prompt_format  # noqa: E402


def compose(args: argparse.Namespace) -> Any:
    """The polychromic_0.3 experiment's config with the benchmark's overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_configs()
    overrides = [
        "+experiment=polychromic_0.3", "output_dir=bench-out",
        f"objective.n_generations={args.n}", f"objective.max_new_tokens={args.new_tokens}",
        f"objective.quality={args.quality}", f"objective.diversity_metric={args.diversity}",
        f"hardware.device={args.device}", f"hardware.precision={args.precision}",
        f"hardware.autocast={args.autocast}",
    ]
    if args.micro_batch:
        overrides.append(f"+objective.micro_batch={args.micro_batch}")
    if args.model == "tiny":
        overrides += ["model=tiny_random", "lora=r4"]
    with initialize_config_dir(config_dir=str(REPO / "polylora" / "conf")):
        return hydra_compose(config_name="config", overrides=overrides)


class Clock:
    """Wall time and process CPU time (all threads) of the code inside ``with clock:``.

    On a shared machine wall time swings with other people's load; CPU time spent by this
    process does much less, so the report gives both (the ratios usually agree when the
    machine is idle)."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0

    def __enter__(self) -> Clock:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.wall += time.perf_counter() - self._w
        self.cpu += time.process_time() - self._c


def timed(clocks: dict[str, Clock], name: str, fn: Any) -> Any:
    """``fn`` wrapped so that its calls are timed into ``clocks[name]``."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with clocks[name]:
            return fn(*args, **kwargs)

    return wrapper


def run_step(model: Any, objective: Any, batch: dict[str, torch.Tensor],
             optimizer: torch.optim.Optimizer, clock: Clock, precision: Any) -> dict[str, float]:
    """One optimizer step (loss, backward, AdamW step) timed into ``clock``; its metrics. The
    objective gets a backward as from the Trainer (it may backpropagate micro-batches itself);
    ``precision`` is the run's autocast context (the Trainer's, in a run)."""
    with clock:
        with precision:
            out = objective.compute_loss(model, batch, None, 1, backward=lambda t: t.backward())
            out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return out.metrics


def main() -> None:
    """Parse arguments, run the interleaved repetitions, print the table."""
    parser = argparse.ArgumentParser(description="polychromic vs CE step time")
    parser.add_argument("--model", choices=["smollm2", "tiny"], default="smollm2")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--n", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quality", default="reference_similarity")
    parser.add_argument("--diversity", default="semantic")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", help="weights (hardware.precision)")
    parser.add_argument("--autocast", default="auto", choices=["auto", "bf16", "off"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=0.0,
                        help="0 keeps the model fixed so every repetition samples alike")
    parser.add_argument("--ce-warmup-steps", type=int, default=0,
                        help="CE steps (lr 1e-3, other examples) before timing: a model that "
                        "has learnt the task's short answers, as mid-run")
    parser.add_argument("--micro-batch", type=int, default=0,
                        help="prompts per pass and backward (0: the objective's default, the "
                        "whole batch in one pass)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (0: torch's default); 1 is steadier on a busy box")
    args = parser.parse_args()

    cfg = compose(args)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model, tok = load_base_model(cfg.model, cfg.hardware)
    model = wrap_lora(model, cfg.lora, cfg.hardware)
    model.train()
    load_s = time.perf_counter() - t0
    everything = build(cfg.data.source).load()
    examples = everything[: args.batch]
    fmt = prompt_format(cfg, examples)
    device = next(model.parameters()).device

    def make_batch(chunk: list[Any]) -> dict[str, torch.Tensor]:
        feats = [encode_example(e, tok, fmt, cfg.data.max_length) for e in chunk]
        out = PaddingCollator(tok.pad_token_id)(feats)
        out["example_index"] = torch.arange(len(chunk))
        return {k: v.to(device) for k, v in out.items()}

    batch = make_batch(examples)
    if args.ce_warmup_steps:
        warm = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        pool = everything[args.batch :]
        for step in range(args.ce_warmup_steps):
            start = (step * args.batch) % max(len(pool) - args.batch, 1)
            chunk = make_batch(pool[start : start + args.batch])
            CrossEntropyObjective().compute_loss(model, chunk, None, 1).loss.backward()
            warm.step()
            warm.zero_grad(set_to_none=True)

    ce = CrossEntropyObjective()
    poly = build(cfg.objective, _convert_="all")
    assert isinstance(poly, PolychromicObjective)
    checker = build(cfg.data.checker) if cfg.data.checker is not None else None
    poly.bind(ObjectiveContext(tokenizer=tok, examples=examples, prompt_format=fmt,
                               checker=checker, max_length=cfg.data.max_length))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=args.lr)
    clocks: dict[str, Clock] = {}
    poly.generate = timed(clocks, "gen", poly.generate)  # type: ignore[method-assign]
    poly.score_sets = timed(clocks, "score", poly.score_sets)  # type: ignore[method-assign]

    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs at start")
    print(f"model={args.model} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params, "
          f"loaded in {load_s:.1f}s) device={device} precision={args.precision} "
          f"threads={torch.get_num_threads()} torch={torch.__version__} "
          f"autocast={autocast_dtype(cfg.hardware) or 'off'}")
    print(f"batch={args.batch} N={args.n} new_tokens={args.new_tokens} quality={args.quality} "
          f"diversity={args.diversity} lambda={poly.diversity_weight} lr={args.lr} "
          f"reps={args.reps} (+1 warm-up each) ce_warmup_steps={args.ce_warmup_steps} "
          f"micro_batch={poly.micro_batch}")
    for objective in (ce, poly):  # warm-up: first forward, MiniLM load, caches
        clocks.update(gen=Clock(), score=Clock())
        run_step(model, objective, batch, optimizer, Clock(), autocast(cfg.hardware))

    rows: list[dict[str, float]] = []
    for rep in range(args.reps):
        order = [("ce", ce), ("poly", poly)] if rep % 2 == 0 else [("poly", poly), ("ce", ce)]
        row: dict[str, float] = {}
        for name, objective in order:
            clocks.update(step=Clock(), gen=Clock(), score=Clock())
            metrics = run_step(model, objective, batch, optimizer, clocks["step"],
                               autocast(cfg.hardware))
            for kind in ("wall", "cpu"):
                row[f"{name}_{kind}"] = getattr(clocks["step"], kind)
                if name == "poly":
                    for part in ("gen", "score"):
                        row[f"{part}_{kind}"] = getattr(clocks[part], kind)
            if name == "poly":
                row["tokens"] = metrics["train/sample_tokens"]
        for kind in ("wall", "cpu"):
            row[f"extra_{kind}"] = (row[f"poly_{kind}"] - row[f"ce_{kind}"]
                                    - row[f"gen_{kind}"] - row[f"score_{kind}"])
            row[f"ratio_{kind}"] = row[f"poly_{kind}"] / row[f"ce_{kind}"]
        rows.append(row)
        print(f"  rep {rep}: wall ce {row['ce_wall']:.2f}s poly {row['poly_wall']:.2f}s "
              f"(gen {row['gen_wall']:.2f}, score {row['score_wall']:.2f}, extra "
              f"{row['extra_wall']:.2f}) {row['ratio_wall']:.2f}x | cpu ce {row['ce_cpu']:.2f}s "
              f"poly {row['poly_cpu']:.2f}s {row['ratio_cpu']:.2f}x | {row['tokens']:.1f} "
              "tokens/sample")

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    print("\nmedian over repetitions      wall            cpu (process, all threads)")
    for label, key in (("CE step", "ce"), ("polychromic step", "poly"),
                       ("  generation", "gen"), ("  scoring", "score"),
                       ("  extra fwd/bwd", "extra")):
        cells = []
        for kind in ("wall", "cpu"):
            value, ce_value = med(f"{key}_{kind}"), med(f"ce_{kind}")
            cells.append(f"{value:7.2f} s ({value / ce_value:4.2f}x CE)")
        print(f"  {label:<20} {cells[0]}   {cells[1]}")
    print(f"  ratio (median of per-rep ratios): wall {med('ratio_wall'):.2f}x, "
          f"cpu {med('ratio_cpu'):.2f}x   [target <= 1.6x on a trained adapter]")
    rate = matmul_rate(bf16=autocast_dtype(cfg.hardware) is not None)
    for label, key, objective in (("CE step", "ce", ce), ("polychromic step", "poly", poly)):
        _, flops = counted_flops(lambda o=objective: run_step(  # type: ignore[misc]
            model, o, batch, optimizer, Clock(), autocast(cfg.hardware)))
        print("  " + floor_line(label, flops, rate, med(f"{key}_wall")))
    print(f"  load average {os.getloadavg()[0]:.1f} at the end")

if __name__ == "__main__":
    main()
