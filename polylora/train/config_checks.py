"""One validation style: each config group's checks are a function ``check_<group>(cfg) ->
list[str]`` of readable problems (each naming the key and the fix); :func:`validate` collects
every group's and raises one :class:`~polylora.errors.ConfigError` listing them all."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from polylora.errors import ConfigError, Problems, raise_problems

MODEL_SOURCES = ("smollm2_gguf", "tiny_random", "hf")
PRECISIONS = ("fp32", "bf16", "fp16")
SAMPLERS = ("random", "group_balanced")
PROMPT_FORMATS = ("chat", "plain")
CHECKPOINTS = ("final", "best")
AUTOCAST_MODES = ("off", "bf16", "auto")


def check_model(cfg: DictConfig) -> list[str]:
    """``model.*``: a known loader, and a path for ``model=hf``."""
    p, m = Problems(), cfg.model
    p.check(
        m.source in MODEL_SOURCES,
        f"model.source={m.source!r} is unknown; use one of {', '.join(MODEL_SOURCES)}",
    )
    p.check(
        m.source != "hf" or bool(m.path),
        "model=hf needs model.path=<local folder or cached hub id>, e.g. model.path=Qwen/Qwen3-8B",
    )
    return p


def check_lora(cfg: DictConfig) -> list[str]:
    """``lora.*``: a positive rank and α (or α/r), dropout in [0, 1); something to train."""
    p, lo = Problems(), cfg.lora
    if lo.enabled:
        p.check(lo.rank > 0, f"lora.rank must be a positive integer, got {lo.rank}")
        p.check(
            lo.alpha is not None or lo.alpha_ratio is not None,
            "set lora.alpha or lora.alpha_ratio (α/r)",
        )
        if lo.alpha_ratio is not None:
            p.check(lo.alpha_ratio > 0, f"lora.alpha_ratio must be > 0, got {lo.alpha_ratio}")
        elif lo.alpha is not None:
            p.check(lo.alpha > 0, f"lora.alpha must be > 0, got {lo.alpha}")
        p.check(0.0 <= lo.dropout < 1.0, f"lora.dropout must be in [0, 1), got {lo.dropout}")
    p.check(
        lo.enabled or not cfg.train.enabled or bool(cfg.model.adapter),
        "lora=none trains nothing; add train.enabled=false to evaluate the base model only",
    )
    return p


def check_data(cfg: DictConfig) -> list[str]:
    """``data.*``: split fractions summing to 1, known sampler and prompt format, lengths."""
    from polylora.data.splits import check_split

    p, d = Problems(), cfg.data
    sp = d.split
    p += check_split(sp.train, sp.val, sp.test, sp.stratify_by, sp.group_by, sp.n_bins)
    p.check(sp.train > 0 or not cfg.train.enabled, "data.split.train must be > 0 to train")
    p.check(
        d.sampler in SAMPLERS,
        f"data.sampler={d.sampler!r} is unknown; use one of {', '.join(SAMPLERS)}",
    )
    p.check(
        d.prompt_format in PROMPT_FORMATS,
        f"data.prompt_format={d.prompt_format!r} is unknown; use chat or plain",
    )
    p.check(d.max_length >= 8, f"data.max_length must be >= 8, got {d.max_length}")
    p.check(d.few_shot >= 0, f"data.few_shot must be >= 0, got {d.few_shot}")
    return p


def check_train(cfg: DictConfig) -> list[str]:
    """``train.*``: positive rates and sizes, a cadence early stopping can keep the best of."""
    p, t = Problems(), cfg.train
    p.check(t.learning_rate > 0, f"train.learning_rate must be > 0, got {t.learning_rate}")
    p.check(t.batch_size > 0, f"train.batch_size must be > 0, got {t.batch_size}")
    p.check(t.grad_accum > 0, f"train.grad_accum must be > 0, got {t.grad_accum}")
    p.check(t.epochs > 0 or t.max_steps > 0, "set train.epochs > 0 or train.max_steps > 0")
    if p.check(t.eval_every > 0 and t.save_every > 0,
               "train.eval_every and save_every must be > 0"):
        p.check(
            t.save_every % t.eval_every == 0,
            f"train.save_every ({t.save_every}) must be a multiple of train.eval_every "
            f"({t.eval_every}) so early stopping can keep the best checkpoint",
        )
    p.check(
        t.checkpoint in CHECKPOINTS,
        f"train.checkpoint={t.checkpoint!r} is unknown; use final (the last step) or best "
        "(the best validation loss)",
    )
    return p


def check_hardware(cfg: DictConfig) -> list[str]:
    """``hardware.*``: known precision and autocast mode, a thread count >= 1."""
    p, h = Problems(), cfg.hardware
    p.check(
        h.precision in PRECISIONS,
        f"hardware.precision={h.precision!r} is unknown; use one of {', '.join(PRECISIONS)}",
    )
    p.check(
        h.autocast in AUTOCAST_MODES,
        f"hardware.autocast={h.autocast!r} is unknown; use one of {', '.join(AUTOCAST_MODES)}",
    )
    p.check(
        h.num_threads is None or h.num_threads >= 1,
        f"hardware.num_threads must be >= 1 or null, got {h.num_threads}",
    )
    return p


def check_compare(cfg: DictConfig) -> list[str]:
    """``compare.*``: the analysis plan's direction, margins, level and power."""
    p, c = Problems(), cfg.get("compare")
    if c is None:
        return p
    p.check(
        c.direction in ("increase", "decrease"),
        f"compare.direction={c.direction!r}: use increase or decrease (what the candidate "
        "is claimed to do to compare.primary)",
    )
    bad = {k: v for k, v in (c.noninferiority or {}).items() if not v > 0}
    p.check(not bad, f"compare.noninferiority margins must be > 0, got {bad}; e.g. "
                     "{pass@1: 0.03} (in the metric's own units)")
    p.check(0 < c.alpha < 0.5 and c.alpha < c.power < 1,
            f"need 0 < compare.alpha < 0.5 and alpha < compare.power < 1, got alpha="
            f"{c.alpha}, power={c.power}")
    return p


