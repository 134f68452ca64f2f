"""LLM-as-judge: pairwise comparison of two systems' answers with the Anthropic Messages API.

For each prompt the judge model sees both answers (order randomized per prompt, seeded, so
position bias can be measured and cancels out in the aggregate) and returns one verdict per
criterion as strict JSON. Verdicts are mapped back to A (baseline) / B (candidate), cached on
disk so a re-run costs nothing, and aggregated into win rates (``judge/win_rate`` = B over A).

Safety rails, because every call costs money: no ``ANTHROPIC_API_KEY`` -> one message and
``None`` (the run goes on); an upper-bound cost estimate is printed first and a run over
``max_cost_usd`` is refused; at most ``max_calls`` comparisons; the API key is never stored,
logged or printed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import tempfile
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from polylora.errors import ConfigError, PolyloraError

__all__ = [
    "CriterionStats",
    "JudgeConfig",
    "JudgeError",
    "JudgeResult",
    "judge_pairwise",
    "parse_verdict",
]

API_KEY_ENV = "ANTHROPIC_API_KEY"
NO_KEY_MESSAGE = f"LLM judge skipped: {API_KEY_ENV} is not set; export it to enable eval.judge"
DEFAULT_CRITERIA = ("engagement", "relevance", "creativity", "naturalness")

# One-line descriptions shown to the judge for the built-in criteria; other names are shown bare.
CRITERION_DESCRIPTIONS: dict[str, str] = {
    "engagement": "how interesting and engaging the response is to read",
    "relevance": "how well the response addresses the prompt",
    "creativity": "originality and inventiveness of the response",
    "naturalness": "how fluent and natural the language sounds",
}

# Bump when the prompt wording changes in a way the rendered text does not capture.
PROMPT_VERSION = "pairwise-v1"
# Characters per token used for the (deliberately pessimistic) input-token estimate.
_CHARS_PER_TOKEN_ESTIMATE = 3.0
_CRITERION_RE = re.compile(r"^[a-z][a-z0-9_]*$")

Verdict = Literal["A", "B", "tie", "invalid"]


class JudgeError(PolyloraError):
    """The judge API failed for good (retries exhausted, key rejected, bad model name...)."""


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

    model: str = "claude-sonnet-4-5"
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
        """Raise :class:`ConfigError` naming the bad field and the fix."""
        if not self.model or not isinstance(self.model, str):
            raise ConfigError(
                "eval.judge.model is empty; set it to a model id, e.g. claude-sonnet-4-5"
            )
        if not self.criteria:
            raise ConfigError("eval.judge.criteria is empty; list at least one, e.g. [relevance]")
        for c in self.criteria:
            if not _CRITERION_RE.match(c):
                raise ConfigError(
                    f"eval.judge.criteria has {c!r}; use lower-case names of letters, digits, "
                    "and underscores (they become JSON keys and metric names)"
                )
        if len(set(self.criteria)) != len(self.criteria):
            raise ConfigError(f"eval.judge.criteria has duplicates {self.criteria}; list each once")
        for name in ("max_calls", "max_tokens", "concurrency"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"eval.judge.{name}={getattr(self, name)} must be >= 1")
        if int(self.max_retries) < 0:
            raise ConfigError(f"eval.judge.max_retries={self.max_retries} must be >= 0")
        if not float(self.max_cost_usd) > 0:
            raise ConfigError(f"eval.judge.max_cost_usd={self.max_cost_usd} must be > 0")
        if not float(self.timeout_s) > 0:
            raise ConfigError(f"eval.judge.timeout_s={self.timeout_s} must be > 0")
        if self.price_per_mtok_in is None or self.price_per_mtok_out is None:
            raise ConfigError(
                f"eval.judge.model={self.model!r} has no known price, so the cost cap cannot be "
                "enforced; set eval.judge.price_per_mtok_in=<USD> and price_per_mtok_out=<USD> "
                f"(per million tokens) or use a model in the table ({', '.join(PRICES_PER_MTOK)})"
            )
        for name in ("price_per_mtok_in", "price_per_mtok_out"):
            if float(getattr(self, name)) < 0:
                raise ConfigError(f"eval.judge.{name}={getattr(self, name)} must be >= 0")

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        """Dollar cost of the given token counts at this config's prices."""
        price_in = float(self.price_per_mtok_in or 0)
        price_out = float(self.price_per_mtok_out or 0)
        return (input_tokens * price_in + output_tokens * price_out) / 1e6


