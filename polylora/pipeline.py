"""One job end to end: validate, load data, load model, train, save the adapter, evaluate,
record everything in MLflow, and return the optimized metric.

Long module (~550 lines): the job's steps in order; the run record and the evaluation loop
are to move into modules of their own."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from polylora import preemption, redaction, resume, rundir, tracking
from polylora.checking import Checker
from polylora.config import build, validate
from polylora.data.example import Example
from polylora.data.formatting import EncodedDataset, PromptFormat
from polylora.data.splits import Splits, split_examples
from polylora.errors import ConfigError, DataError
from polylora.memory import peak_rss_mb, phase_metric
from polylora.metrics.checkers import checker_from_config
from polylora.metrics.registry import get_metric
from polylora.metrics.selection import (
    check_optimized_metrics,
    fit_eval_metrics,
    metrics_named_on_command_line,
)
from polylora.objectives.base import Objective, ObjectiveContext
from polylora.optimized_metric import VALIDATION_LOSS, metric_split, optimized_metrics

log = logging.getLogger(__name__)

RUN_ID_FILE = "mlflow_run_id.txt"
#: eval.judge.baseline_run value that judges the run's answers against the data's responses.
REFERENCE_BASELINE = "references"


@dataclass
class Prepared:
    """Everything checked before any model loads or any MLflow run starts."""

    objective: Objective
    examples: list[Example]
    splits: Splits
    checker: Checker | None
    #: eval.metrics as run: without a checker, the checker metrics the eval group listed are
    #: left out (named in ``left_out``) rather than failing the run.
    eval_metrics: list[str] | None = None
    left_out: tuple[str, ...] = ()


def metric_key(name: str) -> str:
    """``eval/pass@10`` → registry name ``pass@10`` (accepts ``pass_at_10`` too)."""
    base = name.split("/", 1)[1] if "/" in name else name
    return base.replace("_at_", "@")


def prepare(cfg: DictConfig) -> Prepared:
    """Validate the config and data; build the objective. Raises PolyloraError on bad input."""
    validate(cfg)
    for name in optimized_metrics(cfg.optimized_metric):
        get_metric(metric_key(name))  # unknown name → ConfigError
    objective = build(cfg.objective, _convert_="all")
    _set_code_execution_policy(cfg)
    checker = checker_from_config(cfg.data.checker, cfg.eval.allow_code_execution)
    objective.check_data(has_checker=checker is not None)
    optimized = [n for n in optimized_metrics(cfg.optimized_metric) if not n.startswith("train/")]
    check_optimized_metrics(
        [metric_key(n) for n in optimized], has_checker=checker is not None, data_name=cfg.data.name
    )
    source = build(cfg.data.source)
    examples = source.load()
    if cfg.data.partition_by:
        examples = partition(examples, cfg.data.partition_by, cfg.data.partition_value)
    sp = cfg.data.split
    splits = split_examples(
        examples,
        train=sp.train,
        val=sp.val,
        test=sp.test,
        seed=sp.seed,
        stratify_by=sp.stratify_by,
        group_by=sp.group_by,
        **({"n_bins": sp.n_bins} if sp.stratify_by else {}),
    )
    eval_metrics, left_out = list(cfg.eval.metrics), ()
    if cfg.eval.enabled:
        eval_metrics, left_out = fit_eval_metrics(
            list(cfg.eval.metrics),
            has_checker=checker is not None,
            explicit=metrics_named_on_command_line(),
            data_name=cfg.data.name,
        )
    if cfg.train.enabled and not splits.train:
        raise DataError(f"the training split is empty ({len(examples)} examples in all)")
    if cfg.eval.enabled and not splits.test:
        raise DataError("the test split is empty; raise data.split.test or add examples")
    if validation_metrics(cfg) and not (cfg.eval.enabled and splits.val):
        raise ConfigError(
            f"optimized_metric names {', '.join(validation_metrics(cfg))}, scored on the "
            "validation split, but " + ("eval.enabled=false" if not cfg.eval.enabled else
                                        "the validation split is empty (raise data.split.val)")
        )
    return Prepared(
        objective=objective,
        examples=examples,
        splits=splits,
        checker=checker,
        eval_metrics=eval_metrics,
        left_out=tuple(left_out),
    )


def validation_metrics(cfg: DictConfig) -> list[str]:
    """The ``val/<metric>`` names of ``optimized_metric`` that need the validation eval subset
    (the validation loss needs none: it is the early-stopping curve)."""
    return [n for n in optimized_metrics(cfg.optimized_metric)
            if metric_split(n) == "validation" and n not in VALIDATION_LOSS]


def _set_code_execution_policy(cfg: DictConfig) -> None:
    """``eval.code_execution.unsafe_ok`` → the sandbox's process-wide policy (warned)."""
    from polylora import sandbox

    unsafe_ok = bool(OmegaConf.select(cfg, "eval.code_execution.unsafe_ok", default=False))
    if unsafe_ok:
        log.warning(
            "eval.code_execution.unsafe_ok=true: where the jail cannot be built, model-written "
            "code runs WITHOUT it"
        )
    sandbox.allow_unsafe(unsafe_ok)


