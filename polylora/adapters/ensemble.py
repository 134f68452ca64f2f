"""An ensemble of adapters as one sampler: ``eval.ensemble=[runs:/a/adapter, runs:/b/adapter]``
spreads each prompt's ``eval.n_samples`` samples over the adapters round robin (sample i comes
from adapter i mod m), so "k samples over 3 adapters" can be set against "k from one". The
samples are scored like one run's (pass@k, diversity, quality) and recorded as an
evaluation-only run tagged with its members (``polylora.merge=ensemble``, the member adapters
and runs), in a group of its own beside theirs for ``polylora compare``."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from polylora.adapters.routing import Route, RoutedAdapters
from polylora.errors import ConfigError

log = logging.getLogger(__name__)

ENSEMBLE = "ensemble"  # the polylora.merge tag value of an ensemble run
#: Metrics that score the model, not its samples: a mixture's reference loss is not the mean
#: of its members', so an ensemble run leaves them out.
MODEL_METRICS = ("test_loss", "test_perplexity")


def sample_owner(sample: int, members: int) -> int:
    """Which member draws sample ``sample`` of a prompt: round robin."""
    return sample % members


def member_counts(n_samples: int, members: int) -> list[int]:
    """Samples per prompt each member draws (they differ by at most one)."""
    return [len(range(j, n_samples, members)) for j in range(members)]


def member_run_ids(refs: Sequence[str]) -> list[str]:
    """The MLflow run ids of ``runs:/<id>/...`` members (folders have none)."""
    return [r[len("runs:/"):].split("/", 1)[0] for r in refs if r.startswith("runs:/")]


def check_ensemble(refs: Sequence[str], n_samples: int) -> None:
    """At least two members, and a sample per prompt for each."""
    if len(refs) < 2:
        raise ConfigError(f"eval.ensemble lists {len(refs)} adapter(s); an ensemble needs two "
                          "or more (evaluate one adapter with model.adapter=...)")
    if n_samples < len(refs):
        raise ConfigError(f"eval.n_samples={n_samples} is fewer than the {len(refs)} adapters of "
                          f"eval.ensemble: some would draw nothing; set eval.n_samples >= "
                          f"{len(refs)}")


@dataclass
class RoundRobin:
    """The evaluation's sampler (:class:`~polylora.evaluate.evaluation.SampleSpread`) over several
    adapters: each member draws its share of every prompt's samples, interleaved round robin;
    the greedy answer is the first member's."""

    adapters: RoutedAdapters

    def sample(self, tok: Any, prompt_ids: Sequence[Sequence[int]], params: Any,
               greedy: Any | None, batch_size: int, progress: bool,
               autocast: Any) -> tuple[list[list[str]], list[str | None]]:
        """(the n samples of each prompt, in round-robin order; each prompt's greedy answer)."""
        import dataclasses

        from polylora.model.generation import sample_many

        members = len(self.adapters.names)
        drawn: list[list[list[str]]] = []
        first_greedy: list[str | None] = [None] * len(prompt_ids)
        for j, count in enumerate(member_counts(params.n, members)):
            self.adapters.apply(Route((j,), (1.0,)))
            requests = [dataclasses.replace(params, n=count)]
            if greedy is not None and j == 0:
                requests.append(greedy)
            done = sample_many(self.adapters.module, tok, list(prompt_ids), requests, batch_size,
                               progress, f"ensemble member {j}", sort_by_length=True,
                               autocast=autocast)
            drawn.append(done[0].texts)
            if len(done) > 1:
                first_greedy = [texts[0] for texts in done[1].texts]
        samples = [[drawn[sample_owner(i, members)][p][i // members] for i in range(params.n)]
                   for p in range(len(prompt_ids))]
        return samples, first_greedy


@dataclass
class EnsembleResult:
    """What an ensemble evaluation produced."""

    metrics: dict[str, float]
    run_id: str
    output_dir: Path


def ensemble_group(cfg: DictConfig) -> str:
    """The ensemble run's group: ``<group>-ensemble`` when the group is the experiment's
    default, so it stands beside its members' group rather than in it."""
    group = str(cfg.tracking.group)
    return f"{group}-{ENSEMBLE}" if group == str(cfg.experiment) else group


def evaluate_ensemble(cfg: DictConfig) -> EnsembleResult:
    """Evaluate ``cfg.eval.ensemble``'s adapters as one sampler on the test subset and record
    it as an evaluation-only MLflow run (nothing is trained)."""
    from transformers import set_seed

    from polylora.adapters.merging import check_compatible
    from polylora.adapters.sources import load_sources, resolve_sources
    from polylora.data.formatting import EncodedDataset
    from polylora.evaluate.evaluation import eval_subset, evaluate
    from polylora.evaluate.loop import log_truncation
    from polylora.model import loading as models
    from polylora.record import cost, names, writer
    from polylora.record.memory import phase_metric
    from polylora.train.preparation import prepare, prompt_format

    started = time.time()
    refs = [str(r) for r in cfg.eval.ensemble]
    check_ensemble(refs, int(cfg.eval.n_samples))
    if not cfg.eval.enabled:
        raise ConfigError("eval.ensemble is evaluated through eval.*; do not set "
                          "eval.enabled=false")
    sources = resolve_sources(refs)
    check_compatible(sources, "sparse_topk", cfg.model)  # one base model, any ranks
    prep = prepare(cfg)
    model, tok = models.load_base_model(cfg.model, cfg.hardware)
    peft_model, adapter_names = load_sources(model, sources)
    spread = RoundRobin(RoutedAdapters(peft_model, adapter_names))
    fmt = prompt_format(cfg, prep.splits.train)
    metric_names = [m for m in (prep.eval_metrics or list(cfg.eval.metrics))
                    if m not in MODEL_METRICS]
    eval_cfg = cast(DictConfig, OmegaConf.merge(cfg.eval, {"metrics": metric_names}))
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    members = member_run_ids(refs)
    extra = {**writer.merge_tags(ENSEMBLE, refs), names.GROUP_TAG: ensemble_group(cfg)}
    if members:
        extra[names.ENSEMBLE_MEMBER_RUNS_TAG] = ",".join(members)
    left_out = [*prep.left_out, *(m for m in MODEL_METRICS if m in cfg.eval.metrics)]
    with writer.recorded_run(cfg, writer.run_tags(cfg, extra), prep.splits, left_out,
                             out_dir) as active:
        set_seed(cfg.seed)
        subset = eval_subset(prep.splits.test, cfg.eval.subset_size)
        log_truncation("test", EncodedDataset(subset, tok, fmt, cfg.data.max_length),
                       cfg.data.max_length)
        report = evaluate(spread.adapters.module, tok, prep.splits.test, fmt, eval_cfg,
                          prep.checker, cfg.data.max_length,
                          autocast=models.autocast_dtype(cfg.hardware),
                          normalize=prep.normalize, spread=spread)
        owners = [sample_owner(i, len(refs)) for i in range(int(cfg.eval.n_samples))]
        for row in report.rows:
            row["sample_adapters"] = owners
        writer.log_metrics(phase_metric("eval"))
        writer.write_generations(report.rows, out_dir)
        metrics = dict(report.metrics)
        writer.finish_run(metrics, out_dir, started,
                          price_per_hour=cost.price_per_hour(cfg.hardware))
        run_id = active.info.run_id
    log.info("ensemble of %d adapters: %s", len(refs),
             ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())
                       if k.startswith(names.EVAL_PREFIX + "pass")))
    return EnsembleResult(metrics=metrics, run_id=run_id, output_dir=out_dir)
