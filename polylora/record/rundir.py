"""Run directories that never collide: a per-process suffix in the default name, and an
exclusive lock held by the live process that uses the directory.

The default ``hydra.run.dir`` is ``outputs/<experiment>/<timestamp>-${polylora_unique:}``:
two runs started in the same second get different directories. Whatever the directory
(``hydra.run.dir=...`` set by hand, a sweep's job folder), ``claim`` takes an ``flock`` on
``<dir>/.polylora.lock`` for the length of the run; a second live process is refused with
one line naming the holder. The lock dies with its process, so a killed run's directory can
be resumed (``train.resume=true``) at once.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from omegaconf import OmegaConf

from polylora.errors import ConfigError

LOCK_FILE = ".polylora.lock"
RESOLVER = "polylora_unique"
_SUFFIX = f"{os.getpid()}{secrets.token_hex(2)}"  # one per process: stable within a run


def unique_suffix() -> str:
    """This process's suffix: its pid plus 4 random hex digits (pids repeat across hosts)."""
    return _SUFFIX


def register_resolver() -> None:
    """``${polylora_unique:}`` in configs (idempotent). Cached like Hydra's ``${now:}``: the
    value resolved by a sweep's launcher is the one its jobs (other processes) see."""
    OmegaConf.register_resolver(RESOLVER, unique_suffix, use_cache=True, replace=True)


@contextmanager
def claim(run_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold ``run_dir`` exclusively while the block runs; ConfigError if a live process
    holds it already."""
    path = Path(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ConfigError(
            f"run directory {path} is in use by a live process (pid {holder}); give this run "
            "its own directory (drop hydra.run.dir=... for a fresh one) or wait for that run "
            "to end"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