def partition(examples: list[Example], field: str, value: Any) -> list[Example]:
    """The examples whose ``field`` (or group) equals ``value`` (one per-cluster adapter)."""
    if value is None:
        raise ConfigError(
            f"data.partition_by={field} needs data.partition_value=<value> (a multirun over "
            "the values trains one adapter each)"
        )

    def get(e: Example) -> Any:
        if field == "group":
            return e.group
        if field not in e.fields:
            raise DataError(
                f"data.partition_by={field!r}: example {e.id!r} has no such field "
                f"(fields: {', '.join(sorted(e.fields)) or 'none'})"
            )
        return e.fields[field]

    chosen = [e for e in examples if str(get(e)) == str(value)]
    if not chosen:
        raise DataError(f"no example has {field}={value!r}")
    return chosen


def prompt_format(cfg: DictConfig, train_examples: list[Example]) -> PromptFormat:
    """The prompt format, with ``data.few_shot`` training examples as demonstrations."""
    shots = tuple(sorted(train_examples, key=lambda e: e.id)[: cfg.data.few_shot])
    return PromptFormat(
        style=cfg.data.prompt_format, system_prompt=cfg.data.system_prompt, shots=shots
    )


def run_tags(cfg: DictConfig) -> dict[str, str]:
    """Tags: experiment, group (for seed aggregation), objective, overrides, git commit."""
    tags: dict[str, Any] = {
        "polylora.experiment": cfg.experiment,
        "polylora.group": cfg.tracking.group,
        "polylora.objective": getattr(cfg.objective, "_target_", "").rsplit(".", 1)[-1],
        "polylora.seed": cfg.seed,
        "polylora.checkpoint": cfg.train.get("checkpoint", "final") if cfg.train.enabled else None,
        "polylora.output_dir": cfg.output_dir,
        "mlflow.source.git.commit": tracking.git_commit(),
    }
    try:
        from hydra.core.hydra_config import HydraConfig

        tags["polylora.overrides"] = " ".join(HydraConfig.get().overrides.task)
    except ValueError:  # not running under Hydra (tests composing the config)
        pass
    if cfg.data.partition_by:
        tags["polylora.partition"] = f"{cfg.data.partition_by}={cfg.data.partition_value}"
    tags.update(cfg.tracking.tags or {})
    return {k: str(v) for k, v in tags.items() if v is not None}


@dataclass
class RunResult:
    """What one job produced: its metrics, the model it ended with, and where it wrote."""

    metrics: dict[str, float]
    run_id: str
    output_dir: Path
    model: Any = None
    tokenizer: Any = None


def run(cfg: DictConfig) -> float | tuple[float, ...]:
    """The whole job. Returns the value of ``cfg.optimized_metric`` for sweeps (a tuple, one
    value per metric, when it is a list: a multi-objective sweep)."""
    result = execute(cfg)
    if not result.run_id:  # a DDP worker rank: rank 0 reports the metric
        return float("nan")
    values = tuple(
        _optimized_value(name, result.metrics) for name in optimized_metrics(cfg.optimized_metric)
    )
    return values[0] if isinstance(cfg.optimized_metric, str) else values


def execute(cfg: DictConfig) -> RunResult:
    """Validate, train, evaluate and record one configuration."""
    from transformers import set_seed

    started = time.time()
    redaction.redact_hydra_dumps()
    prep = prepare(cfg)
    if cfg.hardware.num_threads:
        import torch

        torch.set_num_threads(cfg.hardware.num_threads)
    if not tracking.is_main_process():
        return _train_only(cfg, prep)
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run_id_path = out_dir / RUN_ID_FILE
    resume_id = None
    if cfg.train.resume and run_id_path.exists():  # continue the same MLflow run
        resume_id = run_id_path.read_text().strip()
    if cfg.train.resume:
        resume.check(cfg, out_dir / "checkpoints")  # a changed training config is refused
    with (
        rundir.claim(out_dir),
        preemption.handle_sigterm(),
        tracking.mlflow_run(cfg, run_tags(cfg), resume_id) as active,
    ):
        run_id_path.write_text(active.info.run_id)
        (out_dir / "config.yaml").write_text(redaction.config_yaml(cfg))
        tracking.log_artifact(out_dir / "config.yaml")
        log_data_summary(cfg, prep, out_dir)
        set_seed(cfg.seed)
        metrics, model, tok = _train_and_evaluate(cfg, prep, out_dir)
        metrics["run/wall_time_s"] = time.time() - started
        metrics["run/peak_rss_mb"] = peak_rss_mb()
        final_step = int(metrics.get("train/steps", 0))
        tracking.log_metrics(
            {k: v for k, v in metrics.items() if k not in ("eval/loss", "eval/perplexity")},
            step=final_step,
        )
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
        for name in optimized_metrics(cfg.optimized_metric):  # fail the run if one is missing
            _optimized_value(name, metrics)
        return RunResult(
            metrics=metrics,
            run_id=active.info.run_id,
            output_dir=out_dir,
            model=model,
            tokenizer=tok,
        )


