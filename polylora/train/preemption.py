"""SIGTERM (Slurm preemption, ``kill``): the run ends KILLED in MLflow with a checkpoint to
resume from, instead of dying mid-write.

While training, the signal only sets a flag: the next optimizer step ends with a checkpoint
and the Trainer stops; the pipeline then raises ``Preempted``. Outside training it raises
``Preempted`` at once. ``Preempted`` is a ``KeyboardInterrupt``, so the MLflow run ends
KILLED, not FAILED.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from transformers import TrainerCallback


class Preempted(KeyboardInterrupt):
    """The process was asked to stop (SIGTERM)."""


_state = {"requested": False, "deferred": False}


def requested() -> bool:
    """Whether a SIGTERM arrived during this run."""
    return _state["requested"]


def _on_sigterm(signum: int, frame: Any) -> None:
    _state["requested"] = True
    if not _state["deferred"]:
        raise Preempted("SIGTERM")


@contextmanager
def handle_sigterm() -> Iterator[None]:
    """Turn SIGTERM into ``Preempted`` for the block (main thread only; else a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state.update(requested=False, deferred=False)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def deferred() -> Iterator[None]:
    """Inside the block SIGTERM only sets the flag (the Trainer checkpoints and stops); on
    leaving it, a pending SIGTERM raises ``Preempted``."""
    _state["deferred"] = True
    try:
        yield
    finally:
        _state["deferred"] = False
    if _state["requested"]:
        raise Preempted("SIGTERM")


class PreemptionCallback(TrainerCallback):
    """Saves a checkpoint and stops training at the step end after a SIGTERM."""

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if _state["requested"]:
            control.should_save = True
            control.should_training_stop = True
        return control
