"""Metrics of the user's own, declared in config (``eval.custom_metrics``) and registered.

Each entry names a function by its dotted import path (``_target_: mylab.metrics.toxicity``),
its direction and optionally its inputs. The same trust rule as every ``_target_`` applies:
only ``polylora.*`` and the prefixes listed in ``POLYLORA_TRUSTED_TARGETS`` are imported, by
module name from ``sys.path`` (never from a file path). The function takes fields of
:class:`~polylora.metrics.inputs.PromptInputs` by name and returns one prompt's value.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Iterable, Mapping
from typing import Any

from polylora.config.targets import is_trusted, trusted_target_patterns
from polylora.errors import ConfigError, Problems, raise_problems
from polylora.metrics.inputs import NEEDS_OF_INPUT
from polylora.metrics.registry import add_metric, get_metric
from polylora.metrics.spec import MetricSpec, function_inputs

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_TARGET_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
__all__ = [
    "check_custom_metric", "check_custom_metrics", "is_trusted", "register_custom_metrics",
]  # fmt: skip

_KEYS = {"name", "_target_", "direction", "inputs", "description", "proportion"}
#: Inputs a custom metric may declare: the suite computes it, so no model or judge.
_SUITE_NEEDS = frozenset({"samples", "references", "checker", "greedy"})


def _where(index: int, entry: Mapping[str, Any]) -> str:
    name = str(entry.get("name", ""))
    return f"eval.custom_metrics[{index}]" + (f" ({name})" if name else "")


def check_custom_metric(entry: Mapping[str, Any], where: str) -> list[str]:
    """The problems of one ``eval.custom_metrics`` declaration that need no import (keys,
    name, direction, declared inputs), each starting with ``where``."""
    p = Problems()
    unknown = set(entry) - _KEYS
    p.check(not unknown, f"{where}: unknown key(s) {sorted(unknown)}; use {sorted(_KEYS)}")
    name = str(entry.get("name", ""))
    p.check(bool(_NAME_RE.match(name)),
            f"{where}: name must be letters, digits and '_' (starting with a letter), "
            f"got {name!r}")
    direction = entry.get("direction")
    p.check(direction in ("maximize", "minimize"),
            f"{where}: direction must be maximize or minimize, got {direction!r}")
    declared = frozenset(str(n) for n in entry.get("inputs") or ())
    p.check(not declared - _SUITE_NEEDS,
            f"{where}: inputs {sorted(declared - _SUITE_NEEDS)} are not ones the suite "
            f"provides; use some of {sorted(_SUITE_NEEDS)}")
    target = str(entry.get("_target_", ""))
    p.check(bool(_TARGET_RE.match(target)),
            f"{where}: _target_ must be a dotted import path module.function "
            f"(e.g. mylab.metrics.toxicity), got {target!r}")
    return p


def check_custom_metrics(entries: Iterable[Mapping[str, Any]] | None) -> list[str]:
    """The problems of every ``eval.custom_metrics`` declaration (see
    :func:`check_custom_metric`); importing them is :func:`register_custom_metrics`'s check."""
    return [problem for index, raw in enumerate(entries or [])
            for problem in check_custom_metric(dict(raw), _where(index, dict(raw)))]


def register_custom_metrics(entries: Iterable[Mapping[str, Any]] | None) -> list[str]:
    """Register each ``eval.custom_metrics`` entry; returns their names. Any problem (bad entry,
    untrusted or missing module, missing function, bad signature) is one ConfigError."""
    names: list[str] = []
    for index, raw in enumerate(entries or []):
        entry = dict(raw)
        where = _where(index, entry)
        raise_problems(check_custom_metric(entry, where))
        name = str(entry["name"])
        fn = _import_function(str(entry["_target_"]), where, trusted_target_patterns())
        try:
            params = function_inputs(fn, name)
        except ValueError as err:
            raise ConfigError(f"{where}: {err}") from None
        needs = frozenset().union(*(NEEDS_OF_INPUT[p] for p in params))
        declared = frozenset(str(n) for n in entry.get("inputs") or ())
        spec = MetricSpec(
            name,
            entry["direction"] == "maximize",
            needs | declared,
            str(entry.get("description") or f"custom metric {entry['_target_']}"),
            compute=fn,
            proportion=bool(entry.get("proportion", False)),
        )
        try:
            add_metric(spec)
        except ValueError:
            existing = get_metric(name)
            raise ConfigError(
                f"{where}: a metric named {name!r} already exists ({existing.description}); "
                "pick another name"
            ) from None
        names.append(name)
    return names


def _import_function(target: str, where: str, trusted: list[str]) -> Any:
    """The function ``target`` (a checked dotted path) names, imported by module name after
    the trust check."""
    if not is_trusted(target, trusted):
        module_prefix = target.rsplit(".", 1)[0]
        raise ConfigError(
            f"{where}: {target} is outside the trusted targets ({', '.join(trusted)}); to run "
            f"your own code, set POLYLORA_TRUSTED_TARGETS={module_prefix}"
        )
    module_name, attr = target.rsplit(".", 1)
    try:
        found = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise ConfigError(
            f"{where}: no module named {module_name!r} on the Python path; put the directory "
            "that holds it on PYTHONPATH (or install it)"
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # the user's module failed while importing
        raise ConfigError(f"{where}: importing {module_name} failed: {err}") from None
    fn = getattr(module, attr, None)
    if fn is None:
        raise ConfigError(f"{where}: module {module_name} has no function {attr!r}")
    if not callable(fn):
        raise ConfigError(f"{where}: {target} is not a function")
    return fn