def log_data_summary(cfg: DictConfig, prep: Prepared, out_dir: Path) -> None:
    """Split sizes (and groups per split) as metrics, the small-data size bucket as a tag,
    and each split as an MLflow dataset input."""
    import mlflow

    from polylora.report.diagnose import dataset_size_bucket

    report = prep.splits.report()
    metrics = {f"data/{name}": float(n) for name, n in report["counts"].items()}
    metrics["data/total"] = float(report["total"])
    for name, n in (report.get("groups") or {}).items():
        metrics[f"data/groups_{name}"] = float(n)
    tracking.log_metrics(metrics)
    mlflow.set_tag("polylora.dataset_size_bucket", dataset_size_bucket(len(prep.splits.train)))
    if prep.left_out:
        mlflow.set_tag("polylora.metrics_left_out", ",".join(prep.left_out))
    path = out_dir / "split_report.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    tracking.log_artifact(path)
    data_path = OmegaConf.select(cfg, "data.path", default=None)
    source = {"polylora.data": str(cfg.data.name)}
    if data_path:
        source["path"] = str(data_path)
    splits = {"train": prep.splits.train, "validation": prep.splits.val, "test": prep.splits.test}
    tracking.log_datasets(splits, str(cfg.data.name), source)


def log_truncation(split: str, data: EncodedDataset, max_length: int) -> None:
    """Log what ``data.max_length`` cut from a split (one line, and data/* metrics)."""
    line = data.truncation.summary(split, max_length)
    if line:
        log.warning(line)
    tracking.log_metrics(data.truncation.metrics(split))


def _train_only(cfg: DictConfig, prep: Prepared) -> RunResult:
    """A DDP worker rank (RANK > 0 under torchrun / accelerate launch): trains in lockstep
    with rank 0 and records nothing; rank 0 logs, saves the adapter and evaluates."""
    from transformers import set_seed

    set_seed(cfg.seed)
    out_dir = Path(cfg.output_dir)
    model, tok = _load_model(cfg)
    metrics: dict[str, float] = {}
    if cfg.train.enabled:
        metrics = _train(cfg, prep, model, tok, prompt_format(cfg, prep.splits.train), out_dir)
    return RunResult(metrics=metrics, run_id="", output_dir=out_dir, model=model, tokenizer=tok)


def _load_model(cfg: DictConfig) -> tuple[Any, Any]:
    """The base model with a fresh LoRA adapter, or the saved one of ``model.adapter``."""
    from polylora import models

    model, tok = models.load_base_model(cfg.model, cfg.hardware)
    if cfg.model.adapter:
        model = models.load_adapter(model, cfg.model.adapter, trainable=cfg.train.enabled)
    elif cfg.lora.enabled:
        model = models.wrap_lora(model, cfg.lora, cfg.hardware)
    return model, tok


def _optimized_value(name: str, metrics: dict[str, float]) -> float:
    if name.startswith("train/"):
        wanted = name
    elif name in VALIDATION_LOSS:  # val/loss is the validation curve's last point, eval/loss
        wanted = "eval/" + name.split("/", 1)[1]
    elif name.startswith("val/"):
        wanted = f"val/{metric_key(name)}"
    else:
        wanted = f"eval/{metric_key(name)}"
    if wanted not in metrics:
        raise ConfigError(
            f"optimized_metric={name} was not computed by this run; computed: "
            f"{', '.join(sorted(metrics))} (add it to eval.metrics)"
        )
    return float(metrics[wanted])