@dataclass
class CriterionStats:
    """Verdict counts for one criterion (or pooled over all); rates are over valid verdicts."""

    a_wins: int = 0
    b_wins: int = 0
    ties: int = 0
    invalid: int = 0

    @property
    def n_valid(self) -> int:
        """Verdicts that parsed to 1/2/tie."""
        return self.a_wins + self.b_wins + self.ties

    def _rate(self, count: int) -> float:
        return count / self.n_valid if self.n_valid else math.nan

    @property
    def a_win_rate(self) -> float:
        """Fraction of valid verdicts won by A (baseline)."""
        return self._rate(self.a_wins)

    @property
    def b_win_rate(self) -> float:
        """Fraction of valid verdicts won by B (candidate)."""
        return self._rate(self.b_wins)

    @property
    def tie_rate(self) -> float:
        """Fraction of valid verdicts that are ties."""
        return self._rate(self.ties)

    @property
    def win_rate(self) -> float:
        """B over A with ties as half a win: 0.5 = no difference, 1.0 = B always better."""
        return self._rate(self.b_wins) + 0.5 * self._rate(self.ties) if self.n_valid else math.nan

    @property
    def invalid_rate(self) -> float:
        """Fraction of all verdicts (valid or not) that could not be parsed."""
        total = self.n_valid + self.invalid
        return self.invalid / total if total else math.nan

    def add(self, verdict: Verdict) -> None:
        """Count one mapped verdict."""
        if verdict == "A":
            self.a_wins += 1
        elif verdict == "B":
            self.b_wins += 1
        elif verdict == "tie":
            self.ties += 1
        else:
            self.invalid += 1


@dataclass
class JudgeResult:
    """Aggregated pairwise verdicts plus per-prompt rows (``rows`` is ready for JSONL).

    ``first_position_win_rate`` is, over decisive (non-tie, valid) verdicts, how often the
    answer shown first won: 0.5 means no position bias.
    """

    model: str
    criteria: list[str]
    label_a: str
    label_b: str
    per_criterion: dict[str, CriterionStats]
    overall: CriterionStats
    first_position_win_rate: float
    n_prompts: int
    n_compared: int
    n_skipped: int
    calls_made: int
    calls_cached: int
    estimated_cost_usd: float
    cost_usd: float
    rows: list[dict[str, Any]]

    @property
    def win_rate(self) -> float:
        """The headline ``judge_win_rate``: B (candidate) over A (baseline), ties count half."""
        return self.overall.win_rate

    def to_metrics(self) -> dict[str, float]:
        """Flat ``judge/...`` metrics for MLflow; rates are NaN when nothing valid was judged."""
        m: dict[str, float] = {
            "judge/win_rate": self.overall.win_rate,
            "judge/b_win_rate": self.overall.b_win_rate,
            "judge/a_win_rate": self.overall.a_win_rate,
            "judge/tie_rate": self.overall.tie_rate,
            "judge/invalid_rate": self.overall.invalid_rate,
            "judge/first_position_win_rate": self.first_position_win_rate,
        }
        for c, s in self.per_criterion.items():
            m[f"judge/{c}_win_rate"] = s.win_rate
            m[f"judge/{c}_b_win_rate"] = s.b_win_rate
            m[f"judge/{c}_a_win_rate"] = s.a_win_rate
            m[f"judge/{c}_tie_rate"] = s.tie_rate
        m.update(
            {
                "judge/n_compared": float(self.n_compared),
                "judge/n_skipped": float(self.n_skipped),
                "judge/calls_made": float(self.calls_made),
                "judge/calls_cached": float(self.calls_cached),
                "judge/estimated_cost_usd": self.estimated_cost_usd,
                "judge/cost_usd": self.cost_usd,
            }
        )
        return m

    def write_jsonl(self, path: str | os.PathLike[str]) -> Path:
        """Write ``rows`` one JSON object per line (UTF-8); returns the path."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        with p.open("w", encoding="utf-8") as f:
            for row in self.rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        return p


# --------------------------------------------------------------------------- prompt & parsing

_SYSTEM = (
    "You are an impartial judge comparing two responses to the same prompt. "
    "Judge only the content; ignore the order in which the responses are shown and their "
    "length unless it matters for the criterion. Reply with a single JSON object and nothing else."
)


def _render_user_message(prompt: str, first: str, second: str, criteria: Sequence[str]) -> str:
    """The judge's user turn: prompt, both answers in shown order, and the strict reply format."""
    lines = []
    for c in criteria:
        desc = CRITERION_DESCRIPTIONS.get(c)
        lines.append(f"- {c}: {desc}" if desc else f"- {c}")
    example = json.dumps({c: ("1", "2", "tie")[i % 3] for i, c in enumerate(criteria)})
    return (
        f"<prompt>\n{prompt}\n</prompt>\n\n"
        f"<response_1>\n{first}\n</response_1>\n\n"
        f"<response_2>\n{second}\n</response_2>\n\n"
        'For each criterion below, decide which response is better: "1" (response_1), '
        '"2" (response_2) or "tie".\n'
        "Criteria:\n" + "\n".join(lines) + "\n\n"
        'Answer with only a JSON object with exactly these keys and values "1", "2" or '
        f'"tie", for example:\n{example}'
    )


