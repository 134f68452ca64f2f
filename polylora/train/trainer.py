"""The Trainer subclass whose loss comes from the objective plugin, and its callbacks.

Everything else (gradient accumulation, checkpoints and resume, mixed precision, DDP/FSDP
through accelerate/torchrun, early stopping, progress bars) is the stock ``transformers``
Trainer.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Sampler
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments

from polylora.data.formatting import PaddingCollator
from polylora.model import throughput
from polylora.model.loading import autocast_dtype
from polylora.objectives.base import Objective
from polylora.objectives.ce import cross_entropy_loss
from polylora.record import names, writer

MetricSink = Callable[[dict[str, float], int], None]


class IndexedCollator(PaddingCollator):
    """Pads a batch and keeps each row's position in the training set (objectives need it)."""

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = super().__call__(features)
        batch["example_index"] = torch.tensor([f["example_index"] for f in features])
        return batch


class EncodedItems(Protocol):
    """A sized, indexable dataset of encoded examples (e.g. ``EncodedDataset``)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Mapping[str, Any]: ...


class IndexedDataset(torch.utils.data.Dataset):
    """Adds ``example_index`` to each item of an encoded dataset."""

    def __init__(self, base: EncodedItems) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.base[index], "example_index": index}


class PolyloraTrainer(Trainer):
    """A Trainer that asks the objective for the training loss; evaluation loss is always CE
    of the reference responses, so runs with different objectives stay comparable."""

    loss_is_scaled_for_ga = True
    objective: Objective

    def __init__(
        self,
        *args: Any,
        objective: Objective,
        batch_sampler_factory: Callable[[int], Sampler[list[int]]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.objective = objective
        self.batch_sampler_factory = batch_sampler_factory
        self._objective_metrics: dict[str, list[float]] = defaultdict(list)

    def autocast_smart_context_manager(
        self, cache_enabled: bool | None = True
    ) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast around the whole loss (sampling, the objective's own decoder and
        head calls, the reference pass), not only around ``model.forward`` as accelerate
        applies it: frozen weights stored in bf16 (:func:`polylora.model.loading.wrap_lora`) need it
        everywhere, and without it the objective's passes ran in fp32."""
        if not self.args.bf16:
            return super().autocast_smart_context_manager(cache_enabled)
        return torch.autocast(self.args.device.type, dtype=torch.bfloat16)

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: int | torch.Tensor | None = None,
    ) -> Any:
        """Objective loss while training; reference CE under evaluation."""
        if num_items_in_batch is not None and self.args.average_tokens_across_devices:
            # Token counts are summed over ranks (training and evaluation alike); DDP
            # averages gradients over ranks.
            num_items_in_batch = num_items_in_batch / max(self.accelerator.num_processes, 1)
        if not model.training:
            loss = cross_entropy_loss(model, inputs, num_items_in_batch, 1)
            return (loss, {}) if return_outputs else loss
        out = self.objective.compute_loss(
            model, inputs, num_items_in_batch, self.current_gradient_accumulation_steps,
            step=self.state.global_step,  # restored by train.resume
            backward=self.accelerator.backward,  # for parts backpropagated in micro-batches
        )
        for key, value in out.metrics.items():
            self._objective_metrics[key].append(float(value))
        return (out.loss, {}) if return_outputs else out.loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the objective's metrics (means since the last log) to training logs."""
        if "loss" in logs and self._objective_metrics:
            for key, values in self._objective_metrics.items():
                logs[key] = sum(values) / len(values)
            self._objective_metrics.clear()
        super().log(logs, start_time)

    def get_train_dataloader(self) -> DataLoader:
        """The stock loader, or one driven by a batch sampler (e.g. group-balanced batches)."""
        if self.batch_sampler_factory is None:
            return super().get_train_dataloader()
        if self.train_dataset is None:
            raise ValueError("Trainer: training requires a train_dataset.")
        sampler = self.batch_sampler_factory(self.args.per_device_train_batch_size)
        loader = DataLoader(
            self.train_dataset,
            batch_sampler=sampler,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
        )
        return self.accelerator.prepare(loader)


