"""Typed config schemas registered in Hydra's ConfigStore, plus value checks types can't express.

Each config group's YAML files extend the group's schema (``defaults: [<group>_schema, _self_]``),
so a wrong type fails at composition; ``validate`` then checks ranges and combinations before
any model loads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from polylora.errors import ConfigError, PolyloraError
from polylora.judge.settings import DEFAULT_CRITERIA, DEFAULT_MODEL, JudgeConfig
from polylora.record.names import DEFAULT_TRACKING_URI


@dataclass
class ModelConfig:
    """Which base model to load: ``source`` picks the loader (see ``polylora.models``)."""

    name: str = MISSING
    source: str = MISSING  # smollm2_gguf | tiny_random | hf
    path: str | None = None  # local folder or hub id (source=hf)
    adapter: str | None = None  # saved adapter dir or runs:/<id>/adapter to evaluate/continue
    cache_dir: str = "~/.cache/polylora"
    trust_remote_code: bool = False
    # tiny_random only: the architecture built in code for tests.
    hidden_size: int = 32
    intermediate_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    init_seed: int = 0


@dataclass
class LoraConfig:
    """LoRA adapter shape. ``alpha_ratio`` (α/r) wins over ``alpha`` when set, for rank sweeps."""

    enabled: bool = True
    rank: int = 16
    alpha: float | None = 16.0
    alpha_ratio: float | None = None
    dropout: float = 0.1
    target_modules: Any = "all-linear"  # "all-linear" or a list of module names
    bias: str = "none"


@dataclass
class SplitConfig:
    """Seeded train/val/test split; optional stratification or group-aware assignment."""

    train: float = 0.8
    val: float = 0.1
    test: float = 0.1
    seed: int = 0
    stratify_by: str | None = None
    n_bins: int = 4
    group_by: str | None = None


@dataclass
class DataConfig:
    """Where examples come from, how they are split, batched and formatted."""

    name: str = MISSING
    source: Any = MISSING  # a _target_ node building a data source with .load()
    # A _target_ node building a Checker, or null: set by the `checker` config group
    # (polylora/conf/checker/). MISSING here so this schema, merged after the group, keeps
    # its choice.
    checker: Any = MISSING
    path: str | None = None
    split: SplitConfig = field(default_factory=SplitConfig)
    sampler: str = "random"  # random | group_balanced
    partition_by: str | None = None
    partition_value: str | None = None
    prompt_format: str = "chat"  # chat (tokenizer chat template) | plain
    system_prompt: str | None = None
    max_length: int = 128
    few_shot: int = 0  # k training examples placed in the prompt (few-shot baselines)


@dataclass
class JudgeSettings:
    """Optional pairwise LLM judge against a baseline run (key from ANTHROPIC_API_KEY only)."""

    enabled: bool = False
    # MLflow run id whose answers are the baseline, or "references": the data's own responses
    baseline_run: str | None = None
    answers: str = "greedy"  # greedy | first_sample
    model: str = DEFAULT_MODEL
    criteria: list[str] = field(default_factory=lambda: list(DEFAULT_CRITERIA))
    max_calls: int = JudgeConfig.max_calls
    max_cost_usd: float = JudgeConfig.max_cost_usd
    # USD per million tokens; null = the model's entry in polylora.judge.settings.PRICES_PER_MTOK
    # (a model not in the table must be priced here, or the judge refuses to run).
    price_per_mtok_in: float | None = None
    price_per_mtok_out: float | None = None
    cache_dir: str = JudgeConfig.cache_dir
    seed: int = JudgeConfig.seed
    base_url: str | None = None


@dataclass
class CodeExecutionSettings:
    """Model-written code runs only in the OS jail (``polylora.sandbox``); ``unsafe_ok=true``
    is the only way to run it where the jail cannot be built, and it warns."""

    unsafe_ok: bool = False


@dataclass
class EvalConfig:
    """What the end-of-run evaluation generates and scores."""

    name: str = MISSING
    enabled: bool = True
    metrics: list[str] = field(default_factory=list)
    n_samples: int = 10
    ks: list[int] = field(default_factory=lambda: [1, 3, 5, 10])
    subset_size: int = 100
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 16
    greedy: bool = True
    batch_size: int = 16  # prompts per generate call
    log_examples: int = 10
    # Prompts of the validation split scored like the test subset (fixed by id) when
    # optimized_metric names a val/<metric>; null: eval.subset_size.
    val_subset_size: int | None = None
    allow_code_execution: bool = False
    code_execution: CodeExecutionSettings = field(default_factory=CodeExecutionSettings)
    judge: JudgeSettings = field(default_factory=JudgeSettings)
    # Metrics of your own, computed with eval.metrics: [{name, _target_: module.function,
    # direction: maximize|minimize, inputs?, description?, proportion?}] (polylora.metrics.custom)
    custom_metrics: list[Any] = field(default_factory=list)


@dataclass
class HardwareConfig:
    """Device and numeric precision; 4-bit loading for QLoRA on CUDA."""

    name: str = MISSING
    device: str = "cpu"  # cpu | cuda | auto
    precision: str = "fp32"  # fp32 | bf16 | fp16
    load_in_4bit: bool = False
    bnb_4bit_quant_type: str = "nf4"
    gradient_checkpointing: bool = False
    dataloader_workers: int = 0
    # CPU threads for torch (null: torch's default, one per core). On a machine other jobs
    # also load, 1 avoids OpenMP stalls that can slow each step down by an order.
    num_threads: int | None = None
    # CPU mixed precision: off | bf16 | auto (bf16 autocast where the CPU has native bf16,
    # avx512_bf16 or AMX; fp32 elsewhere). Weights stay fp32; CUDA uses ``precision``.
    autocast: str = "off"


@dataclass
class TrainConfig:
    """Optimizer, schedule and the Trainer's cadence (eval/save/early stopping)."""

    enabled: bool = True
    learning_rate: float = 2e-4
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 8
    grad_accum: int = 1
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    lr_scheduler: str = "linear"
    max_grad_norm: float = 1.0
    logging_steps: int = 5
    eval_every: int = 20
    save_every: int = 20
    save_total_limit: int = 2
    early_stopping_patience: int = 3
    resume: bool = False  # continue from the last checkpoint in output_dir
    # The model evaluated at the end: "final" (the last step; early stopping still stops on
    # the validation loss) or "best" (the checkpoint with the best validation loss).
    checkpoint: str = "final"