def check_eval(cfg: DictConfig) -> list[str]:
    """``eval.*``: sample counts that cover the ks, sizes >= 1, the judge's settings and the
    declarations of custom metrics (their import is checked when they are registered)."""
    from polylora.judge.settings import check_judge
    from polylora.metrics.custom import check_custom_metrics

    p, e = Problems(), cfg.eval
    p += check_custom_metrics(e.get("custom_metrics"))
    if not e.enabled:
        return p
    p.check(e.n_samples >= 1, f"eval.n_samples must be >= 1, got {e.n_samples}")
    p.check(
        not e.ks or max(e.ks) <= e.n_samples,
        f"eval.n_samples ({e.n_samples}) must be >= the largest k in eval.ks "
        f"({max(e.ks) if e.ks else None})",
    )
    p.check(e.subset_size >= 1, f"eval.subset_size must be >= 1, got {e.subset_size}")
    p.check(e.max_new_tokens >= 1, "eval.max_new_tokens must be >= 1")
    p.check(e.temperature > 0, f"eval.temperature must be > 0, got {e.temperature}")
    judge = e.get("judge")
    if judge is not None and judge.get("enabled"):
        p.check(
            bool(judge.baseline_run),
            "eval.judge.enabled=true needs eval.judge.baseline_run=<MLflow run id of the baseline>",
        )
        settings = cast(dict[str, Any], OmegaConf.to_container(judge, resolve=True))
        p += check_judge(settings)
    return p


def check_optimized_metric(cfg: DictConfig) -> list[str]:
    """``optimized_metric``: names of the registry or of ``eval.custom_metrics`` (registered
    later, with the run); a ``val/<metric>`` needs the evaluation that scores it."""
    from polylora.metrics.registry import get_metric
    from polylora.record.names import (
        VALIDATION_LOSS,
        canonical_metric,
        metric_split,
        optimized_metrics,
    )

    p = Problems()
    try:
        names = optimized_metrics(cfg.optimized_metric)
    except ConfigError as exc:
        return [str(exc)]
    custom = {str(e.get("name")) for e in cfg.eval.get("custom_metrics") or []}
    for name in names:
        if canonical_metric(name) in custom:
            continue
        try:
            get_metric(canonical_metric(name))
        except ConfigError as exc:
            p.append(f"optimized_metric={name}: {exc}")
    scored = [n for n in names if metric_split(n) == "validation" and n not in VALIDATION_LOSS]
    p.check(
        not scored or bool(cfg.eval.enabled),
        f"optimized_metric names {', '.join(scored)}, scored on the validation split, but "
        "eval.enabled=false",
    )
    return p


#: Every group's checks, in the order their problems are listed.
CHECKS: tuple[Callable[[DictConfig], list[str]], ...] = (
    check_model, check_lora, check_data, check_train, check_hardware, check_compare, check_eval,
    check_optimized_metric,
)  # fmt: skip


def problems(cfg: DictConfig) -> list[str]:
    """Every problem every group's check finds in ``cfg``."""
    return [problem for check in CHECKS for problem in check(cfg)]


def validate(cfg: DictConfig) -> None:
    """Check ranges and combinations of every group; raise one ConfigError listing every
    problem (each naming the key and the fix)."""
    raise_problems(problems(cfg))