class MetricsCallback(TrainerCallback):
    """Forwards Trainer logs under polylora's metric names (train/*, eval/*) to the run
    record's writer (or to ``sink``, e.g. a list in a test)."""

    def __init__(self, sink: MetricSink = writer.log_metrics) -> None:
        self.sink = sink
        self.last_train_loss: float | None = None
        self.history: list[dict[str, float]] = []
        self._throughput = _Throughput()

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._throughput.start(state.num_input_tokens_seen)

    def on_log(
        self,
        args: Any,
        state: Any,
        control: Any,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if not logs:
            return
        out: dict[str, float] = {}
        for key, value in logs.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            if key == "loss":
                out[names.TRAIN_LOSS] = value
                self.last_train_loss = value
                out.update(self._throughput.since_last_log(state.num_input_tokens_seen))
            elif key == "eval_runtime":
                self._throughput.exclude(float(value))
            elif key == "eval_loss":
                out[names.VAL_LOSS] = value
                out[names.VAL_PERPLEXITY] = math.exp(min(value, 50.0))
                if self.last_train_loss is not None:
                    out[names.TRAIN_EVAL_GAP] = value - self.last_train_loss
            elif key in ("learning_rate", "grad_norm", "epoch"):
                out[names.train_metric(key)] = value
            elif key.startswith((names.TRAIN_PREFIX, names.EVAL_PREFIX)):
                out[key] = value
        if out:
            self.history.append({"step": state.global_step, **out})
            self.sink(out, state.global_step)


class _Throughput:
    """``train/tokens_per_s`` (input tokens the Trainer counted, evaluation time left out)
    and ``generation/tokens_per_s`` (tokens the objective sampled) between training logs."""

    def __init__(self) -> None:
        self.start(0)

    def start(self, tokens_seen: int) -> None:
        self.tokens = int(tokens_seen)
        self.time = time.perf_counter()
        self.excluded = 0.0
        self.generation = throughput.GENERATION.snapshot()

    def exclude(self, seconds: float) -> None:
        """Seconds since the last log that were not training (an evaluation)."""
        self.excluded += seconds

    def since_last_log(self, tokens_seen: int) -> dict[str, float]:
        out = throughput.generation_since(self.generation)
        speed = throughput.rate(tokens_seen - self.tokens,
                                time.perf_counter() - self.time - self.excluded)
        if speed is not None and tokens_seen > self.tokens:
            out[names.TRAIN_TOKENS_PER_S] = speed
        out.pop(names.GENERATION_TOKENS, None)
        self.start(tokens_seen)
        return out


def training_arguments(cfg: DictConfig, checkpoint_dir: Path, has_eval: bool) -> TrainingArguments:
    """TrainingArguments from the ``train`` and ``hardware`` config groups."""
    t, h = cfg.train, cfg.hardware
    on_cuda = h.device.startswith("cuda") or (h.device == "auto" and torch.cuda.is_available())
    autocast_bf16 = autocast_dtype(h) == torch.bfloat16  # fp32 weights, accelerate's autocast
    return TrainingArguments(
        output_dir=str(checkpoint_dir),
        learning_rate=t.learning_rate,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        warmup_steps=float(t.warmup_ratio),  # a float in [0, 1) is a ratio of all steps
        weight_decay=t.weight_decay,
        lr_scheduler_type=t.lr_scheduler,
        max_grad_norm=t.max_grad_norm,
        logging_steps=t.logging_steps,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=t.eval_every,
        save_strategy="steps",
        save_steps=t.save_every,
        save_total_limit=t.save_total_limit,
        # train.checkpoint=final keeps the last step (early stopping still stops on the
        # validation loss); best restores the best-validation-loss checkpoint.
        load_best_model_at_end=has_eval and t.get("checkpoint", "final") == "best",
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=(h.precision == "bf16" and on_cuda) or autocast_bf16,
        fp16=h.precision == "fp16" and on_cuda,
        use_cpu=not on_cuda,
        gradient_checkpointing=h.gradient_checkpointing,
        dataloader_num_workers=h.dataloader_workers,
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",  # train/tokens_per_s
        report_to="none",
        disable_tqdm=False,
        save_only_model=False,
        ddp_find_unused_parameters=False,
    )


def build_callbacks(cfg: DictConfig, has_eval: bool) -> list[TrainerCallback]:
    """polylora's metric forwarding plus early stopping on eval loss (when there is a val set)."""
    callbacks: list[TrainerCallback] = [MetricsCallback()]
    if has_eval and cfg.train.early_stopping_patience > 0:
        callbacks.append(
            EarlyStoppingCallback(early_stopping_patience=cfg.train.early_stopping_patience)
        )
    return callbacks


def evaluated_step(trainer: Trainer) -> int:
    """The step of the weights the run ends with: the best checkpoint's when the Trainer
    restored it (``train.checkpoint=best``), else the last step trained."""
    best = trainer.state.best_model_checkpoint
    if trainer.args.load_best_model_at_end and best:
        tail = Path(best).name.rsplit("-", 1)[-1]
        if tail.isdigit():
            return int(tail)
    return int(trainer.state.global_step)


def last_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest complete ``checkpoint-N`` folder, if any (what ``train.resume=true``
    continues). The Trainer writes ``trainer_state.json`` last, so a folder without it was
    cut short (a kill mid-save) and is skipped for the previous one."""
    import logging

    found = [p for p in checkpoint_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    for path in sorted(found, key=lambda p: int(p.name.split("-")[-1]), reverse=True):
        if (path / "trainer_state.json").is_file():
            return path
        logging.getLogger(__name__).warning("skipping incomplete checkpoint %s", path)
    return None
