"""The judge's calls to the Anthropic Messages API: caching, retries, cost cap, key safety.

Every call costs money: no ``ANTHROPIC_API_KEY`` -> one message and ``None`` (the run goes
on); an upper-bound cost estimate is printed first and a run over ``max_cost_usd`` is
refused; at most ``max_calls`` comparisons; replies are cached on disk so a re-run costs
nothing; the API key is never stored, logged or printed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import tempfile
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polylora.errors import ConfigError, PolyloraError
from polylora.judge.rubric import (
    PROMPT_VERSION,
    SYSTEM_PROMPT,
    render_user_message,
)
from polylora.judge.scoring import JudgeResult, aggregate
from polylora.judge.settings import API_KEY_ENV, NO_KEY_MESSAGE, JudgeConfig

# Characters per token used for the (deliberately pessimistic) input-token estimate.
_CHARS_PER_TOKEN_ESTIMATE = 3.0


class JudgeError(PolyloraError):
    """The judge API failed for good (retries exhausted, key rejected, bad model name...)."""


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
        inner = body.get("error")
        e: dict[str, Any] = inner if isinstance(inner, dict) else body
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
        user = render_user_message(prompts[i], first, second, criteria)
        key = _cache_key(cfg.model, criteria, cfg.max_tokens, SYSTEM_PROMPT, user)
        first_shown.append(fs)
        entry = cache.get(key)
        entries.append(entry)
        from_cache.append(entry is not None)
        if entry is None:
            jobs.append(_Job(i, key, user))

    # Upper bound: pessimistic chars/token for input, the full max_tokens for output.
    est_in = sum(
        math.ceil((len(SYSTEM_PROMPT) + len(j.user)) / _CHARS_PER_TOKEN_ESTIMATE) + 16 for j in jobs
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
                system=SYSTEM_PROMPT,
                messages=[{"role": "user", "content": job.user}],
            )
            text = next((str(getattr(b, "text", "")) for b in resp.content
                         if getattr(b, "type", None) == "text"), "")
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

    result = aggregate(
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
