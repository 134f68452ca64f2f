"""One job end to end: validate, load data, load model, train, save the adapter, evaluate,
record everything in MLflow, and return the optimized metric.

The one orchestrator of a run: every run polylora records goes through :func:`execute`,
whether it trains, evaluates a saved or merged adapter (``train.enabled=false
model.adapter=...``), or evaluates a model built by its caller (a routed mixture of adapters:
``execute(cfg, given=...)``). The checks before the job are :mod:`polylora.train.preparation`, the
evaluation :mod:`polylora.evaluate.loop`, what the run records :mod:`polylora.record`."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, Protocol, cast

from omegaconf import DictConfig

from polylora.data.example import Example
from polylora.data.formatting import EncodedDataset, PromptFormat
from polylora.errors import ConfigError
from polylora.evaluate.given import GivenModel, ModelBuilder
from polylora.evaluate.loop import evaluate_adapter, log_truncation
from polylora.model import throughput
from polylora.objectives.base import ObjectiveContext
from polylora.record import cost, names, reader, redaction, rundir, tracking, writer
from polylora.record.memory import phase_metric, release_memory, return_freed_memory
from polylora.record.names import VALIDATION_LOSS, canonical_metric, optimized_metrics
from polylora.train import preemption, pruning, resume
from polylora.train.preparation import Prepared, prepare, prompt_format

__all__ = ["GivenModel", "ModelBuilder", "Prepared", "RunResult", "execute",
           "execute_in_fresh_process", "prepare", "prompt_format", "run"]

log = logging.getLogger(__name__)


class SavesPretrained(Protocol):
    """A trained model that writes itself to a folder (a PEFT model writes its adapter)."""

    def save_pretrained(self, save_directory: str | Path) -> Any: ...


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
    import optuna

    pruned: str | None = None
    try:
        result = execute(cfg)
    except optuna.TrialPruned as exc:
        pruned = str(exc)  # the traceback's frames hold the model: let them go first
    if pruned is not None:
        release_memory()
        raise optuna.TrialPruned(pruned)
    if not result.run_id:  # a DDP worker rank: rank 0 reports the metric
        return float("nan")
    if cfg.eval.get("ensemble"):  # evaluation only: the metric, where an ensemble computes it
        values = tuple(_ensemble_value(name, result.metrics)
                       for name in optimized_metrics(cfg.optimized_metric))
        return values[0] if isinstance(cfg.optimized_metric, str) else values
    values = tuple(
        _optimized_value(name, result.metrics) for name in optimized_metrics(cfg.optimized_metric)
    )
    return values[0] if isinstance(cfg.optimized_metric, str) else values


def execute(cfg: DictConfig, given: ModelBuilder | None = None,
            tags: Mapping[str, str] | None = None) -> RunResult:
    """Validate, train, evaluate and record one configuration (``eval.ensemble``: evaluate
    those adapters as one sampler instead, training nothing).

    ``given`` replaces the model the config names with one its caller builds, evaluated and
    recorded like any run but never trained (``train.enabled`` must be false); ``tags`` are
    added to the run's tags."""
    import optuna
    from transformers import set_seed

    if given is not None and cfg.train.enabled:
        raise ConfigError("this run evaluates a model it is given and trains nothing; set "
                          "train.enabled=false")
    if cfg.eval.get("ensemble"):
        from polylora.adapters.ensemble import evaluate_ensemble

        done = evaluate_ensemble(cfg)
        return RunResult(metrics=done.metrics, run_id=done.run_id, output_dir=done.output_dir)

    started = time.time()
    if cfg.hardware.get("return_freed_memory", True):  # before the model loads: freed
        return_freed_memory()  # activations leave RSS (the peak)
    redaction.redact_hydra_dumps()
    prep = prepare(cfg)
    if cfg.hardware.num_threads:
        import torch

        torch.set_num_threads(cfg.hardware.num_threads)
    if not tracking.is_main_process():
        return _train_only(cfg, prep)
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run_id_path = out_dir / names.RUN_ID_FILE
    resume_id = None
    if cfg.train.resume and run_id_path.exists():  # continue the same MLflow run
        resume_id = run_id_path.read_text().strip()
    if cfg.train.resume:
        resume.check(cfg, out_dir / names.CHECKPOINT_DIR)  # a changed training config is refused
    with (
        rundir.claim(out_dir),
        preemption.handle_sigterm(),
        writer.recorded_run(cfg, writer.run_tags(cfg, tags), prep.splits, prep.left_out,
                            out_dir, resume_id) as active,
    ):
        set_seed(cfg.seed)
        price = cost.price_per_hour(cfg.hardware)
        generated = throughput.GENERATION.snapshot()
        try:
            metrics, model, tok = _train_and_evaluate(cfg, prep, out_dir, given)
        except optuna.TrialPruned:  # what it cost so far, then the sweeper records it PRUNED
            writer.log_metrics(cost.run_cost(price, time.time() - started, {}))
            raise
        metrics.update(throughput.generation_since(generated))
        writer.finish_run(metrics, out_dir, started, int(metrics.get(names.TRAIN_STEPS, 0)),
                          price_per_hour=price)
        for name in optimized_metrics(cfg.optimized_metric):  # fail the run if one is missing
            _optimized_value(name, metrics)
        return RunResult(
            metrics=metrics,
            run_id=active.info.run_id,
            output_dir=out_dir,
            model=model,
            tokenizer=tok,
        )


