"""The judge's settings: which model, at what price, under which caps; defined once here.

``DEFAULT_MODEL`` is the one place the default judge model is named (the ``eval.judge``
schema and ``polylora judge --model`` take it from here). The price table turns token counts
into the dollars the cost cap is checked against.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from polylora.errors import Problems, raise_problems

API_KEY_ENV = "ANTHROPIC_API_KEY"
NO_KEY_MESSAGE = f"LLM judge skipped: {API_KEY_ENV} is not set; export it to enable eval.judge"
#: The judge model used unless ``eval.judge.model`` / ``--model`` names another.
DEFAULT_MODEL = "claude-sonnet-4-5"
DEFAULT_CRITERIA = ("engagement", "relevance", "creativity", "naturalness")
_CRITERION_RE = re.compile(r"^[a-z][a-z0-9_]*$")


# USD per million (input, output) tokens, by model id prefix (a dated id such as
# claude-sonnet-4-5-20250929 matches its family). The cost cap is only as good as this
# table: a model not in it is refused unless priced explicitly (price_per_mtok_in/out).
PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "claude-opus-4-5": (5.0, 25.0),
    "claude-opus-4-1": (15.0, 75.0),
    "claude-opus-4": (15.0, 75.0),
    "claude-sonnet-4-5": (3.0, 15.0),
    "claude-sonnet-4": (3.0, 15.0),
    "claude-3-7-sonnet": (3.0, 15.0),
    "claude-3-5-sonnet": (3.0, 15.0),
    "claude-haiku-4-5": (1.0, 5.0),
    "claude-3-5-haiku": (0.8, 4.0),
    "claude-3-opus": (15.0, 75.0),
    "claude-3-haiku": (0.25, 1.25),
}


def model_prices(model: str) -> tuple[float, float] | None:
    """(input, output) USD per Mtok of ``model`` from the table (longest prefix), or None."""
    matches = [p for p in PRICES_PER_MTOK if model == p or model.startswith(p + "-")]
    return PRICES_PER_MTOK[max(matches, key=len)] if matches else None


@dataclass
class JudgeConfig:
    """Settings for :func:`judge_pairwise` (the ``eval.judge`` config group).

    ``max_calls``/``max_cost_usd`` are hard caps, priced with the configured model's prices
    (``PRICES_PER_MTOK``; ``price_per_mtok_in``/``_out`` override them and are required for a
    model not in the table). ``base_url=None`` uses the SDK default (or ``ANTHROPIC_BASE_URL``).
    """

    model: str = DEFAULT_MODEL
    criteria: list[str] = field(default_factory=lambda: list(DEFAULT_CRITERIA))
    max_calls: int = 200
    max_cost_usd: float = 5.0
    price_per_mtok_in: float | None = None
    price_per_mtok_out: float | None = None
    cache_dir: str = ".cache/polylora/judge"
    seed: int = 0
    base_url: str | None = None
    max_retries: int = 5
    timeout_s: float = 120.0
    max_tokens: int = 256
    concurrency: int = 4

    def __post_init__(self) -> None:
        self.criteria = [str(c) for c in self.criteria]  # accepts tuples / OmegaConf lists
        known = model_prices(str(self.model or ""))
        if known is not None:
            if self.price_per_mtok_in is None:
                self.price_per_mtok_in = known[0]
            if self.price_per_mtok_out is None:
                self.price_per_mtok_out = known[1]
        self.validate()

    def validate(self) -> None:
        """Raise one :class:`ConfigError` listing every bad field and its fix."""
        raise_problems(check_judge(asdict(self)))

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        """Dollar cost of the given token counts at this config's prices."""
        price_in = float(self.price_per_mtok_in or 0)
        price_out = float(self.price_per_mtok_out or 0)
        return (input_tokens * price_in + output_tokens * price_out) / 1e6


def check_judge(settings: Mapping[str, Any]) -> list[str]:
    """The problems of ``eval.judge`` settings (or a :class:`JudgeConfig`'s fields; a field not
    given takes JudgeConfig's default), each naming the key and the fix."""
    p = Problems()

    def get(name: str) -> Any:
        value = settings.get(name)
        return getattr(JudgeConfig, name, None) if value is None and name not in (
            "price_per_mtok_in", "price_per_mtok_out") else value

    model = settings.get("model", DEFAULT_MODEL)
    p.check(bool(model) and isinstance(model, str),
            f"eval.judge.model is empty; set it to a model id, e.g. {DEFAULT_MODEL}")
    criteria = [str(c) for c in settings.get("criteria", DEFAULT_CRITERIA) or ()]
    p.check(bool(criteria), "eval.judge.criteria is empty; list at least one, e.g. [relevance]")
    for c in criteria:
        p.check(bool(_CRITERION_RE.match(c)),
                f"eval.judge.criteria has {c!r}; use lower-case names of letters, digits, "
                "and underscores (they become JSON keys and metric names)")
    p.check(len(set(criteria)) == len(criteria),
            f"eval.judge.criteria has duplicates {criteria}; list each once")
    for name in ("max_calls", "max_tokens", "concurrency"):
        p.check(int(get(name)) >= 1, f"eval.judge.{name}={get(name)} must be >= 1")
    p.check(int(get("max_retries")) >= 0,
            f"eval.judge.max_retries={get('max_retries')} must be >= 0")
    p.check(float(get("max_cost_usd")) > 0,
            f"eval.judge.max_cost_usd={get('max_cost_usd')} must be > 0")
    p.check(float(get("timeout_s")) > 0, f"eval.judge.timeout_s={get('timeout_s')} must be > 0")
    known = model_prices(str(model or ""))
    prices = {name: settings.get(name) for name in ("price_per_mtok_in", "price_per_mtok_out")}
    if known is None and None in prices.values():
        p.append(
            f"eval.judge.model={model!r} has no known price, so the cost cap cannot be "
            "enforced; set eval.judge.price_per_mtok_in=<USD> and price_per_mtok_out=<USD> "
            f"(per million tokens) or use a model in the table ({', '.join(PRICES_PER_MTOK)})"
        )
    for name, value in prices.items():
        p.check(value is None or float(value) >= 0, f"eval.judge.{name}={value} must be >= 0")
    answers = settings.get("answers", "greedy")
    p.check(answers in ("greedy", "first_sample"),
            f"eval.judge.answers={answers!r}; use greedy or first_sample")
    return p