@dataclass
class TrackingConfig:
    """MLflow destination and grouping of runs."""

    uri: str = DEFAULT_TRACKING_URI
    experiment: str = "polylora"
    run_name: str | None = None
    group: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    log_adapter: bool = True


@dataclass
class CompareConfig:
    """The analysis plan, declared before the runs (``polylora compare`` reads it back from
    the runs' params): one primary endpoint with the direction claimed, non-inferiority
    margins for quality metrics, the level and power the report uses."""

    primary: str | None = None  # e.g. pass@10
    direction: str = "increase"  # increase | decrease: what the candidate does to it
    secondary: list[str] | None = None  # null: every logged metric not excluded
    noninferiority: dict[str, float] = field(default_factory=dict)  # {pass@1: 0.03}
    alpha: float = 0.05
    power: float = 0.80


@dataclass
class PolyloraConfig:
    """The whole composed config (``polylora/conf/config.yaml``)."""

    model: ModelConfig = MISSING
    lora: LoraConfig = MISSING
    objective: Any = MISSING  # a _target_ node: the objective validates its own fields
    data: DataConfig = MISSING
    eval: EvalConfig = MISSING
    hardware: HardwareConfig = MISSING
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    seed: int = 42
    output_dir: str = MISSING
    optimized_metric: Any = "eval/loss"  # a name, or a list of names (multi-objective)
    experiment: str = "default"


def trusted_target_patterns() -> list[str]:
    """The ``_target_`` prefixes polylora imports: its own, plus those in
    ``POLYLORA_TRUSTED_TARGETS`` (comma-separated) for plugins and metrics of your own."""
    import os

    return ["polylora.*"] + [
        p.strip() for p in os.environ.get("POLYLORA_TRUSTED_TARGETS", "").split(",") if p.strip()
    ]


