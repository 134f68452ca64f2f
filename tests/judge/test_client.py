"""The pairwise LLM judge: the real anthropic SDK against a local stub server (no network,
no real key)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import anthropic._base_client as sdk_base
import pytest
from judge.stub_anthropic import MARKER, RecordedRequest, StubAnthropic

from polylora.errors import ConfigError
from polylora.judge import (
    NO_KEY_MESSAGE,
    JudgeConfig,
    JudgeError,
    judge_pairwise,
    parse_verdict,
)

SECRET = "sk-ant-api03-TESTSECRET-7f3c9a1e5b"
CRITERIA = ["engagement", "relevance", "creativity", "naturalness"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Isolate from the developer's environment: fixed key, no SDK/proxy overrides."""
    for var in (
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_CUSTOM_HEADERS",
        "ANTHROPIC_PROFILE",
        "ANTHROPIC_CONFIG_DIR",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the SDK's retry sleeps instead of waiting them out (keeps the tests fast)."""
    recorded: list[float] = []
    monkeypatch.setattr(sdk_base.time, "sleep", recorded.append)
    return recorded


PRICED = {"price_per_mtok_in": 1.0, "price_per_mtok_out": 1.0}  # a model not in the table


def make_cfg(stub: StubAnthropic, tmp_path: Path, **kw: object) -> JudgeConfig:
    """A config pointed at the stub with a per-test cache directory."""
    base = {"base_url": stub.url, "cache_dir": str(tmp_path / "cache"), "seed": 7}
    return JudgeConfig(**{**base, **kw})  # type: ignore[arg-type]


def dataset(n: int, marked: str | dict[int, str] = "B") -> tuple[list[str], list[str], list[str]]:
    """n prompts with distinct answers; the marker goes into B's answer, A's, or per index."""
    prompts = [f"Prompt number {i}: tell me something." for i in range(n)]
    a, b = [], []
    for i in range(n):
        who = marked if isinstance(marked, str) else marked.get(i, "none")
        a.append(f"baseline answer {i}" + (f" {MARKER}" if who == "A" else ""))
        b.append(f"candidate answer {i}" + (f" {MARKER}" if who == "B" else ""))
    return prompts, a, b


def request_for(stub: StubAnthropic, prompt: str) -> RecordedRequest:
    """The single successful-path request that carried ``prompt``."""
    hits = [r for r in stub.requests if f"<prompt>\n{prompt}\n</prompt>" in r.text]
    assert len(hits) == 1, f"{len(hits)} requests for {prompt!r}"
    return hits[0]


def test_positions_are_swapped_and_mapped_back(tmp_path: Path) -> None:
    n = 10
    owner = {i: ("A" if i % 3 == 0 else "B") for i in range(n)}
    prompts, a, b = dataset(n, owner)
    with StubAnthropic() as stub:
        res = judge_pairwise(prompts, a, b, make_cfg(stub, tmp_path), label_a="base")
    assert res is not None
    assert len(stub.requests) == n and res.calls_made == n and res.calls_cached == 0
    shown_first = set()
    for i, row in enumerate(res.rows):
        first, second = request_for(stub, prompts[i]).shown()
        # what the stub saw matches the recorded order
        assert (first, second) == ((a[i], b[i]) if row["first_shown"] == "A" else (b[i], a[i]))
        shown_first.add(row["first_shown"])
        # the marked answer wins every criterion regardless of position
        assert row["verdicts"] == dict.fromkeys(CRITERIA, owner[i]), row
        assert row["label_a"] == "base" and row["id"] == str(i)
    assert shown_first == {"A", "B"}
    assert sum(r["first_shown"] == "B" for r in res.rows) == n // 2  # balanced
    n_b = sum(v == "B" for v in owner.values())
    assert res.win_rate == pytest.approx(n_b / n)
    for c in CRITERIA:
        s = res.per_criterion[c]
        assert (s.a_wins, s.b_wins, s.ties, s.invalid) == (n - n_b, n_b, 0, 0)
    m = res.to_metrics()
    assert m["judge/win_rate"] == pytest.approx(n_b / n)
    assert m["judge/relevance_win_rate"] == pytest.approx(n_b / n)
    assert m["judge/tie_rate"] == 0.0 and m["judge/invalid_rate"] == 0.0
    assert all(isinstance(v, float) for v in m.values())


def test_position_bias_is_measured(tmp_path: Path) -> None:
    """A judge that always prefers the first-shown answer: bias 1.0, win rate exactly 0.5."""
    prompts, a, b = dataset(8)
    with StubAnthropic(responder=lambda r: json.dumps(dict.fromkeys(CRITERIA, "1"))) as stub:
        res = judge_pairwise(prompts, a, b, make_cfg(stub, tmp_path))
    assert res is not None
    assert res.first_position_win_rate == 1.0
    assert res.win_rate == pytest.approx(0.5)
    assert res.to_metrics()["judge/first_position_win_rate"] == 1.0


def test_ties_and_junk_replies_count_as_tie_or_invalid(tmp_path: Path) -> None:
    def responder(req: RecordedRequest) -> str:
        text = req.text
        if "Prompt number 0:" in text:
            return "I cannot decide, both are fine."  # no JSON at all
        if "Prompt number 1:" in text:
            return 'Sure!\n```json\n{"Engagement": "TIE", "relevance": 2}\n```'  # partial
        if "Prompt number 2:" in text:
            return json.dumps(dict.fromkeys(CRITERIA, "maybe"))  # bad values
        return json.dumps(dict.fromkeys(CRITERIA, "tie"))

    prompts, a, b = dataset(4)
    with StubAnthropic(responder=responder) as stub:
        res = judge_pairwise(prompts, a, b, make_cfg(stub, tmp_path))
    assert res is not None
    rows = {r["id"]: r for r in res.rows}
    assert set(rows["0"]["verdicts"].values()) == {"invalid"}
    assert rows["1"]["verdicts"]["engagement"] == "tie"
    # "2" means the second-shown answer, whichever system that was
    assert rows["1"]["verdicts"]["relevance"] == ("A" if rows["1"]["first_shown"] == "B" else "B")
    assert rows["1"]["verdicts"]["creativity"] == "invalid"
    assert set(rows["2"]["verdicts"].values()) == {"invalid"}
    assert set(rows["3"]["verdicts"].values()) == {"tie"}
    assert res.overall.invalid == 4 + 2 + 4
    assert res.overall.invalid_rate == pytest.approx(10 / 16)
    assert res.per_criterion["creativity"].n_valid == 1
    assert res.per_criterion["creativity"].win_rate == 0.5  # one tie


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"x": "1", "y": "2"}', {"x": "1", "y": "2"}),
        ('Verdict: {"x": 1, "y": "Tie"} done', {"x": "1", "y": "tie"}),
        ('{"x": true, "y": null}', {"x": None, "y": None}),
        ('{not json} then {"x": "2"}', {"x": "2", "y": None}),
        ("", {"x": None, "y": None}),
        ("[1, 2]", {"x": None, "y": None}),
    ],
)
def test_parse_verdict_is_robust(text: str, expected: dict[str, str | None]) -> None:
    assert parse_verdict(text, ["x", "y"]) == expected


