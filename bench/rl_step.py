"""HF_HUB_OFFLINE=1 .venv/bin/python bench/rl_step.py --reps 2 --threads 1 --ce-warmup-steps 30

Step time of every RL objective (grpo, passk, polychromic) over the CE step on the same batch
in one process, with each RL step split into generation, scoring and the extra
forward/backward of the policy-gradient term. Repetitions interleave the objectives (the
order rotates) so load from other processes hits all of them; the report gives medians of
the per-repetition ratios, in process CPU time (steadier on a shared machine) and wall time.

Objectives come from their experiments (``grpo``, ``passk_4``, ``polychromic_0.3``: λ, N, k
as configured there, baseline's LoRA r 16 with dropout 0.1), with ``--new-tokens`` and
``--n`` applied to all. An untrained model gets every sample wrong, so checker-rewarded
objectives would skip the PG pass; ``--force-signal`` (default on) replaces an all-zero
advantage set by ±1 so the extra forward/backward is timed as in a run that learns.
``--ce-warmup-steps`` first trains with CE so answers are short words, as mid-run.
``--model tiny`` runs the tiny random model (seconds; for checking the script).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import torch  # noqa: E402
from polychromic_step import Clock, run_step, timed  # noqa: E402

from polylora.config import build, register_configs  # noqa: E402
from polylora.data.formatting import PaddingCollator, encode_example  # noqa: E402
from polylora.model.loading import load_base_model, wrap_lora  # noqa: E402
from polylora.objectives.base import ObjectiveContext  # noqa: E402
from polylora.objectives.ce import CrossEntropyObjective  # noqa: E402
from polylora.run.pipeline import prompt_format  # noqa: E402

EXPERIMENTS = {"grpo": "grpo", "passk": "passk_4", "polychromic": "polychromic_0.3"}


def compose(args: argparse.Namespace, experiment: str) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    GlobalHydra.instance().clear()
    overrides = [f"+experiment={experiment}", "output_dir=bench-out",
                 f"objective.max_new_tokens={args.new_tokens}",
                 f"hardware.device={args.device}", f"hardware.precision={args.precision}"]
    if args.n:
        overrides.append(f"objective.n_generations={args.n}")
    if experiment == "polychromic_0.3":
        overrides.append(f"objective.diversity_metric={args.diversity}")
    if args.model == "tiny":
        overrides += ["model=tiny_random", "lora=r4"]
    with initialize_config_dir(config_dir=str(REPO / "polylora" / "conf"), version_base=None):
        return hydra_compose(config_name="config", overrides=overrides)


def force_signal(score: Any) -> Any:
    """Wrap ``score_sets``: an all-zero advantage set gets alternating ±1 (see docstring)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        scored = score(*args, **kwargs)
        scored.advantages = [
            aa if any(a != 0 for a in aa) else [(-1.0) ** i for i in range(len(aa))]
            for aa in scored.advantages
        ]
        return scored

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description="RL objectives vs CE step time")
    parser.add_argument("--model", choices=["smollm2", "tiny"], default="smollm2")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--n", type=int, default=0, help="N for all (0: each experiment's)")
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--diversity", default="semantic")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--ce-warmup-steps", type=int, default=0)
    parser.add_argument("--no-force-signal", action="store_true")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()

    cfgs = {name: compose(args, exp) for name, exp in EXPERIMENTS.items()}
    cfg = cfgs["grpo"]
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tok = load_base_model(cfg.model, cfg.hardware)
    model = wrap_lora(model, cfg.lora, cfg.hardware)
    model.train()
    everything = build(cfg.data.source).load()
    examples = everything[: args.batch]
    fmt = prompt_format(cfg, examples)
    device = next(model.parameters()).device
    checker = build(cfg.data.checker) if cfg.data.checker is not None else None

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
            CrossEntropyObjective().compute_loss(
                model, make_batch(pool[start : start + args.batch]), None, 1).loss.backward()
            warm.step()
            warm.zero_grad(set_to_none=True)

    clocks: dict[str, Clock] = {}
    objectives: dict[str, Any] = {"ce": CrossEntropyObjective()}
    for name, c in cfgs.items():
        obj = build(c.objective, _convert_="all")
        obj.bind(ObjectiveContext(tokenizer=tok, examples=examples, prompt_format=fmt,
                                  checker=checker, max_length=c.data.max_length))
        obj.generate = timed(clocks, "gen", obj.generate)
        score = obj.score_sets if args.no_force_signal else force_signal(obj.score_sets)
        obj.score_sets = timed(clocks, "score", score)
        objectives[name] = obj
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.0)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs at start")
    print(f"model={args.model} device={device} precision={args.precision} "
          f"threads={torch.get_num_threads()} batch={args.batch} new_tokens={args.new_tokens} "
          f"reps={args.reps} ce_warmup_steps={args.ce_warmup_steps} "
          f"force_signal={not args.no_force_signal}")
    for name, obj in objectives.items():
        print(f"  {name}: {obj.params() if name != 'ce' else 'cross-entropy'}")
        clocks.update(gen=Clock(), score=Clock())
        run_step(model, obj, batch, optimizer, Clock())  # warm-up

    names = list(objectives)
    rows: list[dict[str, float]] = []
    for rep in range(args.reps):
        order = names[rep % len(names):] + names[: rep % len(names)]
        row: dict[str, float] = {}
        for name in order:
            clocks.update(step=Clock(), gen=Clock(), score=Clock())
            metrics = run_step(model, objectives[name], batch, optimizer, clocks["step"])
            for kind in ("wall", "cpu"):
                row[f"{name}_{kind}"] = getattr(clocks["step"], kind)
                row[f"{name}_gen_{kind}"] = getattr(clocks["gen"], kind)
                row[f"{name}_score_{kind}"] = getattr(clocks["score"], kind)
            row[f"{name}_tokens"] = metrics.get("train/sample_tokens", 0.0)
        rows.append(row)

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    print("\nmedian over repetitions; shares are of the RL step; cpu = process CPU time")
    print(f"  {'objective':<12} {'tokens':>6} {'step/CE cpu':>11} {'wall':>6} {'generation':>10} "
          f"{'scoring':>8} {'extra fwd/bwd':>13} {'CE part':>8}")
    for name in names[1:]:
        ratio = {k: statistics.median(r[f"{name}_{k}"] / r[f"ce_{k}"] for r in rows)
                 for k in ("wall", "cpu")}
        step, ce = med(f"{name}_cpu"), med("ce_cpu")
        gen, score = med(f"{name}_gen_cpu"), med(f"{name}_score_cpu")
        extra = step - ce - gen - score
        print(f"  {name:<12} {med(f'{name}_tokens'):6.1f} {ratio['cpu']:10.2f}x "
              f"{ratio['wall']:5.2f}x {gen / step:10.0%} {score / step:8.0%} "
              f"{extra / step:13.0%} {ce / step:8.0%}")
    print(f"  CE step: {med('ce_cpu'):.2f} s cpu, {med('ce_wall'):.2f} s wall; "
          f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