def build(node: Any, **kwargs: Any) -> Any:
    """Instantiate a ``_target_`` node, allowing only :func:`trusted_target_patterns`."""
    from hydra.utils import instantiate

    try:
        return instantiate(node, _execution_whitelist_=trusted_target_patterns(), **kwargs)
    except Exception as exc:  # Hydra wraps the constructor's own error
        cause = exc.__cause__ or exc
        if isinstance(cause, ConfigError | PolyloraError):
            raise cause from None
        target = node.get("_target_", "?") if hasattr(node, "get") else "?"
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise ConfigError(f"cannot build {target}: {first}") from None


def example_data_path(name: str) -> str:
    """``${polylora.example:replies.jsonl}``: the path of a data file shipped with polylora
    (``polylora/data/examples/``), so experiments that use one run from any directory."""
    from pathlib import Path

    path = Path(__file__).parent / "data" / "examples" / name
    if not path.is_file():
        raise ConfigError(f"polylora ships no example data file {name!r} (looked in {path})")
    return str(path)


def _study_name(experiment: str, search: str | None) -> str:
    """``${polylora.study_name:...}`` in conf/sweep/optuna.yaml: the study a search runs in."""
    from polylora.record.names import study_name

    return study_name(str(experiment), str(search) if search else None)


def register_configs() -> None:
    """Put the schemas into Hydra's ConfigStore and polylora's resolvers into OmegaConf
    (idempotent)."""
    from omegaconf import OmegaConf

    from polylora.rundir import register_resolver

    register_resolver()
    OmegaConf.register_resolver("polylora.example", example_data_path, replace=True)
    OmegaConf.register_resolver("polylora.study_name", _study_name, replace=True)
    cs = ConfigStore.instance()
    cs.store(name="polylora_schema", node=PolyloraConfig, replace=True)
    cs.store(group="model", name="model_schema", node=ModelConfig, replace=True)
    cs.store(group="lora", name="lora_schema", node=LoraConfig, replace=True)
    cs.store(group="data", name="data_schema", node=DataConfig, replace=True)
    cs.store(group="eval", name="eval_schema", node=EvalConfig, replace=True)
    cs.store(group="hardware", name="hardware_schema", node=HardwareConfig, replace=True)


