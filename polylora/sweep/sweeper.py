"""The sweep loop of the ``polylora_optuna`` sweeper (imported only when a sweep starts).

It reuses the stock implementation's search-space parsing and trial configuration and
replaces its ``sweep`` loop; see :mod:`polylora.sweep.plugin` for what changes and why.
Over 400 lines: one subclass of the stock implementation (planning, study, loop, results share
its state); the bookkeeping it calls lives in ``trials``, ``parent_run`` and ``summary``.
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, cast

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra_plugins.hydra_optuna_sweeper._impl import (
    OptunaSweeperImpl,
    create_params_from_overrides,
)
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.study import StudyDirection
from optuna.trial import Trial, TrialState

from polylora.errors import ConfigError, PolyloraError, Problems
from polylora.metrics.custom import register_custom_metrics
from polylora.metrics.registry import metric_direction
from polylora.record import db_lock, names
from polylora.record.names import canonical_metric
from polylora.sweep import trials
from polylora.sweep.optimized_metric import check_search_metrics, optimized_metrics
from polylora.sweep.parent_run import ParentRun
from polylora.sweep.summary import (
    StudyTotals,
    best_summary,
    study_totals,
    trial_rows,
    write_summary,
)
from polylora.sweep.tags import (
    ERROR_ATTR,
    PARENT_ATTR,
    SUMMARY_MD,
    SWEEPER_ATTR,
    parent_env,
    study_name,
    trial_overrides,
)
from polylora.train import pruning

log = logging.getLogger(__name__)

_GRID_STOP = "`Study.stop` is supposed to be invoked inside an objective function or a callback."


@dataclass
class SweepPlan:
    """What a sweep will do, settled (and checked) before the study is opened."""

    study_name: str
    metrics: list[str]
    directions: list[str]
    distributions: dict[str, BaseDistribution]
    fixed_params: dict[str, Any]
    fixed_overrides: list[str]
    is_grid: bool
    search: dict[str, str]  # search.<key> → the override as written, for the parent run


class SweepAborted(PolyloraError):
    """Too many trials failed; the study keeps what finished (re-run the command to go on)."""


def _fail(exc: BaseException, code: int = 2) -> NoReturn:
    """One ``polylora: error:`` line on stderr and a non-zero exit, no traceback."""
    print(f"polylora: error: {exc}", file=sys.stderr)
    sys.exit(code)


def _one_line(exc: BaseException) -> str:
    """An exception (and its cause) as one line."""
    parts = [str(exc)]
    cause = exc.__cause__
    if cause is not None and str(cause) and str(cause) not in parts[0]:
        parts.append(str(cause).splitlines()[0])
    text = "; ".join(" ".join(p.split()) for p in parts if p)
    return text or type(exc).__name__


class PolyloraOptunaSweeperImpl(OptunaSweeperImpl):
    """The stock implementation with polylora's sweep loop."""

    def __init__(
        self,
        sampler: Any,
        direction: Any,
        storage: Any | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        custom_search_space: str | None,
        params: DictConfig | None,
        *,
        resume: bool = True,
        heartbeat_interval: int = 30,
        grace_period: int | None = None,
        max_retry: int | None = 3,
        max_consecutive_failures: int = 5,
        parent_run: bool = True,
        summary: bool = True,
        pruner: Any = None,
    ) -> None:
        found = Problems()
        found.check(grace_period is None or grace_period > heartbeat_interval,
                    f"hydra.sweeper.grace_period={grace_period} must exceed "
                    f"hydra.sweeper.heartbeat_interval={heartbeat_interval} (null: twice the "
                    "interval)")
        found.check(n_jobs >= 1 and n_trials >= 0,
                    f"hydra.sweeper.n_jobs must be >= 1 and n_trials >= 0, got "
                    f"n_jobs={n_jobs} n_trials={n_trials}")
        try:
            self.pruner = pruning.build_pruner(pruner)
        except ConfigError as exc:
            found.append(str(exc))
        if found:
            _fail(ConfigError.listing(found))
        super().__init__(sampler, direction, storage, study_name, n_trials, n_jobs,
                         max_failure_rate, custom_search_space, params)
        self.resume = resume
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.retry = trials.RetryStaleTrial(max_retry)
        self.max_consecutive_failures = max_consecutive_failures
        self.use_parent_run = parent_run
        self.write_summaries = summary

    @property
    def cfg(self) -> DictConfig:
        """The composed config (set by Hydra before ``sweep``)."""
        assert self.config is not None
        return self.config

    # --- checks before any trial ----------------------------------------------------------

    def _directions(self, metrics: list[str]) -> list[str]:
        """From the registry unless set; an unknown metric name is a ConfigError, and so is a
        test-split metric (a search selects on validation metrics only)."""
        registry: list[str] = []
        for name in metrics:
            try:
                registry.append(metric_direction(canonical_metric(name)))
            except ConfigError as exc:
                raise ConfigError(f"optimized_metric={name}: {exc}") from None
        check_search_metrics(metrics)
        if self.direction is None:
            return registry
        explicit = [str(d).lower() for d in self._get_directions()]
        if len(explicit) != len(metrics):
            raise ConfigError(
                f"hydra.sweeper.direction has {len(explicit)} direction(s) but optimized_metric "
                f"names {len(metrics)} metric(s): {', '.join(metrics)}"
            )
        for name, want, got in zip(metrics, registry, explicit, strict=True):
            if want != got:
                log.warning("hydra.sweeper.direction=%s for %s, but the metric registry says %s",
                            got, name, want)
        return explicit

    def _check_search_space(self, distributions: dict[str, BaseDistribution],
                            fixed_params: dict[str, Any], fixed_overrides: list[str]) -> None:
        """Compose one trial's config (first choice / lower bound of each parameter) so a
        key that doesn't exist fails now, not in every trial."""
        sample = []
        for name, dist in distributions.items():
            low = cast(Any, dist).low if not isinstance(dist, CategoricalDistribution) else None
            value = dist.choices[0] if isinstance(dist, CategoricalDistribution) else low
            sample.append(f"{name}={value}")
        sample += [f"{k}={v}" for k, v in fixed_params.items()] + list(fixed_overrides)
        extra = trial_overrides(0, "check", None, self._name_runs())
        sample += extra
        assert self.hydra_context is not None
        try:
            self.hydra_context.config_loader.load_sweep_config(self.cfg, sample)
        except Exception as exc:
            raise ConfigError(
                f"the search space does not fit the config: {_one_line(exc)} "
                f"(search: {' '.join(sample[: len(sample) - len(extra)])})"
            ) from None

    def _name_runs(self) -> bool:
        """Name trial runs ``<study>-trial-<N>`` unless the config names runs itself."""
        return OmegaConf.select(self.cfg, "tracking.run_name") is None

    def _search_description(self, params_conf: list[str]) -> dict[str, str]:
        """``search.<key>`` → the override as written (``tag(log, interval(1e-5, 1e-3))``)."""
        out = {}
        for override in OverridesParser.create().parse_overrides(params_conf):
            if override.is_sweep_override():
                line = override.input_line or ""
                out[f"search.{override.get_key_element()}"] = line.split("=", 1)[-1]
        return out

    # --- the sweep -----------------------------------------------------------------------

    def sweep(self, arguments: list[str]) -> None:
        """Plan (fail fast on bad input), then run trials until the study holds n_trials."""
        assert self.config is not None and self.launcher is not None
        try:
            plan = self._plan(arguments)
        except PolyloraError as exc:
            _fail(exc)
        self._execute(plan)

    def _plan(self, arguments: list[str]) -> SweepPlan:
        self._process_searchspace_config()
        params_conf = self._parse_sweeper_params_config() + list(arguments)
        try:
            distributions, fixed_params, fixed_overrides = create_params_from_overrides(
                params_conf)
        except Exception as exc:
            raise ConfigError(f"hydra.sweeper.params: {_one_line(exc)}") from None
        for name in fixed_params:
            distributions.pop(name, None)
        if not distributions:
            raise ConfigError("nothing to search: hydra.sweeper.params has no sweep "
                              "(choice(...), interval(...), range(...)); add +hparams_search=...")
        metrics = optimized_metrics(self.cfg.optimized_metric)
        # The config's own metrics, so one of them can be the objective (same trust rules and
        # errors as a run; its declared direction is the registry's direction).
        register_custom_metrics(OmegaConf.select(self.cfg, "eval.custom_metrics"))
        directions = self._directions(metrics)
        if self.pruner is not None:
            pruning.check_prunable(metrics, self.storage)
        self._check_search_space(distributions, fixed_params, fixed_overrides)

        is_grid = (isinstance(self.sampler, functools.partial)
                   and self.sampler.func == optuna.samplers.GridSampler)
        if is_grid:
            try:
                grid = {name: self._to_grid_sampler_choices(d)
                        for name, d in distributions.items()}
            except (ValueError, AssertionError) as exc:
                raise ConfigError(
                    "the grid sampler needs discrete parameters (choice(...) or range(...)): "
                    f"{str(exc).rstrip('.')}; override e.g. "
                    "'train.learning_rate=choice(1e-5,1e-4,1e-3)'"
                ) from None
            self.sampler = self.sampler(grid)
            size = 1
            for values in grid.values():
                size *= len(values)
            self.n_trials = min(self.n_trials, size)
        choices = self.cfg.hydra.runtime.choices
        name = self.study_name or study_name(
            str(self.cfg.experiment), choices.get("hparams_search"))
        return SweepPlan(name, metrics, directions, distributions, fixed_params,
                         fixed_overrides, is_grid, self._search_description(params_conf))

    def _open_study(self, name: str, directions: list[str]) -> optuna.Study:
        where = db_lock.masked(str(self.storage))
        problem = db_lock.driver_problem(str(self.storage))
        if problem is not None:
            raise ConfigError(f"hydra.sweeper.storage={where}: {problem}")
        try:
            storage = trials.open_storage(self.storage, self.heartbeat_interval,
                                          self.grace_period, self.retry)
            study = optuna.create_study(study_name=name, storage=storage,
                                        sampler=self.sampler, pruner=self.pruner,
                                        directions=[StudyDirection[d.upper()]
                                                    for d in directions],
                                        load_if_exists=True)
        except Exception as exc:
            raise ConfigError(f"cannot open the Optuna study {name!r} in {where}: "
                              f"{_one_line(exc)}") from None
        if not study.user_attrs.get(SWEEPER_ATTR):
            study.set_user_attr(SWEEPER_ATTR, True)
        existing = [d.name.lower() for d in study.directions]
        if existing != directions:
            raise ConfigError(
                f"the study {name!r} in {where} optimizes {existing}, this sweep "
                f"{directions}; pass a new hydra.sweeper.study_name=..."
            )
        return study

    def _open_parent(self, study: optuna.Study, plan: SweepPlan) -> ParentRun | None:
        if not self.use_parent_run:
            return None
        cfg = self.cfg
        params = {**plan.search, names.SWEEP_METRIC_PARAM: ",".join(plan.metrics),
                  names.SWEEP_DIRECTION_PARAM: ",".join(plan.directions),
                  names.SWEEP_STORAGE_PARAM: str(self.storage),
                  names.SWEEP_SAMPLER_PARAM: type(self.sampler).__name__,
                  names.SWEEP_STUDY_PARAM: plan.study_name}
        tags = {names.EXPERIMENT_TAG: str(cfg.experiment),
                names.N_TRIALS_TAG: str(self.n_trials),
                names.SWEEP_DIR_TAG: str(cfg.hydra.sweep.dir)}
        try:
            parent = ParentRun.open(
                str(cfg.tracking.uri), str(cfg.tracking.experiment), plan.study_name,
                study.user_attrs.get(PARENT_ATTR), params, tags)
        except Exception as exc:
            raise ConfigError(f"cannot start the MLflow parent run at {cfg.tracking.uri}: "
                              f"{_one_line(exc)}") from None
        study.set_user_attr(PARENT_ATTR, parent.run_id)
        return parent

    def _execute(self, plan: SweepPlan) -> None:
        name, metrics = plan.study_name, plan.metrics
        try:
            with trials.ask_lock(self.storage, name):  # one parent run, however many workers
                study = self._open_study(name, plan.directions)
                had_trials = bool(study.get_trials(deepcopy=False))
                parent = self._open_parent(study, plan)
        except PolyloraError as exc:
            _fail(exc)
        if had_trials and not plan.is_grid:
            self.sampler.reseed_rng()  # a seeded sampler would replay earlier suggestions
        sweep_dir = Path(str(self.cfg.hydra.sweep.dir))
        log.info("Study %s (%s), %d of %d trials taken, sampler %s, directions %s",
                 name, self.storage, trials.taken(study), self.n_trials,
                 type(self.sampler).__name__, plan.directions)
        status, aborted, complete = "FINISHED", None, False
        try:
            with parent_env(parent.run_id if parent is not None else None):
                self._loop(study, plan, parent, sweep_dir)
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        except SweepAborted as exc:
            status, aborted = "FAILED", exc
        except BaseException:
            status = "FAILED"
            raise
        finally:
            complete = self._finish(study, name, metrics, parent, sweep_dir, status,
                                    quiet=status != "FINISHED")
        if aborted is not None:
            _fail(aborted, code=1)
        if not complete and study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
            _fail(SweepAborted(f"no trial of study {name!r} completed; see the errors in "
                               f"{sweep_dir / SUMMARY_MD}"), code=1)

    def _loop(self, study: optuna.Study, plan: SweepPlan, parent: ParentRun | None,
              sweep_dir: Path) -> None:
        """Batches of ``n_jobs`` trials (retries of interrupted ones first) until n_trials
        are taken."""
        asked = 0
        consecutive = 0
        waited = False
        while True:
            with trials.ask_lock(self.storage, plan.study_name):
                trials.fail_stale(study)
                if self.resume:
                    allowed = self.n_trials - trials.taken(study)
                else:
                    allowed = self.n_trials - asked
                batch = trials.ask(study, max(0, min(self.n_jobs, allowed)))
            stale = self.retry.take_stale()
            if parent is not None and stale:
                parent.kill_running_children(stale)
            asked += len(batch)
            if not batch:
                if not self._wait_for_running(study, waited):
                    return
                waited = True
                continue
            failures = 0
            with trials.heartbeat(study, batch):
                returns = self._launch(batch, plan,
                                       parent.run_id if parent is not None else None)
            for trial, ret in zip(batch, returns, strict=True):
                error = self._tell(study, trial, ret, len(plan.metrics), plan.is_grid)
                if error is None:
                    consecutive = 0
                    continue
                failures += 1
                consecutive += 1
                log.warning("trial %d failed: %s", trial.number, error)
            if self.write_summaries:
                self._summary(study, plan.study_name, plan.metrics, parent, sweep_dir)
            if failures / len(batch) > self.max_failure_rate:
                raise SweepAborted(
                    f"{failures} of {len(batch)} trials failed, above "
                    f"hydra.sweeper.max_failure_rate={self.max_failure_rate}")
            if 0 < self.max_consecutive_failures <= consecutive:
                raise SweepAborted(
                    f"{consecutive} trials failed in a row (see "
                    f"{sweep_dir / SUMMARY_MD}); fix the cause and re-run the same "
                    "command to continue the study")

    def _wait_for_running(self, study: optuna.Study, waited: bool) -> bool:
        """With nothing left to ask: wait one heartbeat interval if trials of other workers
        (or of a killed sweeper, until their heartbeat is stale) still run; False to stop."""
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not (running and self.resume and trials.has_heartbeat(study)):
            return False
        if not waited:
            log.info("waiting for %d running trial(s) of other workers (a killed worker's "
                     "trial is retried after hydra.sweeper.grace_period)", len(running))
        time.sleep(self.heartbeat_interval)
        return True

    def _launch(self, batch: list[Trial], plan: SweepPlan, run_id: str | None) -> list[Any]:
        """Launch a batch; the job number (and so the trial's subdir) is the trial number."""
        assert self.launcher is not None
        overrides: list[Sequence[str] | BaseException] = []
        for trial in batch:
            try:
                (over,) = self._configure_trials([trial], plan.distributions,
                                                 plan.fixed_params, plan.fixed_overrides)
                overrides.append((*over, *trial_overrides(
                    trial.number, plan.study_name, run_id, self._name_runs())))
            except Exception as exc:  # e.g. a retried trial whose space has changed
                overrides.append(exc)
        runnable = [(t, o) for t, o in zip(batch, overrides, strict=True)
                    if not isinstance(o, BaseException)]
        numbers = [t.number for t, _ in runnable]
        results: dict[int, Any] = {}
        if runnable and numbers == list(range(numbers[0], numbers[0] + len(numbers))):
            returns = self.launcher.launch([o for _, o in runnable], initial_job_idx=numbers[0])
            results = dict(zip(numbers, returns, strict=True))
        else:  # not consecutive (another worker asked in between): one at a time
            for trial, over in runnable:
                (results[trial.number],) = self.launcher.launch([over],
                                                                initial_job_idx=trial.number)
        self.job_idx = max([self.job_idx, *(n + 1 for n in results)])
        return [results.get(t.number, o) for t, o in zip(batch, overrides, strict=True)]

    def _tell(self, study: optuna.Study, trial: Trial, ret: Any, n_objectives: int,
              is_grid: bool) -> str | None:
        """Record a trial's outcome; returns the error line of a failed trial, else None."""
        try:
            if isinstance(ret, BaseException):
                raise ret
            # A pruned job raised optuna.TrialPruned; JobReturn.return_value would re-raise it
            # after printing "Error executing job", so it is read where the job stored it.
            stopped = getattr(ret, "_return_value", None)
            if isinstance(stopped, optuna.TrialPruned):
                log.info("%s", stopped)  # Optuna's convention: its last reported value
                self._tell_state(study, trial, is_grid, state=TrialState.PRUNED)
                return None
            value = ret.return_value  # re-raises the job's exception
            if n_objectives == 1:
                values = [float(value)]
            else:
                values = [float(v) for v in value]
                if len(values) != n_objectives:
                    raise ValueError(f"the task returned {len(values)} values for "
                                     f"{n_objectives} objectives")
        except Exception as exc:
            error = _one_line(exc)[:500]
            trial.set_user_attr(ERROR_ATTR, error)
            study.tell(trial, state=TrialState.FAIL)
            return error
        self._tell_state(study, trial, is_grid, values=values)
        return None

    @staticmethod
    def _tell_state(study: optuna.Study, trial: Trial, is_grid: bool,
                    state: TrialState | None = None, values: list[float] | None = None) -> None:
        """``study.tell``, where the grid sampler's stop after its last point is no error."""
        try:
            study.tell(trial, values=values, state=state)
        except RuntimeError as exc:
            if not (is_grid and _GRID_STOP in str(exc)):
                raise

    # --- results ------------------------------------------------------------------------

    def _summary(self, study: optuna.Study, name: str, metrics: list[str],
                 parent: ParentRun | None, sweep_dir: Path) -> list[Path]:
        files, _ = self._summarize(study, name, metrics, parent, sweep_dir)
        return files

    def _summarize(self, study: optuna.Study, name: str, metrics: list[str],
                   parent: ParentRun | None, sweep_dir: Path) -> tuple[list[Path], StudyTotals]:
        """The summary files and the study's totals."""
        try:
            children = parent.children() if parent is not None else {}
        except Exception as exc:
            log.warning("could not read the trials' MLflow runs: %s", _one_line(exc))
            children = {}
        rows = trial_rows(study.get_trials(deepcopy=False), metrics, children)
        files = list(write_summary(rows, metrics, sweep_dir, title=f"Study {name}"))
        return files, study_totals(rows)

    def _finish(self, study: optuna.Study, name: str, metrics: list[str],
                parent: ParentRun | None, sweep_dir: Path, status: str,
                quiet: bool = False) -> bool:
        """Summary, best result and parent run status; True if some trial completed."""
        try:
            files, totals = self._summarize(study, name, metrics, parent, sweep_dir)
            best = best_summary(study, metrics)
            if len(metrics) == 1:
                results = {"name": "optuna", "best_params": best.get("params"),
                           "best_value": best.get("value"), "best_trial": best.get("trial")}
            else:
                results = {"name": "optuna", "solutions": best.get("solutions", [])}
            path = sweep_dir / "optimization_results.yaml"
            OmegaConf.save(OmegaConf.create(results), path)
            files.append(path)
            if best.get("params") is not None:
                log.info("Best trial %s: %s = %s, params %s", best["trial"], metrics[0],
                         best["value"], best["params"])
            for sol in best.get("solutions", []):
                log.info("Pareto trial %s: values %s, params %s", sol["trial"], sol["values"],
                         sol["params"])
            log.info("%s", " ".join(totals.lines()))
            if parent is not None:
                counts = Counter(t.state.name for t in study.get_trials(deepcopy=False))
                parent.log_outcome(best, dict(counts), totals.metrics())
                parent.log_files(files)
                parent.end(status if best or status != "FINISHED" else "FAILED")
            return bool(best)
        except Exception as exc:
            if not quiet:
                raise
            log.warning("could not finalize the sweep: %s", _one_line(exc))
            return False
