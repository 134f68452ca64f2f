"""Building ``_target_`` nodes: only polylora's own targets and the prefixes the user trusts
(``POLYLORA_TRUSTED_TARGETS``) are imported."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from polylora.errors import ConfigError, PolyloraError


def trusted_target_patterns() -> list[str]:
    """The ``_target_`` prefixes polylora imports: its own, plus those in
    ``POLYLORA_TRUSTED_TARGETS`` (comma-separated) for plugins and metrics of your own."""
    import os

    return ["polylora.*"] + [
        p.strip() for p in os.environ.get("POLYLORA_TRUSTED_TARGETS", "").split(",") if p.strip()
    ]


def build(node: Any, **kwargs: Any) -> Any:
    """Instantiate a ``_target_`` node, allowing only :func:`trusted_target_patterns`."""
    from hydra.utils import instantiate

    try:
        return instantiate(node, _execution_whitelist_=trusted_target_patterns(), **kwargs)
    except Exception as exc:  # Hydra wraps the constructor's own error
        cause = exc.__cause__ or exc
        if isinstance(cause, ConfigError | PolyloraError):
            raise cause from None
        target = node.get("_target_", "?") if hasattr(node, "get") else "?"
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise ConfigError(f"cannot build {target}: {first}") from None


def is_trusted(target: str, patterns: Iterable[str]) -> bool:
    """True if ``target`` falls under one of ``patterns`` (``pkg.*`` or a module prefix)."""
    for pattern in patterns:
        prefix = pattern[:-2] if pattern.endswith(".*") else pattern
        if target == prefix or target.startswith(prefix + "."):
            return True
    return False
