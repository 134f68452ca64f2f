"""The judge wired to runs: a candidate run judged against a baseline run's saved answers,
through the real pipeline and the real anthropic client against a local stub server."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import runs_of
from judge.stub_anthropic import StubAnthropic

from polylora.cli.main import main as cli_main
from polylora.run.pipeline import execute

SECRET = "sk-ant-api03-PIPELINE-SECRET-42"


@pytest.fixture(scope="module")
def baseline(compose_module_cfg):
    """One baseline run whose saved answers every candidate of this module is judged against."""
    cfg = compose_module_cfg(["+experiment=smoke"])
    return cfg, execute(cfg)


def candidate_overrides(run_id: str, stub_url: str, tmp_path: Path) -> list[str]:
    return ["+experiment=smoke", "seed=7", "eval.judge.enabled=true",
            f"eval.judge.baseline_run={run_id}", f"eval.judge.base_url={stub_url}",
            f"eval.judge.cache_dir={tmp_path / 'cache'}"]


def test_judge_in_pipeline_logs_metrics_and_never_the_key(
    baseline, compose_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg0, res0 = baseline
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    with StubAnthropic() as stub:
        cfg = compose_cfg([*candidate_overrides(res0.run_id, stub.url, tmp_path),
                           f"tracking.experiment={cfg0.tracking.experiment}"],
                          output_dir=tmp_path / "cand")
        res = execute(cfg)
        assert len(stub.requests) == cfg.eval.subset_size
    assert "judge/win_rate" in res.metrics
    run = next(r for r in runs_of(cfg) if r.info.run_id == res.run_id)
    assert "judge/win_rate" in run.data.metrics
    assert all(SECRET not in str(v) for v in run.data.params.values())
    for path in (tmp_path / "cand").rglob("*"):
        if path.is_file() and path.suffix in (".yaml", ".json", ".jsonl", ".txt"):
            assert SECRET not in path.read_text(errors="ignore"), path


def test_no_key_skips_with_message_and_run_finishes(
    baseline, compose_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    cfg0, res0 = baseline
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with StubAnthropic() as stub:
        cfg = compose_cfg([*candidate_overrides(res0.run_id, stub.url, tmp_path),
                           f"tracking.experiment={cfg0.tracking.experiment}"],
                          output_dir=tmp_path / "cand")
        res = execute(cfg)
        assert stub.requests == []
    assert "ANTHROPIC_API_KEY is not set" in capsys.readouterr().out
    run = next(r for r in runs_of(cfg) if r.info.run_id == res.run_id)
    assert run.info.status == "FINISHED" and "judge/win_rate" not in run.data.metrics


def test_cli_judges_two_runs_and_logs_to_candidate(
    baseline, compose_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg0, res0 = baseline
    other = compose_cfg(["+experiment=smoke", "seed=9",
                         f"tracking.experiment={cfg0.tracking.experiment}"],
                        output_dir=tmp_path / "other")
    res1 = execute(other)
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    with StubAnthropic() as stub:
        code = cli_main(["judge", "--baseline-run", res0.run_id, "--candidate-run", res1.run_id,
                         "--tracking-uri", cfg0.tracking.uri, "--base-url", stub.url,
                         "--out", str(tmp_path / "judge")])
    assert code == 0
    run = next(r for r in runs_of(cfg0) if r.info.run_id == res1.run_id)
    assert 0.0 <= run.data.metrics["judge/win_rate"] <= 1.0
    assert (tmp_path / "judge" / "judge.jsonl").is_file()


def test_cli_unknown_run_is_one_line_error(tmp_path: Path, mlflow_uri: str, capsys) -> None:
    code = cli_main(["judge", "--baseline-run", "0" * 32, "--candidate-run", "1" * 32,
                     "--tracking-uri", mlflow_uri])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("polylora: error:")


def test_rows_are_paired_by_id_and_equal_prompt_text() -> None:
    from polylora.errors import DataError
    from polylora.judge import JudgeConfig
    from polylora.judge.runs import judge_rows

    cfg = JudgeConfig(max_calls=1)
    base = [{"id": "a", "prompt": "Say hi", "greedy": "hi"},
            {"id": "b", "prompt": "Say bye", "greedy": "bye"}]
    moved = [{"id": "a", "prompt": "Say hi", "greedy": "hey"},
             {"id": "b", "prompt": "Say hello", "greedy": "hello"}]  # same id, other prompt
    with pytest.raises(DataError, match=r"prompts differ for 1 of 2 shared ids \(first: 'b'\)"):
        judge_rows(base, moved, cfg)
    twice = [*base, {"id": "a", "prompt": "Say hi", "greedy": "yo"}]
    with pytest.raises(DataError, match=r"prompt id 'a' twice"):
        judge_rows(base, twice, cfg)