def test_second_run_is_served_from_cache(tmp_path: Path) -> None:
    prompts, a, b = dataset(6)
    with StubAnthropic() as stub:
        cfg = make_cfg(stub, tmp_path)
        first = judge_pairwise(prompts, a, b, cfg)
        n_first = len(stub.requests)
        second = judge_pairwise(prompts, a, b, cfg)
        assert len(stub.requests) == n_first == 6  # zero requests on the re-run
        assert first is not None and second is not None
        assert (second.calls_made, second.calls_cached, second.cost_usd) == (0, 6, 0.0)
        assert second.rows[0]["cached"] and not first.rows[0]["cached"]
        assert second.win_rate == first.win_rate == 1.0
        # the key covers the model: another judge model is a miss
        other = make_cfg(stub, tmp_path, model="other-model", **PRICED)
        judge_pairwise(prompts[:2], a[:2], b[:2], other)
        assert len(stub.requests) == 8


@pytest.mark.parametrize(("status", "retry_after"), [(429, "2"), (429, "0"), (529, None)])
def test_rate_limit_and_overload_are_retried(
    tmp_path: Path, sleeps: list[float], status: int, retry_after: str | None
) -> None:
    prompts, a, b = dataset(1)
    with StubAnthropic(fail_first=2, fail_status=status, retry_after=retry_after) as stub:
        res = judge_pairwise(prompts, a, b, make_cfg(stub, tmp_path, max_retries=3))
    assert res is not None and res.win_rate == 1.0 and res.calls_made == 1
    assert stub.statuses == [status, status, 200]
    assert [r.headers["x-stainless-retry-count"] for r in stub.requests] == ["0", "1", "2"]
    assert len(sleeps) == 2
    if retry_after == "2":
        assert sleeps == [2.0, 2.0]  # the SDK waits what retry-after says
    else:  # exponential backoff 0.5 s, 1 s with up to 25 % jitter
        assert 0.375 <= sleeps[0] <= 0.5 and 0.75 <= sleeps[1] <= 1.0


