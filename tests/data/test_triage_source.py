"""polylora/conf/data/triage.yaml: the builtin triage source and its field checker, as the pipeline
builds them from the composed config."""

from __future__ import annotations

import json

import pytest

from polylora.config import build
from polylora.data.fields import FieldChecker
from polylora.data.triage import FIELD_NAMES, generate_triage_examples
from polylora.data.triage_source import TriageSource
from polylora.errors import ConfigError


def test_source_wraps_the_generator_deterministically() -> None:
    examples = TriageSource(n_examples=40, seed=5).load()
    assert [(e.id, e.prompt, e.response, e.group) for e in examples] == [
        (e.id, e.prompt, e.response, e.group) for e in generate_triage_examples(40, seed=5)
    ]
    assert all(set(e.fields) == set(FIELD_NAMES) for e in examples)
    assert len({e.group for e in examples}) >= 3  # reporters: groups for group-aware splits


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_size_is_a_config_error(bad: object) -> None:
    with pytest.raises(ConfigError, match="n_examples"):
        TriageSource(n_examples=bad)  # type: ignore[arg-type]


def test_data_triage_config_builds_source_and_field_checker(compose_cfg) -> None:
    cfg = compose_cfg(["data=triage", "data.source.n_examples=12"])
    source = build(cfg.data.source)
    checker = build(cfg.data.checker)
    assert isinstance(source, TriageSource)
    assert isinstance(checker, FieldChecker)
    assert checker.field_names == list(FIELD_NAMES)
    example = source.load()[0]
    expected = example.fields
    # Reordered JSON answer: every field right.
    answer = json.dumps({name: expected[name] for name in reversed(FIELD_NAMES)})
    result = checker(example, answer)
    assert result.correct
    assert result.details == {
        **{f"field_acc/{name}": 1.0 for name in FIELD_NAMES}, "field_acc/mean": 1.0
    }
    # Only the severity line, and it is wrong: every field scores 0, the answer is wrong.
    wrong = "critical" if expected["severity"] != "critical" else "low"
    partial = checker(example, f"severity: {wrong}")
    assert not partial.correct
    assert partial.details["field_acc/severity"] == 0.0
    assert partial.details["field_acc/component"] == 0.0
    # One field right of three.
    one = checker(example, f"component: {expected['component']}\nseverity: {wrong}")
    assert one.details["field_acc/component"] == 1.0 and not one.correct


def test_eval_fields_config_names_known_metrics(compose_cfg) -> None:
    from polylora.metrics.suite import resolve_metric_names

    cfg = compose_cfg(["data=triage", "eval=fields"])
    names = [m for m in cfg.eval.metrics if m != "test_loss"]
    resolved = resolve_metric_names(names, cfg.eval.ks)
    assert {"accuracy", "sample_accuracy", "pass@1"} <= set(resolved)
    assert max(cfg.eval.ks) <= cfg.eval.n_samples