def _train_and_evaluate(
    cfg: DictConfig, prep: Prepared, out_dir: Path
) -> tuple[dict[str, float], Any, Any]:
    from polylora import models
    from polylora.evaluation import evaluate

    model, tok = _load_model(cfg)
    if not cfg.train.enabled:
        model.requires_grad_(False)
    trainable, total = models.count_parameters(model)
    metrics: dict[str, float] = {"model/trainable_params": trainable, "model/total_params": total}
    tracking.log_metrics({**metrics, **phase_metric("load")})
    fmt = prompt_format(cfg, prep.splits.train)
    step = 0
    if cfg.train.enabled:
        metrics.update(_train(cfg, prep, model, tok, fmt, out_dir))
        step = int(metrics["train/steps"])
        tracking.log_metrics(phase_metric("train"), step=step)
    if prep.splits.val:
        metrics.update(_validation_loss(cfg, model, tok, fmt, prep.splits.val, step))
    if validation_metrics(cfg):
        metrics.update(_validation_eval(cfg, prep, model, tok, fmt, out_dir))
    if cfg.eval.enabled:
        from polylora.evaluation import eval_subset

        eval_cfg = cfg.eval
        if prep.left_out:  # the metrics this data can score without a checker
            eval_cfg = OmegaConf.merge(cfg.eval, {"metrics": prep.eval_metrics})

        subset = eval_subset(prep.splits.test, cfg.eval.subset_size)
        log_truncation("test", EncodedDataset(subset, tok, fmt, cfg.data.max_length),
                       cfg.data.max_length)
        report = evaluate(
            model, tok, prep.splits.test, fmt, eval_cfg, prep.checker, cfg.data.max_length,
            autocast=models.autocast_dtype(cfg.hardware),
        )
        tracking.log_metrics(phase_metric("eval"), step=step)
        path = report.write_jsonl(out_dir / "generations.jsonl")
        tracking.log_artifact(path, "eval")
        _log_passk_plot(report.metrics, out_dir)
        _log_sample_table(report.rows[: cfg.eval.log_examples])
        metrics.update(report.metrics)
        if cfg.eval.judge.enabled:
            metrics.update(_judge_against_baseline(cfg, report.rows, out_dir))
    return metrics, model, tok


def _train(
    cfg: DictConfig, prep: Prepared, model: Any, tok: Any, fmt: PromptFormat, out_dir: Path
) -> dict[str, float]:
    from polylora import training

    encoded_train = EncodedDataset(prep.splits.train, tok, fmt, cfg.data.max_length)
    log_truncation("train", encoded_train, cfg.data.max_length)
    train_set = training.IndexedDataset(encoded_train)
    val_set = None
    if prep.splits.val:
        encoded_val = EncodedDataset(prep.splits.val, tok, fmt, cfg.data.max_length)
        log_truncation("val", encoded_val, cfg.data.max_length)
        val_set = training.IndexedDataset(encoded_val)
    prep.objective.bind(
        ObjectiveContext(
            tokenizer=tok,
            examples=prep.splits.train,
            prompt_format=fmt,
            checker=prep.checker,
            max_length=cfg.data.max_length,
        )
    )
    checkpoint_dir = out_dir / "checkpoints"
    args = training.training_arguments(cfg, checkpoint_dir, has_eval=val_set is not None)
    trainer = training.PolyloraTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=val_set,
        data_collator=training.IndexedCollator(tok.pad_token_id),
        callbacks=training.build_callbacks(cfg, tracking.log_metrics, val_set is not None),
        objective=prep.objective,
        batch_sampler_factory=_batch_sampler_factory(cfg, prep.splits.train),
    )
    trainer.add_callback(preemption.PreemptionCallback())
    last = training.last_checkpoint(checkpoint_dir) if cfg.train.resume else None
    if cfg.train.resume and last is None:
        log.warning("train.resume=true but no checkpoint in %s: starting fresh", checkpoint_dir)
    if last is None and tracking.is_main_process():
        resume.record(cfg, checkpoint_dir)
    started = time.time()
    with preemption.deferred():
        result = trainer.train(resume_from_checkpoint=str(last) if last else None)
    adapter_dir = out_dir / "adapter"
    if trainer.is_world_process_zero():
        trainer.model.save_pretrained(adapter_dir)
    if cfg.tracking.log_adapter:
        tracking.log_artifact(adapter_dir, "adapter")
    out = {
        "train/final_loss": float(result.training_loss),
        "train/steps": float(trainer.state.global_step),
        "train/evaluated_step": float(training.evaluated_step(trainer)),
        "train/wall_time_s": time.time() - started,
    }
    evals = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    if evals:
        out["train/best_eval_loss"] = min(evals)
    return out