def test_exhausted_retries_raise_one_line_error(tmp_path: Path, sleeps: list[float]) -> None:
    prompts, a, b = dataset(2)
    with StubAnthropic(fail_first=100) as stub:
        cfg = make_cfg(stub, tmp_path, max_retries=2, concurrency=1)
        with pytest.raises(JudgeError) as exc:
            judge_pairwise(prompts, a, b, cfg)
    msg = str(exc.value)
    assert len(stub.requests) == 3  # 1 try + 2 retries, then no new calls
    assert "429" in msg and "rate_limit_error" in msg and "max_retries" in msg
    assert "\n" not in msg and SECRET not in msg


def test_rejected_request_is_not_retried(tmp_path: Path, sleeps: list[float]) -> None:
    prompts, a, b = dataset(1)
    with (
        StubAnthropic(fail_first=100, fail_status=404) as stub,
        pytest.raises(JudgeError, match=r"eval\.judge\.model='no-such-model'"),
    ):
        judge_pairwise(prompts, a, b, make_cfg(stub, tmp_path, model="no-such-model", **PRICED))
    assert len(stub.requests) == 1 and sleeps == []


def test_no_key_skips_with_one_message_and_no_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    prompts, a, b = dataset(3)
    with StubAnthropic() as stub:
        assert judge_pairwise(prompts, a, b, make_cfg(stub, tmp_path)) is None
    out = capsys.readouterr()
    assert (out.out + out.err).strip() == NO_KEY_MESSAGE
    assert "ANTHROPIC_API_KEY is not set" in NO_KEY_MESSAGE
    assert stub.requests == []
    assert not (tmp_path / "cache").exists()