def execute_in_fresh_process(cfg: DictConfig) -> RunResult:
    """:func:`execute` in a new (spawned) Python process; the result comes back without the
    model, an error is raised here.

    Why a fresh process: a run records its peak memory (``run/peak_rss_mb``, the process's
    high-water mark, which never goes down) and the cost derived from it. A caller that held
    models before the run (``polylora merge`` loads the base model and every adapter to merge
    them) would have its own peak recorded as the run's; a new process measures the run alone,
    as ``python -m polylora`` would.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_execute_detached, cfg).result()


def _execute_detached(cfg: DictConfig) -> RunResult:
    """The body of :func:`execute_in_fresh_process`: the child sets up what ``python -m
    polylora`` does (config resolvers, secret redaction in logs, INFO logging) and runs."""
    from polylora.config import register_configs

    register_configs()
    redaction.install_log_redaction()
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - "
                        "%(message)s")
    done = execute(cfg)
    return RunResult(metrics=done.metrics, run_id=done.run_id, output_dir=done.output_dir)


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
    from polylora.model import loading as models

    model, tok = models.load_base_model(cfg.model, cfg.hardware)
    if cfg.model.adapter:
        model = models.load_adapter(model, reader.resolve_adapter(cfg.model.adapter),
                                    trainable=cfg.train.enabled, ref=cfg.model.adapter)
    elif cfg.lora.enabled:
        model = models.wrap_lora(model, cfg.lora, cfg.hardware)
    return model, tok


def _ensemble_value(name: str, metrics: dict[str, float]) -> float:
    """An ensemble run's value of ``optimized_metric``: NaN where it has none (a loss)."""
    try:
        return _optimized_value(name, metrics)
    except ConfigError:
        return float("nan")


def _optimized_value(name: str, metrics: dict[str, float]) -> float:
    if name.startswith(names.TRAIN_PREFIX):
        wanted = name
    elif name in VALIDATION_LOSS:  # val/loss is the validation curve's last point, eval/loss
        wanted = names.EVAL_PREFIX + name.split("/", 1)[1]
    elif name.startswith(names.VAL_PREFIX):
        wanted = names.VAL_PREFIX + canonical_metric(name)
    else:
        wanted = names.EVAL_PREFIX + canonical_metric(name)
    if wanted not in metrics:
        raise ConfigError(
            f"optimized_metric={name} was not computed by this run; computed: "
            f"{', '.join(sorted(metrics))} (add it to eval.metrics)"
        )
    return float(metrics[wanted])


def _train_and_evaluate(
    cfg: DictConfig, prep: Prepared, out_dir: Path, given: ModelBuilder | None = None
) -> tuple[dict[str, float], Any, Any]:
    from polylora.model import loading as models

    built = given(cfg, prep) if given is not None else None
    model, tok = (built.model, built.tokenizer) if built is not None else _load_model(cfg)
    if not cfg.train.enabled:
        model.requires_grad_(False)
    trainable, total = models.count_parameters(model)
    metrics: dict[str, float] = {names.TRAINABLE_PARAMS: trainable, names.TOTAL_PARAMS: total}
    writer.log_metrics({**metrics, **phase_metric("load")})
    fmt = prompt_format(cfg, prep.splits.train)
    step = 0
    if cfg.train.enabled:
        metrics.update(_train(cfg, prep, model, tok, fmt, out_dir))
        step = int(metrics[names.TRAIN_STEPS])
        writer.log_metrics(phase_metric("train"), step=step)
    built = built or GivenModel(model, tok)  # the config's model: no hook, no extra fields
    metrics.update(evaluate_adapter(cfg, prep, model, tok, fmt, out_dir, step,
                                    adapter=built.adapter, row_fields=built.row_fields))
    metrics.update(built.metrics)
    return metrics, model, tok


