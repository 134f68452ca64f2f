"""Typed config schemas, one dataclass per config group, registered in Hydra's ConfigStore.

Each config group's YAML files extend the group's schema (``defaults: [<group>_schema, _self_]``),
so a wrong type fails at composition; :mod:`polylora.train.config_checks` then checks ranges and
combinations before any model loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from polylora.errors import ConfigError
from polylora.judge.settings import DEFAULT_CRITERIA, DEFAULT_MODEL, JudgeConfig
from polylora.record.names import DEFAULT_TRACKING_URI, VAL_LOSS


@dataclass
class ModelConfig:
    """Which base model to load: ``source`` picks the loader (see ``polylora.model.loading``)."""

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
    """Model-written code runs only in the OS jail (``polylora.metrics.sandbox``);
    ``unsafe_ok=true`` is the only way to run it where the jail cannot be built, and it warns."""

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
    # Adapters evaluated as one sampler (runs:/<id>/adapter or folders): each prompt's
    # n_samples spread over them round robin; an evaluation-only run (polylora.adapters.ensemble)
    ensemble: list[str] = field(default_factory=list)


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
    # Mixed precision with fp32 weights (under bf16 autocast the frozen base weights are stored
    # in bf16, LoRA stays fp32): auto (bf16 autocast where the hardware computes bf16
    # natively: a CPU with avx512_bf16 or AMX, a GPU of compute capability >= 8; fp32
    # elsewhere) | bf16 | off (fp32: exact reproduction). bf16/fp16 weights use ``precision``.
    autocast: str = "auto"
    # Fix glibc's mmap threshold so freed tensors leave the process (polylora.record.memory): peak
    # memory ~0.3x on make run; false keeps the allocator's default (for A/B timing).
    return_freed_memory: bool = True
    # USD per hour of this hardware, for run/cost_usd (null: 0 on a CPU, an indicative cloud
    # price per GPU for common GPUs: polylora.record.cost.GPU_PRICE_PER_HOUR).
    price_per_hour: float | None = None


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
    # MLflow's system metrics (system/cpu_utilization_percentage, memory, disk, network, and
    # GPU utilisation and memory where nvidia-ml-py finds a GPU), sampled every interval.
    system_metrics: bool = True
    system_metrics_interval_s: float = 10.0


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
    optimized_metric: Any = VAL_LOSS  # a name, or a list of names (multi-objective)
    experiment: str = "default"


def example_data_path(name: str) -> str:
    """``${polylora.example:replies.jsonl}``: the path of a data file shipped with polylora
    (``polylora/data/examples/``), so experiments that use one run from any directory."""
    from pathlib import Path

    path = Path(__file__).parents[1] / "data" / "examples" / name
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

    from polylora.record.rundir import register_resolver

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
