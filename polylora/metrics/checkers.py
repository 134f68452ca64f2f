"""Generic checkers (conforming to :class:`polylora.data.checking.Checker`) and a config factory.

``build_checker({"type": "heuristic", "min_words": 3, ...})`` or ``{"type": "humaneval"}``.
Task-specific checkers elsewhere can join the factory with :func:`register_checker_type`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from polylora.data.checking import Checker, CheckResult
from polylora.data.example import Example
from polylora.errors import ConfigError, Problems


def repeated_ngram_fraction(text: str, n: int = 3) -> float:
    """Fraction of the answer's word n-grams that repeat an earlier one (lowercase, whitespace
    tokens): ``1 - distinct/total``; 0.0 for answers shorter than n words."""
    tokens = text.lower().split()
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


class HeuristicChecker:
    """Rule-based verdict for free-text tasks with no ground-truth checker.

    Correct iff every configured rule passes. Rules (each optional, at least one required):
    ``min_words`` / ``max_words`` (whitespace words), ``max_repeated_ngram_fraction`` (of
    ``repeat_ngram_n``-grams; ``no_repetition=True`` means 0.0), ``must_contain`` (all of these
    substrings) and ``must_not_contain`` (none of them); case-insensitive unless
    ``case_sensitive``. ``details`` holds 1.0/0.0 per rule, keyed ``rule/<name>``.
    """

    name = "heuristic"

    def __init__(
        self,
        min_words: int | None = None,
        max_words: int | None = None,
        max_repeated_ngram_fraction: float | None = None,
        no_repetition: bool = False,
        repeat_ngram_n: int = 3,
        must_contain: Sequence[str] = (),
        must_not_contain: Sequence[str] = (),
        case_sensitive: bool = False,
    ) -> None:
        found = Problems()
        found.check(
            not isinstance(must_contain, str) and not isinstance(must_not_contain, str),
            "heuristic checker: must_contain / must_not_contain take a list "
            'of strings, e.g. ["foo"], not a single string',
        )
        for label, value in (("min_words", min_words), ("max_words", max_words)):
            found.check(value is None or value >= 0,
                        f"heuristic checker: {label} must be ≥ 0, got {value}")
        found.check(
            min_words is None or max_words is None or min_words <= max_words,
            f"heuristic checker: min_words={min_words} > max_words={max_words}; "
            "lower min_words or raise max_words",
        )
        if no_repetition:
            max_repeated_ngram_fraction = 0.0
        found.check(
            max_repeated_ngram_fraction is None or 0.0 <= max_repeated_ngram_fraction <= 1,
            "heuristic checker: max_repeated_ngram_fraction must be in [0, 1], got "
            f"{max_repeated_ngram_fraction}",
        )
        found.check(repeat_ngram_n >= 1,
                    f"heuristic checker: repeat_ngram_n must be ≥ 1, got {repeat_ngram_n}")
        found.check(
            (min_words, max_words, max_repeated_ngram_fraction) != (None, None, None)
            or bool(must_contain) or bool(must_not_contain),
            "heuristic checker has no rules; set at least one of min_words, max_words, "
            "max_repeated_ngram_fraction/no_repetition, must_contain, must_not_contain",
        )
        found.raise_any()
        self.min_words = min_words
        self.max_words = max_words
        self.max_repeated_ngram_fraction = max_repeated_ngram_fraction
        self.repeat_ngram_n = repeat_ngram_n
        self.case_sensitive = case_sensitive
        self.must_contain = [self._norm(s) for s in must_contain]
        self.must_not_contain = [self._norm(s) for s in must_not_contain]

    def _norm(self, text: str) -> str:
        return text if self.case_sensitive else text.lower()

    def __call__(self, example: Example, answer: str) -> CheckResult:
        words = len(answer.split())
        text = self._norm(answer)
        rules: dict[str, bool] = {}
        if self.min_words is not None:
            rules["min_words"] = words >= self.min_words
        if self.max_words is not None:
            rules["max_words"] = words <= self.max_words
        if self.max_repeated_ngram_fraction is not None:
            fraction = repeated_ngram_fraction(answer, self.repeat_ngram_n)
            rules["repetition"] = fraction <= self.max_repeated_ngram_fraction
        if self.must_contain:
            rules["must_contain"] = all(s in text for s in self.must_contain)
        if self.must_not_contain:
            rules["must_not_contain"] = not any(s in text for s in self.must_not_contain)
        return CheckResult(
            correct=all(rules.values()),
            details={f"rule/{name}": float(ok) for name, ok in rules.items()},
        )


def _build_humaneval(**kwargs: Any) -> Checker:
    from polylora.metrics.code_exec import HumanEvalChecker

    return HumanEvalChecker(**kwargs)


_FACTORIES: dict[str, Callable[..., Checker]] = {
    "heuristic": HeuristicChecker,
    "humaneval": _build_humaneval,
}


def register_checker_type(name: str, factory: Callable[..., Checker]) -> None:
    """Make ``build_checker({"type": name, **kwargs})`` call ``factory(**kwargs)``."""
    if name in _FACTORIES and _FACTORIES[name] is not factory:
        raise ValueError(f"checker type {name!r} is already registered")
    _FACTORIES[name] = factory


def checker_types() -> list[str]:
    """Names accepted as ``type`` by :func:`build_checker`."""
    return sorted(_FACTORIES)


def _parameters(name: str) -> list[str] | None:
    target: Any = _FACTORIES[name]
    if name == "humaneval":
        from polylora.metrics.code_exec import HumanEvalChecker

        target = HumanEvalChecker
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.name != "self"]


def build_checker(spec: Mapping[str, Any], allow_code_execution: bool = False) -> Checker:
    """A checker from a config mapping: ``{"type": <checker type>, **options}``.

    ``allow_code_execution`` (the ``eval.allow_code_execution`` flag) is passed to checkers
    that execute code; ``spec`` may also set it itself.
    """
    options = dict(spec)
    kind = options.pop("type", None)
    if kind not in _FACTORIES:
        raise ConfigError(
            f"unknown checker type {kind!r}; set checker.type to one of "
            f"{', '.join(checker_types())}"
        )
    allowed = _parameters(kind)
    if allowed is not None and "allow_code_execution" in allowed:
        options["allow_code_execution"] = bool(
            options.get("allow_code_execution", False) or allow_code_execution
        )
    if allowed is not None:
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ConfigError(
                f"{kind} checker: unknown option(s) {', '.join(unknown)}; "
                f"valid options: {', '.join(a for a in allowed if a != 'problems')}"
            )
    for key in ("must_contain", "must_not_contain"):
        if key in options and options[key] is not None and not isinstance(options[key], str):
            options[key] = list(options[key])  # OmegaConf ListConfig → list
    return _FACTORIES[kind](**options)


def checker_from_config(node: Any, allow_code_execution: bool = False) -> Checker | None:
    """The task checker of ``data.checker`` (set by the ``checker`` config group): None for
    null, a ``_target_`` node built as usual, or a ``{type: ...}`` spec for
    :func:`build_checker`. A required option left unset (``???``) is a ConfigError naming it."""
    from omegaconf import DictConfig, OmegaConf

    from polylora.config import build

    if node is None:
        return None
    if isinstance(node, DictConfig):
        missing = sorted(OmegaConf.missing_keys(node))
        if missing:
            target = node.get("_target_", node.get("type", "?"))
            raise ConfigError(
                f"checker {str(target).rsplit('.', 1)[-1]} needs "
                + ", ".join(f"data.checker.{k}=<value>" for k in missing)
                + " (see polylora/conf/checker/ for what each option means)"
            )
    if "type" in node and "_target_" not in node:
        # a DictConfig's container is a dict (to_container's return type also covers lists)
        spec: Mapping[str, Any] = (
            cast(dict[str, Any], OmegaConf.to_container(node, resolve=True))
            if isinstance(node, DictConfig)
            else node
        )
        return build_checker(dict(spec), allow_code_execution=allow_code_execution)
    return build(node)