def _train(
    cfg: DictConfig, prep: Prepared, model: Any, tok: Any, fmt: PromptFormat, out_dir: Path
) -> dict[str, float]:
    from polylora.train import trainer as training

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
    checkpoint_dir = out_dir / names.CHECKPOINT_DIR
    args = training.training_arguments(cfg, checkpoint_dir, has_eval=val_set is not None)
    trainer = training.PolyloraTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=val_set,
        data_collator=training.IndexedCollator(tok.pad_token_id),
        callbacks=training.build_callbacks(cfg, val_set is not None),
        objective=prep.objective,
        batch_sampler_factory=_batch_sampler_factory(cfg, prep.splits.train),
    )
    trainer.add_callback(preemption.PreemptionCallback())
    link = pruning.trial_link(cfg)
    pruner = pruning.PruningCallback(link.open(), link.metric) if link is not None else None
    if pruner is not None:
        trainer.add_callback(pruner)
    last = training.last_checkpoint(checkpoint_dir) if cfg.train.resume else None
    if cfg.train.resume and last is None:
        log.warning("train.resume=true but no checkpoint in %s: starting fresh", checkpoint_dir)
    done = resume.finished_step(last) if last is not None else None
    if last is not None and done is not None:
        weights = resume.finished_weights(out_dir, last)
        log.warning("train.resume=true: this run already reached max_steps %d (%s): nothing to "
                    "train; its weights (%s) are evaluated as they are", done, last.name, weights)
        resume.load_finished_weights(model, weights)
        return resume.finished_metrics(out_dir, done)
    if last is None and tracking.is_main_process():
        resume.record(cfg, checkpoint_dir)
    started = time.time()
    with preemption.deferred():
        result = trainer.train(resume_from_checkpoint=str(last) if last else None)
    if pruner is not None and pruner.pruned:
        _stop_pruned(pruner, trainer.state.global_step, trainer.state.num_input_tokens_seen,
                     time.time() - started)
    adapter_dir = out_dir / names.ADAPTER_DIR
    if trainer.is_world_process_zero():
        # the trained model, or an FSDP wrapper that forwards to it (transformers types
        # Trainer.model as nn.Module | None, None only for a Trainer built from model_init)
        cast(SavesPretrained, trainer.model).save_pretrained(adapter_dir)
    if cfg.tracking.log_adapter:
        writer.log_artifact(adapter_dir, names.ADAPTER_ARTIFACTS)
    out = {
        names.TRAIN_FINAL_LOSS: float(result.training_loss),
        names.TRAIN_STEPS: float(trainer.state.global_step),
        names.TRAIN_EVALUATED_STEP: float(training.evaluated_step(trainer)),
        names.TRAIN_WALL_TIME: time.time() - started,
        names.TRAIN_TOKENS: float(trainer.state.num_input_tokens_seen),
    }
    evals = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    if evals:
        out[names.TRAIN_BEST_EVAL_LOSS] = min(evals)
    return out


def _stop_pruned(pruner: pruning.PruningCallback, steps: int, tokens: int,
                 train_s: float) -> NoReturn:
    """Record a pruned trial's run (steps trained, tags; it ends KILLED) and raise
    ``optuna.TrialPruned`` for the sweeper, skipping the adapter and the evaluation."""
    import optuna

    writer.log_metrics({names.TRAIN_STEPS: float(steps), names.TRAIN_WALL_TIME: train_s,
                          names.TRAIN_TOKENS: float(tokens)}, step=steps)
    writer.set_tags({pruning.TRIAL_STATE_TAG: pruning.PRUNED_STATE,
                       pruning.PRUNED_STEP_TAG: str(pruner.pruned_step)})
    raise optuna.TrialPruned(pruner.message())


def _batch_sampler_factory(cfg: DictConfig, train: list[Example]) -> Any:
    if cfg.data.sampler != "group_balanced":
        return None
    from polylora.data.samplers import GroupBalancedBatchSampler

    field = cfg.data.split.group_by or "group"
    groups = [str(e.group if field == "group" else e.fields.get(field)) for e in train]
    return lambda batch_size: GroupBalancedBatchSampler(groups, batch_size, seed=cfg.seed)