MODEL_SOURCES = ("smollm2_gguf", "tiny_random", "hf")
PRECISIONS = ("fp32", "bf16", "fp16")
SAMPLERS = ("random", "group_balanced")
PROMPT_FORMATS = ("chat", "plain")
CHECKPOINTS = ("final", "best")
AUTOCAST_MODES = ("off", "bf16", "auto")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def validate(cfg: DictConfig) -> None:
    """Check ranges and combinations; raise ConfigError naming the key and the fix."""
    m = cfg.model
    _check(
        m.source in MODEL_SOURCES,
        f"model.source={m.source!r} is unknown; use one of {', '.join(MODEL_SOURCES)}",
    )
    _check(
        m.source != "hf" or bool(m.path),
        "model=hf needs model.path=<local folder or cached hub id>, e.g. model.path=Qwen/Qwen3-8B",
    )
    lo = cfg.lora
    if lo.enabled:
        _check(lo.rank > 0, f"lora.rank must be a positive integer, got {lo.rank}")
        _check(
            lo.alpha is not None or lo.alpha_ratio is not None,
            "set lora.alpha or lora.alpha_ratio (α/r)",
        )
        if lo.alpha_ratio is not None:
            _check(lo.alpha_ratio > 0, f"lora.alpha_ratio must be > 0, got {lo.alpha_ratio}")
        elif lo.alpha is not None:
            _check(lo.alpha > 0, f"lora.alpha must be > 0, got {lo.alpha}")
        _check(0.0 <= lo.dropout < 1.0, f"lora.dropout must be in [0, 1), got {lo.dropout}")
    _check(
        lo.enabled or not cfg.train.enabled or bool(m.adapter),
        "lora=none trains nothing; add train.enabled=false to evaluate the base model only",
    )
    sp = cfg.data.split
    fractions = (sp.train, sp.val, sp.test)
    _check(
        all(f >= 0 for f in fractions),
        f"data.split fractions must be >= 0, got train={sp.train} val={sp.val} test={sp.test}",
    )
    _check(
        math.isclose(sum(fractions), 1.0, abs_tol=1e-6),
        f"data.split.train + data.split.val + data.split.test must sum to 1, got "
        f"{sp.train} + {sp.val} + {sp.test} = {sum(fractions):g}",
    )
    _check(sp.train > 0 or not cfg.train.enabled, "data.split.train must be > 0 to train")
    _check(
        cfg.data.sampler in SAMPLERS,
        f"data.sampler={cfg.data.sampler!r} is unknown; use one of {', '.join(SAMPLERS)}",
    )
    _check(
        cfg.data.prompt_format in PROMPT_FORMATS,
        f"data.prompt_format={cfg.data.prompt_format!r} is unknown; use chat or plain",
    )
    _check(cfg.data.max_length >= 8, f"data.max_length must be >= 8, got {cfg.data.max_length}")
    _check(cfg.data.few_shot >= 0, f"data.few_shot must be >= 0, got {cfg.data.few_shot}")
    t = cfg.train
    _check(t.learning_rate > 0, f"train.learning_rate must be > 0, got {t.learning_rate}")
    _check(t.batch_size > 0, f"train.batch_size must be > 0, got {t.batch_size}")
    _check(t.grad_accum > 0, f"train.grad_accum must be > 0, got {t.grad_accum}")
    _check(t.epochs > 0 or t.max_steps > 0, "set train.epochs > 0 or train.max_steps > 0")
    _check(t.eval_every > 0 and t.save_every > 0, "train.eval_every and save_every must be > 0")
    _check(
        t.save_every % t.eval_every == 0,
        f"train.save_every ({t.save_every}) must be a multiple of train.eval_every "
        f"({t.eval_every}) so early stopping can keep the best checkpoint",
    )
    _check(
        t.checkpoint in CHECKPOINTS,
        f"train.checkpoint={t.checkpoint!r} is unknown; use final (the last step) or best "
        "(the best validation loss)",
    )
    h = cfg.hardware
    _check(
        h.precision in PRECISIONS,
        f"hardware.precision={h.precision!r} is unknown; use one of {', '.join(PRECISIONS)}",
    )
    _check(
        h.autocast in AUTOCAST_MODES,
        f"hardware.autocast={h.autocast!r} is unknown; use one of {', '.join(AUTOCAST_MODES)}",
    )
    _check(
        h.num_threads is None or h.num_threads >= 1,
        f"hardware.num_threads must be >= 1 or null, got {h.num_threads}",
    )
    c = cfg.get("compare")
    if c is not None:
        _check(
            c.direction in ("increase", "decrease"),
            f"compare.direction={c.direction!r}: use increase or decrease (what the candidate "
            "is claimed to do to compare.primary)",
        )
        bad = {k: v for k, v in (c.noninferiority or {}).items() if not v > 0}
        _check(not bad, f"compare.noninferiority margins must be > 0, got {bad}; e.g. "
                        "{pass@1: 0.03} (in the metric's own units)")
        _check(0 < c.alpha < 0.5 and c.alpha < c.power < 1,
               f"need 0 < compare.alpha < 0.5 and alpha < compare.power < 1, got alpha="
               f"{c.alpha}, power={c.power}")
    e = cfg.eval
    if e.enabled:
        _check(e.n_samples >= 1, f"eval.n_samples must be >= 1, got {e.n_samples}")
        _check(
            not e.ks or max(e.ks) <= e.n_samples,
            f"eval.n_samples ({e.n_samples}) must be >= the largest k in eval.ks ({max(e.ks)})",
        )
        _check(e.subset_size >= 1, f"eval.subset_size must be >= 1, got {e.subset_size}")
        _check(e.max_new_tokens >= 1, "eval.max_new_tokens must be >= 1")
        _check(e.temperature > 0, f"eval.temperature must be > 0, got {e.temperature}")
        _check(
            not e.judge.enabled or bool(e.judge.baseline_run),
            "eval.judge.enabled=true needs eval.judge.baseline_run=<MLflow run id of the baseline>",
        )
