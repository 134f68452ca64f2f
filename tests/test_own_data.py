"""A researcher's own data, end to end through ``python -m polylora``: a checker-less JSONL
file trains and evaluates what needs no checker; a checker metric named on the command line is
an error before training; bad files give one FILE:LINE error; the README's "Your own data"
commands run as written; the replies worked example runs pass@k, diversity and the judge;
experiment / data / checker files of your own come from --config-dir or hydra.searchpath."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from helpers import REPO, runs_of
from test_cli_errors import assert_clean_error, no_running_runs

SMOKE_EVAL_LEFT_OUT = "accuracy, sample_accuracy, pass@1, pass@2, pass@4"


def polylora(
    tmp_path: Path, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m polylora ARGS`` with this test's MLflow store and run dir; stdout+stderr."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "polylora", *args,
         f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=cwd or tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )


def finished_run(tmp_path: Path) -> mlflow.entities.Run:
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.status == "FINISHED"
    return run


def write_replies(path: Path, n: int = 30) -> Path:
    """Checker-less prompt/reply pairs with every valid quirk the reader must accept: a BOM,
    CRLF line ends, U+2028 / U+0085 inside strings and one very long prompt."""
    lines = []
    for i in range(n):
        prompt = f"Tell me something about topic {i}.\u2028Keep it short."
        if i == 0:
            prompt = "background " * 400 + prompt
        reply = f"Topic {i} is interesting\u0085because it has {i % 7 + 2} sides to it."
        lines.append(json.dumps({"id": f"r{i}", "prompt": prompt, "response": reply},
                                ensure_ascii=False))
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode("utf-8") + b"\r\n")
    return path


def test_checkerless_jsonl_trains_and_leaves_out_checker_metrics(tmp_path: Path) -> None:
    data = write_replies(tmp_path / "replies.jsonl")
    proc = polylora(tmp_path, "+experiment=smoke", "data=jsonl", f"data.path={data}")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert f"left out {SMOKE_EVAL_LEFT_OUT}" in out and "checker=heuristic" in out
    assert re.search(r"train: 1 of \d+ examples are longer than data.max_length=256", out), out
    run = finished_run(tmp_path)
    metrics = run.data.metrics
    for key in ("eval/test_loss", "eval/self_bleu", "eval/distinct_2", "eval/semantic_diversity",
                "eval/rouge_l", "train/final_loss"):
        assert key in metrics, sorted(metrics)
    assert not [k for k in metrics if "pass_at" in k or k.endswith("accuracy")]
    assert run.data.tags["polylora.metrics_left_out"] == SMOKE_EVAL_LEFT_OUT.replace(", ", ",")
    assert metrics["data/truncated_train"] == 1.0 and metrics["data/prompt_tokens_lost_train"] > 0


def test_a_named_checker_metric_without_checker_is_an_error(tmp_path: Path) -> None:
    data = write_replies(tmp_path / "replies.jsonl")
    proc = polylora(tmp_path, "+experiment=smoke", "data=jsonl", f"data.path={data}",
                    "eval.metrics=[test_loss,pass@2]")
    assert_clean_error(proc, "polylora: error: eval.metrics has pass@2", "checker=heuristic")
    assert proc.returncode == 2 and no_running_runs(tmp_path)
    assert not (tmp_path / "run" / "adapter").exists()


GOOD = '{"prompt": "a", "response": "b"}'


BAD_FILES = [
    (GOOD + '\n{"prompt": null, "response": "b"}\n', "data.jsonl:2: 'prompt' is null"),
    (GOOD + '\n{"prompt": "a", "response": 7}\n', "data.jsonl:2: 'response' is int"),
    (GOOD + '\n{"prompt": "a", "response": "b", "references": "c"}\n',
     "data.jsonl:2: 'references' must be a list of strings"),
    (GOOD + '\n{"messages": [{"role": "bot", "content": "q"}, '
     '{"role": "assistant", "content": "r"}]}\n', "data.jsonl:2: message 0 has unknown role"),
    ((GOOD + '\n{"prompt": "caf\xe9", "response": "b"}\n').encode("latin-1"),
     "data.jsonl:2: not valid UTF-8"),
    (None, "is a directory"),
]


def write_bad(tmp_path: Path, content: str | bytes | None) -> Path:
    data = tmp_path / "data.jsonl"
    if content is None:
        data.mkdir()
    elif isinstance(content, bytes):
        data.write_bytes(content)
    else:
        data.write_text(content, encoding="utf-8")
    return data


@pytest.mark.parametrize(("content", "needle"), BAD_FILES,
                         ids=["null-prompt", "int-response", "string-references", "unknown-role",
                              "latin-1", "dir"])
def test_bad_jsonl_stops_before_any_run(
    compose_cfg, tmp_path: Path, content: str | bytes | None, needle: str
) -> None:
    from polylora.errors import DataError
    from polylora.run.pipeline import execute

    cfg = compose_cfg(["+experiment=smoke", "data=jsonl",
                       f"data.path={write_bad(tmp_path, content)}"])
    with pytest.raises(DataError, match=re.escape(needle)):
        execute(cfg)
    assert not runs_of(cfg)  # stopped before an MLflow run started


def test_bad_jsonl_through_the_entry_point_is_one_line_exit_2(tmp_path: Path) -> None:
    content, needle = BAD_FILES[4]  # invalid UTF-8
    proc = polylora(tmp_path, "+experiment=smoke", "data=jsonl",
                    f"data.path={write_bad(tmp_path, content)}")
    assert_clean_error(proc, "polylora: error:", needle)
    assert proc.returncode == 2 and no_running_runs(tmp_path)
    assert len([line for line in proc.stderr.splitlines() if "polylora: error:" in line]) == 1


def readme_commands(section: str) -> list[list[str]]:
    """The ``python -m polylora`` commands in a README section (continuations joined)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    body = text.split(f"### {section}\n", 1)[1].split("\n## ", 1)[0]
    joined = re.sub(r"\\\n\s*", " ", body)
    return [shlex.split(line.strip())[1:] for line in joined.splitlines()
            if line.strip().startswith(".venv/bin/python -m polylora")]


