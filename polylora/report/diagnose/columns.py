"""The decision matrix's columns read from the configs: which experiment runs the standard and
the conservative column per objective (``conf/diagnose/columns.yaml`` or a user's file), and
each objective's default λ (its ``conf/objective/<name>.yaml``), so no name or λ lives in code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from polylora.errors import ConfigError
from polylora.report.diagnose.inputs import Columns

__all__ = ["CONF_DIR", "DEFAULT_COLUMNS_FILE", "LAMBDA_KEY", "load_columns"]

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
DEFAULT_COLUMNS_FILE = CONF_DIR / "diagnose" / "columns.yaml"
#: The objective config key that holds λ (``objective.pg_weight`` in a run's params; runs
#: recorded before every RL objective shared that name have ``objective.diversity_weight``).
LAMBDA_KEY = "pg_weight"
OLD_LAMBDA_KEY = "diversity_weight"


def _mapping(data: dict[str, Any], key: str, path: Path) -> dict[str, str]:
    value = data.get(key) or {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigError(
            f"{path}: {key!r} must map objective names to experiment names "
            f"(e.g. {key}: {{ce: my_experiment}}), got {value!r}"
        )
    return dict(value)


def default_lambdas(conf_dir: Path = CONF_DIR) -> dict[str, float]:
    """Each objective config's default λ (``pg_weight``), by objective name."""
    import yaml

    out: dict[str, float] = {}
    for path in sorted((conf_dir / "objective").glob("*.yaml")):
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            continue
        lam = loaded.get(LAMBDA_KEY, loaded.get(OLD_LAMBDA_KEY))
        if isinstance(lam, (int, float)):
            out[path.stem] = float(lam)
    return out


def load_columns(path: Path | str | None = None, conf_dir: Path = CONF_DIR) -> Columns:
    """The columns in ``path`` (default :data:`DEFAULT_COLUMNS_FILE`) with the objectives'
    default λ. Raises ConfigError for a missing or malformed file."""
    import yaml

    file = Path(path) if path is not None else DEFAULT_COLUMNS_FILE
    if not file.is_file():
        raise ConfigError(f"no columns file {file}: pass --columns with a YAML file that has "
                          "'standard' and 'conservative' (objective → experiment)")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: expected a mapping with 'standard' and 'conservative'")
    unknown = sorted(set(data) - {"standard", "conservative"})
    if unknown:
        raise ConfigError(f"{file}: unknown key(s) {', '.join(unknown)}; "
                          "allowed: standard, conservative")
    return Columns(
        standard=_mapping(data, "standard", file),
        conservative=_mapping(data, "conservative", file),
        default_lambda=default_lambdas(conf_dir),
    )
