"""Which ``objective.*`` keys an objective takes, so that swapping the objective (``objective=grpo``
over an experiment written for another) fails on a setting that belongs to another objective
with one readable error: the key, the objective chosen, where the key was set and the fix."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from polylora.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
#: Keys of an objective node that are not constructor arguments.
META_KEYS = frozenset({"_target_", "_partial_", "_convert_", "_recursive_", "_args_"})


def accepted_keys(cls: type) -> set[str] | None:
    """The keyword arguments ``cls`` takes, following ``**kwargs`` into its bases' ``__init__``
    (the RL objectives pass the shared core's settings on that way); None when a ``**kwargs``
    is the class's own (it may take anything)."""
    names: set[str] = set()
    open_kwargs = False
    for klass in cls.__mro__:
        if klass is object:
            return None if open_kwargs else names
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names |= {p.name for p in params if p.name != "self"
                  and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return names
        open_kwargs = True
    return names


def _load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    loaded = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    return loaded if isinstance(loaded, dict) else {}


def owners(key: str, conf_dir: Path = CONF_DIR) -> list[str]:
    """The objective configs (``conf/objective/<name>.yaml``) that set ``key``."""
    return [path.stem for path in sorted((conf_dir / "objective").glob("*.yaml"))
            if key in _load_yaml(path)]


def experiment_setting(key: str, experiment: str, conf_dir: Path = CONF_DIR,
                       seen: frozenset[str] = frozenset()) -> Path | None:
    """The experiment file (``experiment`` or one it builds on) that sets ``objective.<key>``."""
    path = conf_dir / "experiment" / f"{experiment}.yaml"
    data = _load_yaml(path)
    objective = data.get("objective")
    if isinstance(objective, dict) and key in objective:
        return path
    for entry in data.get("defaults") or []:
        if isinstance(entry, str) and entry not in seen and not entry.startswith("_"):
            found = experiment_setting(key, entry, conf_dir, seen | {experiment})
            if found is not None:
                return found
    return None


def _where(key: str, experiment: str | None, command_line: Sequence[str]) -> str:
    """Where ``objective.<key>`` came from, in words."""
    if any(o.lstrip("+").startswith(f"objective.{key}=") for o in command_line):
        return "on the command line"
    found = experiment_setting(key, experiment) if experiment else None
    if found is not None:
        shown = found.relative_to(CONF_DIR.parent.parent) if found.is_relative_to(
            CONF_DIR.parent.parent) else found
        return f"in experiment {experiment} ({shown})"
    return "in a config of your own or on the command line"


def check_objective_settings(node: Mapping[str, Any], cls: type, chosen: str,
                             experiment: str | None = None,
                             command_line: Sequence[str] = ()) -> None:
    """Raise one ConfigError listing every ``objective.*`` key that ``cls`` does not take."""
    accepted = accepted_keys(cls)
    if accepted is None:
        return
    problems = []
    for key in sorted(k for k in node if k not in META_KEYS and k not in accepted):
        others = [o for o in owners(key) if o != chosen]
        belongs = (f"a setting of objective={' / '.join(others)}, not of objective={chosen}"
                   if others else f"not a setting of objective={chosen}")
        swap = f", or choose objective={others[0]}" if others else ""
        problems.append(
            f"objective.{key} is {belongs} (the objective chosen); it was set "
            f"{_where(key, experiment, command_line)}. Remove it there, or drop it with "
            f"~objective.{key} on the command line{swap}"
        )
    if problems:
        raise ConfigError("; ".join(problems))