TINY = ["model=tiny_random", "lora=r4", "train.max_steps=2", "train.batch_size=4",
        "train.eval_every=2", "train.save_every=2", "eval.subset_size=3", "eval.max_new_tokens=4",
        "data.max_length=128"]


@pytest.mark.slow  # four training runs through the CLI: minutes on a loaded 2-core machine
def test_readme_own_data_commands_run_as_written(tmp_path: Path) -> None:
    commands = readme_commands("Your own data")
    assert len(commands) >= 4 and all("my_data.jsonl" in " ".join(c) for c in commands)
    (tmp_path / "my_data.jsonl").write_text(
        (REPO / "docs/examples/triage.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    for i, command in enumerate(commands):
        assert command[:2] == ["-m", "polylora"], command
        home = tmp_path / f"cmd{i}"
        home.mkdir()
        (home / "my_data.jsonl").symlink_to(tmp_path / "my_data.jsonl")
        proc = polylora(home, *command[2:], *TINY, cwd=home)
        assert proc.returncode == 0, (command, (proc.stdout + proc.stderr)[-3000:])
        run = finished_run(home)
        assert "eval/self_bleu" in run.data.metrics
        if any(c.startswith("checker=") and c != "checker=none" for c in command):
            assert "eval/pass_at_1" in run.data.metrics, command
        if "checker=fields" in command:
            assert "eval/field_acc/severity" in run.data.metrics


def write_user_configs(root: Path, data: Path) -> Path:
    """An experiment, a data file and a checker of the user's own, outside polylora."""
    for group in ("experiment", "data", "checker"):
        (root / group).mkdir(parents=True)
    (root / "data" / "my_data.yaml").write_text(
        "defaults:\n  - jsonl\n  - _self_\n"
        f"name: my_data\npath: {data}\nmax_length: 128\n")
    (root / "checker" / "mentions_topic.yaml").write_text(
        "# @package data\nchecker:\n  _target_: polylora.metrics.checkers.HeuristicChecker\n"
        "  must_contain: [topic]\n")
    (root / "experiment" / "mine.yaml").write_text(
        "# @package _global_\ndefaults:\n  - smoke\n  - override /data: my_data\n"
        "  - override /checker: mentions_topic\n\nexperiment: mine\n")
    return root


@pytest.mark.parametrize("how", ["--config-dir", "hydra.searchpath"])
def test_own_config_files_compose_from_outside(tmp_path: Path, how: str) -> None:
    confs = write_user_configs(tmp_path / "my_conf", tmp_path / "r.jsonl")
    where = ["--config-dir", str(confs)] if how == "--config-dir" else [
        f"hydra.searchpath=[file://{confs}]"]
    shown = polylora(tmp_path, *where, "+experiment=mine", "--cfg", "job")
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "experiment: mine" in shown.stdout and "name: my_data" in shown.stdout
    assert "HeuristicChecker" in shown.stdout and "- topic" in shown.stdout


@pytest.mark.slow  # a full (tiny) training run through the CLI
def test_own_config_files_run_from_a_temp_directory(tmp_path: Path) -> None:
    confs = write_user_configs(tmp_path / "my_conf", write_replies(tmp_path / "r.jsonl"))
    proc = polylora(tmp_path, "--config-dir", str(confs), "+experiment=mine")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    run = finished_run(tmp_path)
    assert run.data.tags["polylora.experiment"] == "mine"
    assert "eval/pass_at_1" in run.data.metrics  # the user's checker scored the answers
    assert any("must_contain" in k for k in run.data.metrics), sorted(run.data.metrics)


def test_replies_example_runs_passk_diversity_and_the_judge(
    compose_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from judge.stub_anthropic import StubAnthropic

    from polylora.data.jsonl import JsonlSource
    from polylora.run.pipeline import execute

    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-key")
    with StubAnthropic() as stub:
        cfg = compose_cfg(["+experiment=replies_example", *TINY, "objective.max_new_tokens=4",
                           f"eval.judge.base_url={stub.url}",
                           f"eval.judge.cache_dir={tmp_path / 'judge'}"])
        assert cfg.data.checker._target_.endswith("HeuristicChecker")
        result = execute(cfg)
        requests = list(stub.requests)
    m = result.metrics
    for key in ("eval/pass@1", "eval/pass@3", "eval/sample_accuracy", "eval/self_bleu",
                "eval/semantic_diversity", "judge/win_rate"):
        assert key in m, sorted(m)
    assert len(requests) == cfg.eval.subset_size
    replies = {e.response for e in JsonlSource(cfg.data.path).load()}
    assert all(any(r in req.text for r in replies) for req in requests)  # judged vs references


def test_humaneval_experiment_runs_with_the_opt_in(compose_cfg) -> None:
    from polylora.run.pipeline import execute

    cfg = compose_cfg(["+experiment=humaneval_ce", *TINY, "data.source.limit=20",
                       "eval.allow_code_execution=true", "eval.subset_size=2", "eval.n_samples=2",
                       "eval.ks=[1,2]", "eval.metrics=[test_loss,accuracy,pass@1,pass@2]"])
    result = execute(cfg)
    assert result.metrics["eval/pass@2"] == 0.0  # the tiny random model writes no working code
    rows = [json.loads(line) for line in
            (result.output_dir / "generations.jsonl").read_text().split("\n") if line]
    assert len(rows) == 2 and all(r["id"].startswith("HumanEval/") for r in rows)
    assert all(r["correct"] == [False, False] for r in rows)  # each sample ran its tests
