"""The training step: the Trainer hands the objective its optimizer step and its backward with
each call (nothing is set on the objective from outside), a step changes the LoRA weights,
and the step the objective sees continues from the checkpoint after a resume."""

from __future__ import annotations

from pathlib import Path

import torch
from helpers import tiny_configs
from transformers import TrainingArguments

from polylora.data.formatting import EncodedDataset, PromptFormat
from polylora.data.words import WordTask
from polylora.model.loading import load_base_model, wrap_lora
from polylora.objectives.base import Backward, LossOutput, Objective, ObjectiveContext
from polylora.objectives.ce import CrossEntropyObjective
from polylora.train.trainer import IndexedCollator, IndexedDataset, PolyloraTrainer

TINY, CPU, LORA = tiny_configs()


class RecordingObjective(Objective):
    """CE, recording the step and the backward each training call receives."""

    name = "recording"

    def __init__(self) -> None:
        self.steps: list[int | None] = []
        self.backwards: list[Backward | None] = []

    def compute_loss(
        self,
        model: torch.nn.Module,
        batch: dict[str, torch.Tensor],
        num_items_in_batch: int | torch.Tensor | None,
        grad_accum_steps: int,
        *,
        step: int | None = None,
        backward: Backward | None = None,
    ) -> LossOutput:
        self.steps.append(step)
        self.backwards.append(backward)
        return CrossEntropyObjective().compute_loss(model, batch, num_items_in_batch,
                                                    grad_accum_steps)


def trainer(out: Path, objective: Objective, max_steps: int, grad_accum: int = 1,
            save_steps: int = 1000) -> PolyloraTrainer:
    """A Trainer on the tiny LoRA model and 8 word-task examples (fixed seeds)."""
    base, tok = load_base_model(TINY, CPU)
    torch.manual_seed(0)
    model = wrap_lora(base, LORA, CPU)
    examples = WordTask(n_examples=8, seed=0).load()
    fmt = PromptFormat()
    objective.bind(ObjectiveContext(tokenizer=tok, examples=examples, prompt_format=fmt))
    args = TrainingArguments(
        output_dir=str(out), max_steps=max_steps, per_device_train_batch_size=2,
        gradient_accumulation_steps=grad_accum, learning_rate=1e-2, use_cpu=True,
        report_to="none", save_strategy="steps", save_steps=save_steps, logging_steps=1000,
        remove_unused_columns=False, disable_tqdm=True, seed=0, data_seed=0,
    )
    return PolyloraTrainer(
        model=model, args=args,
        train_dataset=IndexedDataset(EncodedDataset(examples, tok, fmt, 48)),
        data_collator=IndexedCollator(tok.pad_token_id), objective=objective,
    )


def lora_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


def test_each_call_gets_the_optimizer_step_and_the_trainers_backward(tmp_path: Path) -> None:
    objective = RecordingObjective()
    t = trainer(tmp_path, objective, max_steps=3, grad_accum=2)
    before = lora_weights(t.model)
    t.train()
    assert objective.steps == [0, 0, 1, 1, 2, 2]  # two micro-batches per optimizer step
    assert all(b == t.accelerator.backward for b in objective.backwards)
    assert not hasattr(objective, "global_step") and not hasattr(objective, "backward_fn")
    after = lora_weights(t.model)
    assert any(not torch.equal(before[n], after[n]) for n in before)


def test_the_step_continues_from_the_checkpoint_on_resume(tmp_path: Path) -> None:
    first = RecordingObjective()
    trainer(tmp_path, first, max_steps=4, save_steps=2).train()
    assert first.steps == [0, 1, 2, 3]
    resumed = RecordingObjective()
    trainer(tmp_path, resumed, max_steps=4, save_steps=2).train(
        resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    assert resumed.steps == [2, 3]


def test_evaluation_loss_is_reference_ce_without_the_objective(tmp_path: Path) -> None:
    objective = RecordingObjective()
    t = trainer(tmp_path, objective, max_steps=1)
    batch = next(iter(t.get_train_dataloader()))
    t.model.eval()
    loss = t.compute_loss(t.model, batch)
    assert objective.steps == [] and float(loss.detach()) > 0


def test_trainer_autocasts_the_whole_loss_under_bf16(tmp_path: Path) -> None:
    """The objective's own decoder and head calls run under the Trainer's bf16 autocast (not
    only ``model.forward``); an fp32 Trainer adds none."""
    model = wrap_lora(load_base_model(TINY, CPU)[0], LORA, CPU)
    for bf16 in (True, False):
        args = TrainingArguments(output_dir=str(tmp_path), bf16=bf16, use_cpu=True,
                                 report_to="none")
        trainer = PolyloraTrainer(model=model, args=args, objective=CrossEntropyObjective())
        with trainer.compute_loss_context_manager():
            assert torch.is_autocast_enabled("cpu") is bf16
            if bf16:
                assert torch.get_autocast_dtype("cpu") == torch.bfloat16
