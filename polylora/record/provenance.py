"""What code produced a run: the revision of polylora's checkout (commit, whether the tree was
dirty and a hash of the difference), the versions of the libraries that compute the numbers,
the precision actually used and the command line, so a result can be traced to its code."""

from __future__ import annotations

import hashlib
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

#: The checkout polylora runs from (an installed wheel has none: its version says which).
PACKAGE_DIR = Path(__file__).resolve().parents[1]
#: Libraries whose versions change the numbers.
PACKAGES = ("torch", "transformers", "peft", "polylora")


def _git(args: list[str], cwd: Path) -> str | None:
    """``git <args>`` in ``cwd``; None outside a repository or without git."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.decode("utf-8", "replace") if done.returncode == 0 else None


def code_revision(where: Path = PACKAGE_DIR) -> dict[str, str]:
    """``commit``, ``dirty`` ("true"/"false") and ``diff_sha256`` (of the tracked changes
    against the commit plus the untracked files' paths and contents; "" when clean) of the
    git checkout holding ``where``; ``commit`` "unknown" outside one."""
    commit = _git(["rev-parse", "HEAD"], where)
    if commit is None:
        return {"commit": "unknown", "dirty": "unknown", "diff_sha256": ""}
    root = Path((_git(["rev-parse", "--show-toplevel"], where) or str(where)).strip())
    diff = _git(["diff", "HEAD", "--binary"], root) or ""
    untracked = (_git(["ls-files", "--others", "--exclude-standard", "-z"], root) or "")
    digest = hashlib.sha256(diff.encode())
    names = sorted(n for n in untracked.split("\0") if n)
    for name in names:
        digest.update(b"\0" + name.encode())
        path = root / name
        if path.is_file():
            digest.update(path.read_bytes())
    dirty = bool(diff.strip() or names)
    return {"commit": commit.strip(), "dirty": str(dirty).lower(),
            "diff_sha256": digest.hexdigest() if dirty else ""}


def revision_label(revision: dict[str, str]) -> str:
    """One string that differs whenever the code differs: the commit, plus the diff's hash
    when the tree was dirty."""
    label = revision.get("commit", "unknown")
    if revision.get("dirty") == "true":
        label += f"+dirty.{revision.get('diff_sha256', '')[:16]}"
    return label


def package_versions() -> dict[str, str]:
    """The installed version of each of :data:`PACKAGES` ("missing" when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "missing"
    return out


def resolved_precision(hardware: Any) -> str:
    """The weights' dtype and the autocast actually used, e.g. ``fp32`` or
    ``fp32+autocast-bf16`` (``hardware.autocast=auto`` resolved on this machine)."""
    from polylora.model.loading import autocast_dtype

    dtype = autocast_dtype(hardware)
    label = str(hardware.precision)
    if getattr(hardware, "load_in_4bit", False):
        label += "+nf4"
    if dtype is not None:
        label += "+autocast-" + str(dtype).removeprefix("torch.").replace("bfloat16", "bf16") \
            .replace("float16", "fp16")
    return label


def command_line(argv: list[str] | None = None) -> str:
    """The command that started this process, as a shell would run it (secret values in
    overrides redacted)."""
    from polylora.record.redaction import redact_override

    args = list(sys.argv if argv is None else argv)
    rest = " ".join(shlex.quote(redact_override(a)) for a in args[1:])
    if args and args[0].endswith("__main__.py"):
        return f"python -m {Path(args[0]).parent.name} {rest}".strip()
    return f"{shlex.quote(args[0]) if args else ''} {rest}".strip()


def provenance(hardware: Any | None = None) -> dict[str, str]:
    """The code revision, library versions, command line and (given the hardware config) the
    resolved precision, keyed as flat names (``code.commit``, ``version.torch``, ...)."""
    out = {f"code.{k}": v for k, v in code_revision().items()}
    out.update({f"version.{k}": v for k, v in package_versions().items()})
    out["command"] = command_line()
    if hardware is not None:
        out["precision"] = resolved_precision(hardware)
    return out


def provenance_tags(hardware: Any | None = None) -> dict[str, str]:
    """:func:`provenance` as MLflow tags (``polylora.code.commit``, ``polylora.version.torch``,
    ``polylora.precision``, ``polylora.command``, ...)."""
    from polylora.record.names import provenance_tag

    return {provenance_tag(k): v for k, v in provenance(hardware).items()}