def _judge_against_baseline(
    cfg: DictConfig, rows: list[dict[str, Any]], out_dir: Path
) -> dict[str, float]:
    """LLM-judge this run's answers against ``eval.judge.baseline_run`` (skipped without a
    key: the run still finishes)."""
    from polylora.metrics import judge_cli

    if not cfg.eval.judge.baseline_run:
        raise ConfigError("eval.judge.enabled=true needs eval.judge.baseline_run=<MLflow run id>")
    settings = OmegaConf.to_container(cfg.eval.judge, resolve=True)
    if cfg.eval.judge.baseline_run == REFERENCE_BASELINE:  # the data's own responses
        baseline = [{**r, "greedy": r["references"][0], "samples": r["references"][:1]}
                    for r in rows]
        labels = ("reference", "candidate")
    else:
        baseline = judge_cli.load_run_rows(cfg.eval.judge.baseline_run, cfg.tracking.uri)
        labels = ("baseline", "candidate")
    result = judge_cli.judge_rows(
        baseline, rows, judge_cli.judge_config(settings), cfg.eval.judge.answers, labels
    )
    if result is None:
        return {}
    path = result.write_jsonl(out_dir / "judge.jsonl")
    tracking.log_artifact(path, "eval")
    return {k: float(v) for k, v in result.to_metrics().items() if isinstance(v, (int, float))}


def _log_passk_plot(metrics: dict[str, float], out_dir: Path) -> None:
    """pass@k vs k with margins of error, when the run computed pass@k."""
    from polylora.report.plots import passk_plot

    with contextlib.suppress(DataError):  # no pass@k in this run's metrics
        tracking.log_artifact(passk_plot(metrics, out_dir / "passk.png"), "eval")


def _validation_loss(
    cfg: DictConfig, model: Any, tok: Any, fmt: PromptFormat, val: list[Example], step: int
) -> dict[str, float]:
    """Final reference loss on the validation split, the last point of the eval/loss curve
    (with early stopping this is the best checkpoint's)."""
    import math

    from polylora.evaluation import reference_nll
    from polylora.models import autocast_dtype

    nll = reference_nll(model, tok, val, fmt, cfg.data.max_length, cfg.train.batch_size,
                        autocast=autocast_dtype(cfg.hardware))
    loss = sum(nll) / len(nll)
    out = {"eval/loss": loss, "eval/perplexity": math.exp(min(loss, 50.0))}
    tracking.log_metrics(out, step=step)
    return out


def _validation_eval(
    cfg: DictConfig, prep: Prepared, model: Any, tok: Any, fmt: PromptFormat, out_dir: Path
) -> dict[str, float]:
    """The test evaluation's machinery on a fixed subset of the validation split (by id), so
    searches optimize ``val/<metric>`` and never see the test split."""
    from polylora.evaluation import MODEL_METRICS, evaluate
    from polylora.models import autocast_dtype

    settings = OmegaConf.to_container(cfg.eval, resolve=True)
    settings["subset_size"] = cfg.eval.get("val_subset_size") or cfg.eval.subset_size
    metrics = prep.eval_metrics if prep.eval_metrics is not None else list(cfg.eval.metrics)
    settings["metrics"] = [m for m in metrics if m not in MODEL_METRICS]
    report = evaluate(model, tok, prep.splits.val, fmt, OmegaConf.create(settings),
                      prep.checker, cfg.data.max_length, autocast=autocast_dtype(cfg.hardware))
    path = report.write_jsonl(out_dir / "val_generations.jsonl")
    tracking.log_artifact(path, "val")
    return {"val/" + k.split("/", 1)[1]: v for k, v in report.metrics.items()}


def _batch_sampler_factory(cfg: DictConfig, train: list[Example]) -> Any:
    if cfg.data.sampler != "group_balanced":
        return None
    from polylora.data.samplers import GroupBalancedBatchSampler

    field = cfg.data.split.group_by or "group"
    groups = [str(e.group if field == "group" else e.fields.get(field)) for e in train]
    return lambda batch_size: GroupBalancedBatchSampler(groups, batch_size, seed=cfg.seed)


def _log_sample_table(rows: list[dict[str, Any]]) -> None:
    """A few generations as an MLflow table (for 'review sample outputs')."""
    import mlflow

    if not rows:
        return
    table = {
        "id": [r["id"] for r in rows],
        "prompt": [
            r["prompt"] if isinstance(r["prompt"], str) else json.dumps(r["prompt"]) for r in rows
        ],
        "greedy": [r["greedy"] or "" for r in rows],
        "samples": [" | ".join(r["samples"][:5]) for r in rows],
        "reference": [r["references"][0] for r in rows],
    }
    mlflow.log_table(data=table, artifact_file="eval/samples.json")
