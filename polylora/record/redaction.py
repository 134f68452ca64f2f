"""The one secret redaction, used for every place a config or a command line leaves the
process: MLflow params and tags (``polylora.overrides`` included), the resolved
``config.yaml`` artifact, Hydra's ``.hydra/*.yaml`` and ``multirun.yaml`` dumps, and log
records.

What counts as a secret:

- the value of a credential-like key (``api_key``, ``hf_token``, ``client_secret``,
  ``password``, ``credentials``, ``private_key``, ...; ``max_new_tokens`` is not one);
- the userinfo of a URL (``https://user:pass@host`` -> ``https://<redacted>@host``);
- token-shaped strings: ``sk-...`` (Anthropic/OpenAI), ``hf_...``, ``ghp_...``, ``AKIA...``;
- the value of any environment variable with a credential-like name (what an
  ``${oc.env:ANTHROPIC_API_KEY}`` resolves to), wherever it appears.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REDACTED = "<redacted>"
_KEY_WORDS = r"api_?key|token|secret|password|passwd|credentials?|private_?key|access_?key|auth"
SECRET_KEY = re.compile(rf"(^|[_.-])({_KEY_WORDS})$", re.IGNORECASE)
_ENV_SECRET = re.compile(rf"(^|_)({_KEY_WORDS})(_|$)", re.IGNORECASE)
_PATTERNS = [
    re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"),  # URL userinfo user:pass
    re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"),
    re.compile(r"\bhf_[A-Za-z0-9]{20,}"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
]
_OVERRIDE = re.compile(r"^(?P<head>[~+]{0,2}(?P<path>[\w.\-/@]+)=)(?P<value>.*)$", re.DOTALL)
_MIN_ENV_SECRET = 6  # shorter values would redact ordinary words


def is_secret_key(key: str) -> bool:
    """Whether a config key (its last dotted part) names a credential."""
    return bool(SECRET_KEY.search(str(key).rsplit(".", 1)[-1]))


def _environment() -> dict[str, str]:
    """A snapshot of ``os.environ``; another thread (MLflow's telemetry) may change it while
    it is read, which raises KeyError/RuntimeError mid-iteration: read it again."""
    for _ in range(10):
        try:
            return dict(os.environ)
        except (KeyError, RuntimeError):
            continue
    return dict(os.environ)


def _env_secrets() -> list[str]:
    values = {
        value
        for name, value in _environment().items()
        if _ENV_SECRET.search(name) and len(value) >= _MIN_ENV_SECRET
    }
    return sorted(values, key=len, reverse=True)


def redact_text(text: str) -> str:
    """``text`` with token-shaped strings, URL userinfo and secret env values replaced."""
    for secret in _env_secrets():
        text = text.replace(secret, REDACTED)
    for pattern in _PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def redact_override(override: str) -> str:
    """One command-line override (``a.b=value``): the value is hidden when the key names a
    credential; token-shaped parts are hidden anywhere."""
    match = _OVERRIDE.match(override)
    if match and is_secret_key(match["path"]):
        return match["head"] + REDACTED
    return redact_text(override)


def redact(node: Any, key: str = "") -> Any:
    """A copy of a plain container (dicts, lists, scalars) with every secret replaced;
    strings in lists are read as overrides (``key=value``)."""
    if key and is_secret_key(key) and node is not None and not isinstance(node, Mapping | list):
        return REDACTED
    if isinstance(node, Mapping):
        return {k: redact(v, str(k)) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [redact_override(v) if isinstance(v, str) else redact(v) for v in node]
    if isinstance(node, str):
        return redact_text(node)
    return node


def redacted_config(cfg: Any, resolve: bool = True) -> Any:
    """An OmegaConf config as a redacted plain container (resolved by default)."""
    from omegaconf import OmegaConf

    container = OmegaConf.to_container(cfg, resolve=resolve, throw_on_missing=False)
    return redact(container)


def config_yaml(cfg: Any) -> str:
    """The resolved, redacted config as YAML (what ``config.yaml`` artifacts hold)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.create(redacted_config(cfg)))


def redact_yaml_file(path: Path) -> None:
    """Rewrite a YAML dump in place, redacted (atomically: parallel jobs may share it)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return
    text = yaml.safe_dump(redact(data), sort_keys=False, allow_unicode=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def redact_hydra_dumps() -> None:
    """Redact the files Hydra wrote for this job (``.hydra/config.yaml``, ``hydra.yaml``,
    ``overrides.yaml``) and the sweep's ``multirun.yaml``; no-op outside a Hydra app."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
    except (ImportError, ValueError):
        return
    paths = []
    if hc.output_subdir:
        sub = Path(hc.runtime.output_dir) / hc.output_subdir
        paths += [sub / "config.yaml", sub / "hydra.yaml", sub / "overrides.yaml"]
    if str(hc.mode) == "RunMode.MULTIRUN":
        paths.append(Path(hc.sweep.dir) / "multirun.yaml")
    for path in paths:
        if path.is_file():
            redact_yaml_file(path)


class RedactingFilter(logging.Filter):
    """Rewrites every record's message through ``redact_text`` (attach to handlers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def install_log_redaction() -> None:
    """Redact every log record of this process, whichever logger or handler it goes to
    (Hydra's launcher logs the overrides before a job starts)."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "_polylora_redacting", False):
        return

    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        RedactingFilter().filter(record)
        return record

    make._polylora_redacting = True  # type: ignore[attr-defined]  # a marker attribute on a function
    logging.setLogRecordFactory(make)
