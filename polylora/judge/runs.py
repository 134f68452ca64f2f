"""Judge two runs' saved answers: read each run's ``eval/generations.jsonl``, pair prompts by
id, ask the judge, and log ``judge/*`` metrics and the verdicts onto the candidate run.

Used by ``polylora judge`` (:mod:`polylora.cli.judge`) and by the pipeline when
``eval.judge.enabled=true``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from polylora.errors import DataError, PolyloraError, raise_problems
from polylora.judge.client import judge_pairwise
from polylora.judge.scoring import JudgeResult
from polylora.judge.settings import JudgeConfig, check_judge
from polylora.record.names import GENERATIONS_ARTIFACT

_JUDGE_FIELDS = ("model", "criteria", "max_calls", "max_cost_usd", "cache_dir", "seed",
                 "base_url", "price_per_mtok_in", "price_per_mtok_out")


def judge_config(settings: Mapping[str, Any]) -> JudgeConfig:
    """A JudgeConfig from the ``eval.judge`` settings (only the judge's own fields)."""
    return JudgeConfig(**{k: settings[k] for k in _JUDGE_FIELDS if k in settings})


def load_run_rows(run_id: str, tracking_uri: str | None = None) -> list[dict[str, Any]]:
    """A run's per-prompt generations, downloaded from its MLflow artifacts."""
    from polylora.record.reader import download_artifact

    try:
        path = download_artifact(
            run_id=run_id, artifact_path=GENERATIONS_ARTIFACT, tracking_uri=tracking_uri
        )
    except Exception as exc:  # MLflow raises several types for missing runs/artifacts
        raise PolyloraError(
            f"run {run_id} has no {GENERATIONS_ARTIFACT} artifact ({type(exc).__name__}); "
            "judge runs that were evaluated by polylora"
        ) from None
    # split on "\n" only: U+2028 and friends may sit inside a sample (str.splitlines breaks them)
    text = Path(path).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.split("\n") if line.strip()]


def _answer(row: Mapping[str, Any], which: str) -> str:
    if which == "greedy" and row.get("greedy") is not None:
        return str(row["greedy"])
    samples = row.get("samples") or [""]
    return str(samples[0])


def _by_id(rows: Sequence[Mapping[str, Any]], label: str) -> dict[Any, Mapping[str, Any]]:
    out: dict[Any, Mapping[str, Any]] = {}
    for row in rows:
        if row["id"] in out:
            raise DataError(
                f"the {label} run has prompt id {row['id']!r} twice; ids must be unique"
            )
        out[row["id"]] = row
    return out


def _prompt_text(row: Mapping[str, Any]) -> str:
    prompt = row["prompt"]
    if isinstance(prompt, str):
        return prompt
    return "\n".join(str(m.get("content", "")) for m in prompt)


def judge_rows(
    baseline: Sequence[Mapping[str, Any]],
    candidate: Sequence[Mapping[str, Any]],
    cfg: JudgeConfig,
    answers: str = "greedy",
    labels: tuple[str, str] = ("baseline", "candidate"),
) -> JudgeResult | None:
    """Judge the candidate's answers against the baseline's on the prompts both answered."""
    raise_problems(check_judge({"answers": answers}))
    by_id = _by_id(baseline, labels[0])
    _by_id(candidate, labels[1])
    shared = [r for r in candidate if r["id"] in by_id]
    if not shared:
        raise PolyloraError(
            "the two runs share no prompt ids; judge runs evaluated on the same data config"
        )
    differ = [r["id"] for r in shared if _prompt_text(r) != _prompt_text(by_id[r["id"]])]
    if differ:
        raise DataError(
            f"the {labels[0]} and {labels[1]} prompts differ for {len(differ)} of {len(shared)} "
            f"shared ids (first: {differ[0]!r}); rows are paired by id and prompt text: judge "
            "runs evaluated with the same data, split and prompt format"
        )
    return judge_pairwise(
        prompts=[_prompt_text(r) for r in shared],
        answers_a=[_answer(by_id[r["id"]], answers) for r in shared],
        answers_b=[_answer(r, answers) for r in shared],
        cfg=cfg,
        label_a=labels[0],
        label_b=labels[1],
        ids=[str(r["id"]) for r in shared],
    )


def log_result(result: JudgeResult, run_id: str, out_dir: Path, tracking_uri: str | None) -> None:
    """judge/* metrics and the verdict rows onto ``run_id``."""
    import math

    from polylora.record import names, writer
    from polylora.record.tracking import store_client

    client = store_client(tracking_uri)
    writer.log_batch(client, run_id, metrics={
        key: float(value) for key, value in result.to_metrics().items()
        if isinstance(value, (int, float)) and math.isfinite(float(value))
    })
    path = result.write_jsonl(out_dir / names.JUDGE_FILE)
    writer.log_run_artifact(client, run_id, path, names.EVAL_ARTIFACTS)
