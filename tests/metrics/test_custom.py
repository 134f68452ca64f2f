"""Metrics of the user's own, declared in ``eval.custom_metrics``: trust rule, clear errors, and
a real run (``python -m polylora``) that computes one and records it in metrics.json and
MLflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from helpers import REPO

from polylora.data.example import Example
from polylora.errors import ConfigError
from polylora.metrics import registry
from polylora.metrics.custom import is_trusted, register_custom_metrics
from polylora.metrics.suite import PromptGenerations, score_generations

MODULE = '''
def answer_words(answers: list[str]) -> float:
    """Mean number of words per answer."""
    return sum(len(a.split()) for a in answers) / len(answers)

def needs_a_gpu(samples, gpu):
    return 0.0

NOT_A_FUNCTION = 3
'''


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A metric module of the user's own on sys.path, trusted; a registry restored after."""
    (tmp_path / "mylab_metrics.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("POLYLORA_TRUSTED_TARGETS", "mylab_metrics")
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    return "mylab_metrics"


def entry(target: str, **extra: object) -> dict[str, object]:
    return {"name": "answer_words", "_target_": target, "direction": "minimize", **extra}


def test_registered_function_is_computed_by_the_suite(user_module: str) -> None:
    assert register_custom_metrics([entry(f"{user_module}.answer_words")]) == ["answer_words"]
    spec = registry.get_metric("eval/answer_words")
    assert registry.metric_direction("answer_words") == "minimize"
    assert spec.needs == frozenset({"samples"}) and spec.inputs == ("answers",)
    gens = [
        PromptGenerations(Example(id="a", prompt="p", response="r"), ["one two", "three"]),
        PromptGenerations(Example(id="b", prompt="p", response="r"), ["a b c d"]),
    ]
    scores = score_generations(gens, ["answer_words"], show_progress=False)
    assert [row["answer_words"] for row in scores.per_prompt] == [1.5, 4.0]
    assert scores.aggregate == {"answer_words": 2.75}
    # the same declaration again (a second run in one process) is a no-op
    assert register_custom_metrics([entry(f"{user_module}.answer_words")]) == ["answer_words"]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (entry("no_such_lab.metrics.x"), "outside the trusted targets.*POLYLORA_TRUSTED_TARGETS"),
        (entry("mylab_metrics_missing.fn"), "outside the trusted targets"),
        (entry("mylab_metrics.nothing"), "module mylab_metrics has no function 'nothing'"),
        (entry("mylab_metrics.NOT_A_FUNCTION"), "is not a function"),
        (entry("mylab_metrics.needs_a_gpu"), "takes gpu, which the suite cannot pass"),
        (entry("/tmp/x.py"), "dotted import path"),
        (entry("mylab_metrics.answer_words", direction="up"), "maximize or minimize"),
        (entry("mylab_metrics.answer_words", inputs=["model"]), "not ones the suite provides"),
        (entry("mylab_metrics.answer_words", name="pass@2"), "name must be letters"),
        (entry("mylab_metrics.answer_words", name="self_bleu"), "already exists"),
        (entry("mylab_metrics.answer_words", colour="red"), "unknown key"),
    ],
)
def test_bad_declarations_are_one_config_error(
    user_module: str, bad: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        register_custom_metrics([bad])
    assert str(info.value).startswith("eval.custom_metrics[0]")


def test_missing_module_under_a_trusted_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYLORA_TRUSTED_TARGETS", "nolab")
    with pytest.raises(ConfigError, match=r"no module named 'nolab\.metrics'.*PYTHONPATH"):
        register_custom_metrics([entry("nolab.metrics.fn")])


def test_trust_patterns() -> None:
    assert is_trusted("polylora.metrics.x", ["polylora.*"])
    assert is_trusted("mylab.m.fn", ["mylab"]) and is_trusted("mylab.fn", ["mylab.*"])
    assert not is_trusted("mylabx.fn", ["mylab"]) and not is_trusted("os.system", ["polylora.*"])


def _polylora(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "lib"), str(REPO)]),
        "POLYLORA_TRUSTED_TARGETS": "mylab_metrics",
    }
    return subprocess.run(
        [sys.executable, "-m", "polylora", "+experiment=smoke",
         f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", f"hydra.run.dir={tmp_path / 'run'}",
         *overrides],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_a_custom_metric_through_a_real_run(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "mylab_metrics.py").write_text(MODULE)
    declared = (
        "eval.custom_metrics=[{name:answer_words,_target_:mylab_metrics.answer_words,"
        "direction:minimize}]"
    )
    proc = _polylora(tmp_path, declared)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    rows = [json.loads(line) for line in (tmp_path / "run" / "generations.jsonl").open()]
    per_prompt = [sum(len(s.split()) for s in r["samples"]) / len(r["samples"]) for r in rows]
    assert [r["scores"]["answer_words"] for r in rows] == pytest.approx(per_prompt)
    assert metrics["eval/answer_words"] == pytest.approx(sum(per_prompt) / len(per_prompt))
    assert "eval/pass@1" in metrics  # the eval set's own metrics still run
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    (run,) = client.search_runs(experiments)
    assert run.data.metrics["eval/answer_words"] == pytest.approx(metrics["eval/answer_words"])

    missing = _polylora(
        tmp_path, declared.replace("mylab_metrics.answer_words", "mylab_metrics.nope"),
        "hydra.run.dir=" + str(tmp_path / "run2"),
    )  # fmt: skip
    assert missing.returncode != 0 and "Traceback" not in missing.stderr, missing.stderr[-2000:]
    assert "module mylab_metrics has no function 'nope'" in missing.stderr