_VALUE_MAP = {"1": "1", "2": "2", "tie": "tie", "draw": "tie", "equal": "tie"}


def _find_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` (tolerates code fences and chatter around it)."""
    try:
        obj = json.loads(text)
        if isinstance(obj, dict):
            return obj
    except (json.JSONDecodeError, ValueError):
        pass
    decoder = json.JSONDecoder()
    for m in re.finditer(r"\{", text):
        try:
            obj, _ = decoder.raw_decode(text, m.start())
        except (json.JSONDecodeError, ValueError):
            continue
        if isinstance(obj, dict):
            return obj
    return None


def parse_verdict(text: str, criteria: Sequence[str]) -> dict[str, str | None]:
    """Positional verdicts ``"1"``/``"2"``/``"tie"`` per criterion; ``None`` where unusable.

    Never raises: junk text, a missing key or an odd value just make that criterion invalid.
    """
    obj = _find_json_object(text or "")
    out: dict[str, str | None] = dict.fromkeys(criteria)
    if obj is None:
        return out
    lowered = {str(k).strip().lower(): v for k, v in obj.items()}
    for c in criteria:
        v = lowered.get(c)
        if isinstance(v, bool) or v is None:
            continue
        out[c] = _VALUE_MAP.get(str(v).strip().strip("\"'").lower())
    return out


def _map_back(positional: str | None, first_shown: str) -> Verdict:
    """Turn a positional verdict into A/B given which answer was shown first."""
    if positional == "tie":
        return "tie"
    if positional in ("1", "2"):
        first_won = positional == "1"
        return ("A" if first_won else "B") if first_shown == "A" else ("B" if first_won else "A")
    return "invalid"


# --------------------------------------------------------------------------- cache


class _DiskCache:
    """One JSON file per request hash; holds the model's reply text and token usage only."""

    def __init__(self, root: str) -> None:
        self.root = Path(os.path.expanduser(root))

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        p = self._path(key)
        try:
            entry = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # missing or corrupt: treat as a miss, it will be overwritten
        if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
            return None
        return entry

    def put(self, key: str, entry: dict[str, Any]) -> None:
        p = self._path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(entry, f, ensure_ascii=False)
            os.replace(tmp, p)  # atomic: a crash never leaves a half-written entry
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _cache_key(model: str, criteria: Sequence[str], max_tokens: int, system: str, user: str) -> str:
    """Hash of everything that determines the reply: the rendered prompt (prompt, answers in
    shown order, criteria), the model and the prompt version."""
    payload = json.dumps(
        [PROMPT_VERSION, model, list(criteria), max_tokens, system, user], ensure_ascii=False
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- API calls


def _scrub(text: str, secret: str) -> str:
    """Remove the API key from any text before it can reach a message or file."""
    return text.replace(secret, "***") if secret else text


def _describe_api_error(err: Exception, secret: str) -> str:
    """One line for a failed request: status, API error type and message (key scrubbed)."""
    status = getattr(err, "status_code", None)
    body = getattr(err, "body", None)
    detail = ""
    if isinstance(body, dict):
        e = body.get("error") if isinstance(body.get("error"), dict) else body
        detail = f"{e.get('type', '')}: {e.get('message', '')}".strip(": ")
    if not detail:
        detail = type(err).__name__ + (f": {err}" if str(err) else "")
    head = f"HTTP {status} " if status is not None else ""
    return _scrub(f"{head}{detail}".strip(), secret)


def _error_hint(err: Exception, model: str, max_retries: int) -> str:
    """The fix to suggest for a failed request, by status (rejected vs. retried to exhaustion)."""
    status = getattr(err, "status_code", None)
    if status == 401 or status == 403:
        return f"check that {API_KEY_ENV} is a valid key for this API"
    if status == 404:
        return f"check eval.judge.model={model!r} is a model id this API serves"
    if status is not None and 400 <= status < 500 and status not in (408, 409, 429):
        return "the request was rejected; check eval.judge.model and eval.judge.max_tokens"
    return (
        f"gave up after {max_retries} retries; raise eval.judge.max_retries or re-run later "
        "(finished comparisons are cached, a re-run resumes)"
    )


@dataclass
class _Job:
    index: int
    key: str
    user: str


# --------------------------------------------------------------------------- main entry point


def _validate_inputs(
    prompts: Sequence[str],
    answers_a: Sequence[str],
    answers_b: Sequence[str],
    ids: Sequence[str] | None,
) -> list[str]:
    n = len(prompts)
    if n == 0:
        raise ConfigError("LLM judge: no prompts to compare; pass at least one prompt")
    if len(answers_a) != n or len(answers_b) != n:
        raise ConfigError(
            f"LLM judge: {n} prompts but {len(answers_a)} answers for A and {len(answers_b)} for "
            "B; pass one answer per prompt for each system"
        )
    if ids is None:
        return [str(i) for i in range(n)]
    if len(ids) != n:
        raise ConfigError(f"LLM judge: {len(ids)} ids for {n} prompts; pass one id per prompt")
    out = [str(i) for i in ids]
    if len(set(out)) != n:
        raise ConfigError("LLM judge: ids are not unique; pass one distinct id per prompt")
    return out


def _say(message: str) -> None:
    """User-facing progress line (printed so it shows in the console and Hydra's job log)."""
    print(message, flush=True)


def judge_pairwise(
    prompts: list[str],
    answers_a: list[str],
    answers_b: list[str],
    cfg: JudgeConfig,
    *,
    label_a: str = "A",
    label_b: str = "B",
    ids: list[str] | None = None,
) -> JudgeResult | None:
    """Compare B (candidate) against A (baseline) on each prompt with an LLM judge.

    Returns ``None`` after one message when ``ANTHROPIC_API_KEY`` is unset, so evaluation
    without a key still completes. Raises :class:`ConfigError` when the cost estimate exceeds
    ``cfg.max_cost_usd`` and :class:`JudgeError` when the API fails after its retries.
    """
    cfg.validate()
    id_list = _validate_inputs(prompts, answers_a, answers_b, ids)

    api_key = os.environ.get(API_KEY_ENV, "").strip()
    if not api_key:
        _say(NO_KEY_MESSAGE)
        return None

    n_prompts = len(prompts)
    # Balanced, seeded order over the full list: exactly half (±1) of the prompts show B first,
    # and a prompt's order does not depend on max_calls, so raising the cap reuses the cache.
    b_first = [i % 2 == 1 for i in range(n_prompts)]
    random.Random(cfg.seed).shuffle(b_first)

    n_compared = min(n_prompts, int(cfg.max_calls))
    n_skipped = n_prompts - n_compared
    if n_skipped:
        _say(
            f"LLM judge: comparing the first {n_compared} of {n_prompts} prompts "
            f"(eval.judge.max_calls={cfg.max_calls}); raise it to judge all"
        )

    cache = _DiskCache(cfg.cache_dir)
    criteria = list(cfg.criteria)
    first_shown: list[str] = []
    entries: list[dict[str, Any] | None] = []
    from_cache: list[bool] = []
    jobs: list[_Job] = []
    for i in range(n_compared):
        fs = "B" if b_first[i] else "A"
        first, second = (answers_b[i], answers_a[i]) if fs == "B" else (answers_a[i], answers_b[i])
        user = _render_user_message(prompts[i], first, second, criteria)
        key = _cache_key(cfg.model, criteria, cfg.max_tokens, _SYSTEM, user)
        first_shown.append(fs)
        entry = cache.get(key)
        entries.append(entry)
        from_cache.append(entry is not None)
        if entry is None:
            jobs.append(_Job(i, key, user))

    # Upper bound: pessimistic chars/token for input, the full max_tokens for output.
    est_in = sum(
        math.ceil((len(_SYSTEM) + len(j.user)) / _CHARS_PER_TOKEN_ESTIMATE) + 16 for j in jobs
    )
    est_out = len(jobs) * int(cfg.max_tokens)
    estimated = cfg.cost_usd(est_in, est_out)
    n_cached = n_compared - len(jobs)
    _say(
        f"LLM judge: {len(jobs)} calls to {cfg.model} ({n_cached} cached), estimated at most "
        f"${estimated:.4f} (~{est_in} input + {est_out} output tokens at "
        f"${cfg.price_per_mtok_in}/${cfg.price_per_mtok_out} per Mtok); cap "
        f"${cfg.max_cost_usd:.2f}"
    )
    if estimated > cfg.max_cost_usd:
        raise ConfigError(
            f"LLM judge refused: estimated cost ${estimated:.2f} for {len(jobs)} calls exceeds "
            f"eval.judge.max_cost_usd=${cfg.max_cost_usd:.2f}; raise max_cost_usd or lower "
            "eval.judge.max_calls"
        )

    calls_made, in_tok, out_tok = 0, 0, 0
    stopped_at_cap = False
    if jobs:
        import anthropic  # imported lazily: only runs that actually call the API need it

        client = anthropic.Anthropic(
            api_key=api_key,
            base_url=cfg.base_url,
            max_retries=int(cfg.max_retries),
            timeout=float(cfg.timeout_s),
        )

        def call(job: _Job) -> dict[str, Any]:
            resp = client.messages.create(
                model=cfg.model,
                max_tokens=int(cfg.max_tokens),
                system=_SYSTEM,
                messages=[{"role": "user", "content": job.user}],
            )
            text = next((b.text for b in resp.content if getattr(b, "type", None) == "text"), "")
            usage = resp.usage
            return {
                "text": _scrub(text, api_key),
                "model": str(getattr(resp, "model", cfg.model)),
                "input_tokens": int(getattr(usage, "input_tokens", 0) or 0),
                "output_tokens": int(getattr(usage, "output_tokens", 0) or 0),
                "prompt_version": PROMPT_VERSION,
            }

        pending = iter(jobs)
        running: dict[Future[dict[str, Any]], _Job] = {}
        failure: Exception | None = None

        def fill(pool: ThreadPoolExecutor) -> None:
            while len(running) < int(cfg.concurrency):
                job = next(pending, None)
                if job is None:
                    return
                running[pool.submit(call, job)] = job

        try:
            with ThreadPoolExecutor(max_workers=int(cfg.concurrency)) as pool:
                fill(pool)
                while running:
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in done:
                        job = running.pop(fut)
                        try:
                            entry = fut.result()  # the SDK has already retried 429/529/5xx
                        except anthropic.APIError as err:
                            failure = failure or err
                            continue
                        cache.put(job.key, entry)  # paid for: keep it even if others fail
                        entries[job.index] = entry
                        calls_made += 1
                        in_tok += entry["input_tokens"]
                        out_tok += entry["output_tokens"]
                    if cfg.cost_usd(in_tok, out_tok) >= cfg.max_cost_usd:
                        stopped_at_cap = True
                    if failure is None and not stopped_at_cap:
                        fill(pool)  # otherwise drain the in-flight calls, start no new ones
        finally:
            client.close()
        if failure is not None:
            raise JudgeError(
                f"LLM judge request failed ({_describe_api_error(failure, api_key)}); "
                f"{_error_hint(failure, cfg.model, int(cfg.max_retries))}"
            )
    cost = cfg.cost_usd(in_tok, out_tok)
    if stopped_at_cap:
        _say(
            f"LLM judge: stopped after {calls_made} calls, spent ${cost:.4f} >= "
            f"eval.judge.max_cost_usd=${cfg.max_cost_usd:.2f}; unjudged prompts are skipped"
        )

    result = _aggregate(
        cfg,
        prompts,
        answers_a,
        answers_b,
        id_list,
        first_shown,
        entries,
        from_cache,
        label_a,
        label_b,
    )
    result.n_prompts = n_prompts
    result.n_skipped = n_prompts - result.n_compared
    result.calls_made = calls_made
    result.calls_cached = n_cached
    result.estimated_cost_usd = estimated
    result.cost_usd = cost
    _say(
        f"LLM judge: {label_b} (B) vs {label_a} (A): win rate {result.win_rate:.3f} over "
        f"{result.n_compared} prompts x {len(criteria)} criteria "
        f"(invalid {result.overall.invalid}); first-shown answer won "
        f"{result.first_position_win_rate:.3f} of decisive verdicts; {calls_made} calls, "
        f"{n_cached} cached, cost ${cost:.4f}"
    )
    return result


def _aggregate(
    cfg: JudgeConfig,
    prompts: Sequence[str],
    answers_a: Sequence[str],
    answers_b: Sequence[str],
    ids: Sequence[str],
    first_shown: Sequence[str],
    entries: Sequence[dict[str, Any] | None],
    from_cache: Sequence[bool],
    label_a: str,
    label_b: str,
) -> JudgeResult:
    """Parse each judged reply, map positions back to A/B and count; unjudged ones are left out."""
    criteria = list(cfg.criteria)
    per = {c: CriterionStats() for c in criteria}
    overall = CriterionStats()
    first_wins = decisive = 0
    rows: list[dict[str, Any]] = []
    for i, entry in enumerate(entries):
        if entry is None:  # not judged (stopped at the cost cap)
            continue
        positional = parse_verdict(entry["text"], criteria)
        verdicts: dict[str, Verdict] = {}
        for c in criteria:
            v = _map_back(positional[c], first_shown[i])
            verdicts[c] = v
            per[c].add(v)
            overall.add(v)
            if positional[c] in ("1", "2"):
                decisive += 1
                first_wins += positional[c] == "1"
        in_t, out_t = int(entry.get("input_tokens", 0)), int(entry.get("output_tokens", 0))
        rows.append(
            {
                "id": ids[i],
                "prompt": prompts[i],
                "answer_a": answers_a[i],
                "answer_b": answers_b[i],
                "label_a": label_a,
                "label_b": label_b,
                "first_shown": first_shown[i],
                "verdicts": verdicts,
                "positional": positional,
                "judge_text": entry["text"],
                "judge_model": cfg.model,
                "cached": from_cache[i],
                "input_tokens": in_t,
                "output_tokens": out_t,
                "cost_usd": cfg.cost_usd(in_t, out_t),
            }
        )
    return JudgeResult(
        model=cfg.model,
        criteria=criteria,
        label_a=label_a,
        label_b=label_b,
        per_criterion=per,
        overall=overall,
        first_position_win_rate=first_wins / decisive if decisive else math.nan,
        n_prompts=len(prompts),
        n_compared=len(rows),
        n_skipped=0,
        calls_made=0,
        calls_cached=0,
        estimated_cost_usd=0.0,
        cost_usd=0.0,
        rows=rows,
    )