def test_api_key_never_leaks(
    tmp_path: Path,
    sleeps: list[float],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # include the SDK's own debug logging
    prompts, a, b = dataset(4)
    with StubAnthropic(fail_first=1) as stub:
        cfg = make_cfg(stub, tmp_path)
        res = judge_pairwise(prompts, a, b, cfg)
        judge_pairwise(prompts, a, b, cfg)  # cached re-run prints too
    assert res is not None
    # the key was really used (so not finding it below means something)
    assert all(r.headers.get("authorization") == f"Bearer {SECRET}" for r in stub.requests)
    files = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert len(files) == 4
    for p in files:
        assert SECRET not in p.read_text(encoding="utf-8")
        assert "TESTSECRET" not in p.read_text(encoding="utf-8")
    jsonl = res.write_jsonl(tmp_path / "judge.jsonl")
    assert len(jsonl.read_text(encoding="utf-8").splitlines()) == 4
    out = capsys.readouterr()
    for text in (
        out.out,
        out.err,
        caplog.text,
        jsonl.read_text(encoding="utf-8"),
        repr(res),
        repr(cfg),
        json.dumps(res.to_metrics()),
    ):
        assert SECRET not in text


def test_cost_cap_refuses_before_any_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts, a, b = dataset(5)
    with StubAnthropic() as stub:
        with pytest.raises(ConfigError) as exc:
            judge_pairwise(prompts, a, b, make_cfg(stub, tmp_path, max_cost_usd=0.001))
        assert stub.requests == []
    msg = str(exc.value)
    assert "estimated cost" in msg and "max_cost_usd" in msg and "\n" not in msg
    assert "estimated at most $" in capsys.readouterr().out


def test_max_calls_caps_comparisons_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts, a, b = dataset(5)
    with StubAnthropic() as stub:
        res = judge_pairwise(prompts, a, b, make_cfg(stub, tmp_path, max_calls=3))
    assert res is not None
    assert len(stub.requests) == 3 and res.n_compared == 3 and res.n_skipped == 2
    assert [r["id"] for r in res.rows] == ["0", "1", "2"]
    assert "first 3 of 5 prompts" in capsys.readouterr().out


def test_cost_is_reported_from_usage_and_bounded_by_estimate(tmp_path: Path) -> None:
    prompts, a, b = dataset(4)
    with StubAnthropic() as stub:
        res = judge_pairwise(prompts, a, b, make_cfg(stub, tmp_path))
    assert res is not None
    tok_in = sum(max(1, len(r.text) // 4) for r in stub.requests)
    tok_out = sum(r["output_tokens"] for r in res.rows)
    assert sum(r["input_tokens"] for r in res.rows) == tok_in
    assert res.cost_usd == pytest.approx((tok_in * 3.0 + tok_out * 15.0) / 1e6)
    assert 0 < res.cost_usd <= res.estimated_cost_usd
    assert res.to_metrics()["judge/cost_usd"] == pytest.approx(res.cost_usd)


def test_spending_past_the_cap_stops_new_calls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The estimate passed but the API reports more tokens than expected: stop, keep results."""
    prompts, a, b = dataset(5)
    with StubAnthropic(output_tokens=200_000) as stub:  # $3 per call at $15/Mtok
        cfg = make_cfg(stub, tmp_path, concurrency=1, max_cost_usd=5.0)
        res = judge_pairwise(prompts, a, b, cfg)
    assert res is not None
    assert len(stub.requests) == 2 and res.calls_made == 2
    assert res.n_compared == 2 and res.n_skipped == 3
    assert "stopped after 2 calls" in capsys.readouterr().out


def test_bad_inputs_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="criteria"):
        JudgeConfig(criteria=["Relevance!"])
    with pytest.raises(ConfigError, match="duplicates"):
        JudgeConfig(criteria=["relevance", "relevance"])
    with pytest.raises(ConfigError, match="one answer per prompt"):
        judge_pairwise(["p1", "p2"], ["a"], ["b", "c"], JudgeConfig(cache_dir=str(tmp_path)))
    with pytest.raises(ConfigError, match="not unique"):
        judge_pairwise(["p", "q"], ["a", "b"], ["c", "d"], JudgeConfig(), ids=["x", "x"])


def test_nan_rates_when_nothing_valid(tmp_path: Path) -> None:
    prompts, a, b = dataset(2)
    with StubAnthropic(responder=lambda r: "no idea") as stub:
        res = judge_pairwise(prompts, a, b, make_cfg(stub, tmp_path))
    assert res is not None
    m = res.to_metrics()
    assert math.isnan(m["judge/win_rate"]) and m["judge/invalid_rate"] == 1.0


def test_cost_cap_uses_the_configured_models_price() -> None:
    from polylora.judge.settings import PRICES_PER_MTOK, model_prices

    opus = JudgeConfig(model="claude-opus-4-1-20250805")
    assert (opus.price_per_mtok_in, opus.price_per_mtok_out) == PRICES_PER_MTOK["claude-opus-4-1"]
    haiku = JudgeConfig(model="claude-haiku-4-5")
    assert opus.cost_usd(10**6, 10**6) == 90.0 and haiku.cost_usd(10**6, 10**6) == 6.0
    assert model_prices("claude-opus-4-5") == (5.0, 25.0)  # longest prefix, not claude-opus-4
    with pytest.raises(ConfigError, match=r"no known price.*price_per_mtok_in"):
        JudgeConfig(model="some-new-model")
    priced = JudgeConfig(model="some-new-model", price_per_mtok_in=2.0, price_per_mtok_out=4.0)
    assert priced.cost_usd(10**6, 10**6) == 6.0
