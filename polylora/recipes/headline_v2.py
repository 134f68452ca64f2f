"""``python launchers/headline.py --v2 [--smoke] [--seeds 1,2,3] [-- overrides]``

Runs the headline's second design in one process: stage 0 (a CE run per seed), stage 1 (each
arm continued from that seed's adapter), the evaluation-only temperature sweep, then the report
(:mod:`polylora.report.headline_v2_report`, which only reads the runs). The third design
(:mod:`polylora.recipes.headline_v3`) is the same recipe on its own experiment files and report.

Each job is the pipeline itself (:func:`polylora.run.pipeline.execute` on the config Hydra composes
from the experiment files ``<design>_*``), so run ids come back as values, not from output.
Overrides after ``--`` reach every job unchanged (``hardware=gpu model=hf model.path=...``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polylora.config.compose import compose_config
from polylora.record.names import LAUNCH_TAG, STAGE_TAG
from polylora.record.provenance import provenance
from polylora.report.headline_v2 import ARMS, Launch, RunRef

TEMPERATURE_OVERLAY = "headline_v2_temperature"


def experiment_name(stage: str, design: str = "headline_v2") -> str:
    """The experiment file of a stage of ``design``: ``sft`` or an arm."""
    return f"{design}_{stage}"


def overrides(launch: Launch, stage: str, seed: int, out_dir: Path, extra: Sequence[str],
              adapter: str | None = None, temperature: float | None = None) -> list[str]:
    """Hydra overrides of one job (the experiment list, seed, store, tags, output folder)."""
    experiments = [experiment_name(stage, launch.design)]
    if temperature is not None:
        experiments.append(TEMPERATURE_OVERLAY)
    if launch.smoke:
        experiments.append(f"{launch.design}_smoke")
    kind = "sft" if stage == "sft" else ("temperature" if temperature is not None else "arm")
    out = [
        f"+experiment=[{','.join(experiments)}]",
        f"seed={seed}",
        f"tracking.uri={launch.tracking_uri}",
        f"tracking.experiment={launch.experiment}",
        f"++tracking.tags={{{LAUNCH_TAG}:'{launch.launch_id}',{STAGE_TAG}:{kind}}}",
        f"output_dir={out_dir}",
    ]
    if adapter:
        out.append(f"model.adapter={adapter}")
    # The group names the stage whatever the overlays set ``experiment`` to (``experiment=``
    # on the command line would select the experiment group instead of naming the run).
    group = experiment_name(stage, launch.design)
    if temperature is not None:
        out.append(f"eval.temperature={temperature}")
        group += f"@T{temperature:g}"
    out.append(f"tracking.group={group}")
    return [*out, *extra]


def execute(job_overrides: Sequence[str]) -> tuple[str, float]:
    """Run one job; returns its MLflow run id and the temperature it was evaluated at."""
    from polylora.run.pipeline import execute as run_job

    cfg = compose_config(job_overrides)
    result = run_job(cfg)
    return result.run_id, float(cfg.eval.temperature)


def run_design(launch: Launch, runs_dir: Path, extra: Sequence[str] = (),
               sweep_arms: Sequence[str] | None = None,
               job: Callable[[Sequence[str]], tuple[str, float]] = execute,
               log: Callable[[str], None] = print,
               on_run: Callable[[Launch], object] | None = None) -> Launch:
    """Stage 0, stage 1 and the temperature sweep for every seed; fills ``launch.runs`` and
    ``launch.phases`` (seconds) and returns ``launch``.

    Runs already in ``launch.runs`` are kept, not run again, so an interrupted launch resumes
    where it stopped; ``on_run`` is called after every finished run (the recipe saves the
    launch file there).
    """
    sweep_arms = list(sweep_arms or launch.arms)
    unknown = [a for a in [*launch.arms, *sweep_arms] if a not in ARMS]
    if unknown:
        raise ValueError(f"unknown arm(s) {unknown}; the arms are {list(ARMS)}")
    phases = {"stage 0 (SFT)": 0.0, "stage 1 (arms)": 0.0, "temperature sweep": 0.0}
    phases.update(launch.phases)

    def done(stage: str, arm: str, seed: int, temperature: float | None) -> RunRef | None:
        for ref in launch.runs:
            if (ref.stage, ref.arm, ref.seed) == (stage, arm, seed) and (
                    temperature is None or abs(ref.temperature - temperature) < 1e-9):
                return ref
        return None

    def timed(phase: str, stage: str, arm: str, seed: int,
              **kw: Any) -> RunRef:
        temperature = kw.get("temperature")
        kept = done(stage, arm, seed, temperature)
        name = arm if temperature is None else f"{arm}-T{temperature:g}"
        if kept is not None:
            log(f"[{launch.design}] seed {seed}: {name} (kept: run {kept.run_id})")
            return kept
        log(f"[{launch.design}] seed {seed}: {name}")
        started = time.time()
        run_id, temp = job(overrides(launch, arm, seed, runs_dir / f"seed{seed}" / name, extra,
                                     **kw))
        phases[phase] += time.time() - started
        ref = RunRef(run_id, stage, arm, seed, temp)
        launch.runs.append(ref)
        launch.phases = dict(phases)
        if on_run is not None:
            on_run(launch)
        return ref

    for seed in launch.seeds:
        sft = timed("stage 0 (SFT)", "sft", "sft", seed)
        adapter = f"runs:/{sft.run_id}/adapter"
        arm_ids = {}
        for arm in launch.arms:
            arm_ids[arm] = timed("stage 1 (arms)", "arm", arm, seed, adapter=adapter).run_id
        for arm in sweep_arms:
            for temp in launch.temperatures:
                timed("temperature sweep", "temperature", arm, seed,
                      adapter=f"runs:/{arm_ids[arm]}/adapter", temperature=temp)
    launch.phases = phases
    return launch


def close_interrupted(launch: Launch) -> list[str]:
    """Mark this launch's runs that an interruption left RUNNING (not in ``launch.runs``) as
    KILLED, so the store shows no run as still going; returns their ids."""
    from polylora.record import reader, writer

    client = reader.get_client(launch.tracking_uri)
    if not reader.has_experiment(client, launch.experiment):
        return []
    kept = {r.run_id for r in launch.runs}
    running = reader.select_runs(client, launch.experiment,
                                 f"tags.`{LAUNCH_TAG}` = '{launch.launch_id}'", status="RUNNING")
    orphans = [r.run_id for r in running if r.run_id not in kept]
    writer.mark_killed(client, orphans)
    return orphans


@dataclass(frozen=True)
class Recipe:
    """What differs between the designs this recipe runs: names, defaults and the report."""

    design: str  # the experiment files' prefix, the MLflow experiment and the report's stem
    flag: str  # the launcher's option (--v2, --v3)
    description: str
    seeds: str
    temperatures: str  # evaluation-only temperatures ("" for none)
    sweep_arms: str
    sesoi: float
    report_module: str  # a module with write_report(path, launch, from_tables=False)

    @property
    def report_name(self) -> str:
        return f"{self.design}.md"

    @property
    def launch_file(self) -> str:
        return f"{self.design}_launch.json"


#: The second design (docs/results/headline_v2_plan.md); SESOI: the smallest pass@10 gain.
V2 = Recipe("headline_v2", "--v2",
            "The headline's second design: SFT per seed, then CE / pass@1 RL / polychromic / "
            "pass@k RL from it, a temperature sweep, the report.",
            seeds="1,2,3", temperatures="0.7,1.3", sweep_arms="ce,polychromic", sesoi=0.05,
            report_module="polylora.report.headline_v2_report")


#: The provenance keys that must match for a resumed launch's runs to share their code.
SAME_CODE_KEYS = ("code.commit", "code.dirty", "code.diff_sha256", "version.torch",
                  "version.transformers", "version.peft", "version.polylora")


def check_same_code(launch: Launch, current: dict[str, str], allow_mixed: bool) -> None:
    """Refuse (SystemExit with the fix) to resume ``launch`` on other code than it started on:
    a different revision or library version, or a launch that recorded none."""
    recorded = launch.provenance[-1] if launch.provenance else None
    if recorded is None:
        differs = ["the launch records no code revision (it predates provenance)"]
    else:
        differs = [f"{k} {recorded.get(k, '?')!r} -> {current.get(k, '?')!r}"
                   for k in SAME_CODE_KEYS if recorded.get(k) != current.get(k)]
    if not differs or allow_mixed:
        return
    raise SystemExit(f"error: --resume would mix code revisions in launch {launch.launch_id}: "
                     f"{'; '.join(differs)}. Check out the launch's revision "
                     f"({recorded.get('code.commit') if recorded else 'unknown'}) and its "
                     "library versions, or pass --allow-mixed-revisions to continue anyway "
                     "(the launch record then lists both)")


def parse_args(argv: Sequence[str], recipe: Recipe = V2) -> tuple[Any, list[str]]:
    """Options, and the Hydra overrides after ``--``."""
    import argparse

    argv = list(argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    p = argparse.ArgumentParser(
        prog=f"launchers/headline.py {recipe.flag}", description=recipe.description)
    p.add_argument("--smoke", action="store_true", help="the tiny random model (seconds)")
    p.add_argument("--seeds", default=recipe.seeds, help="comma-separated (default %(default)s)")
    p.add_argument("--arms", default=",".join(ARMS), help="stage-1 arms (default %(default)s)")
    p.add_argument("--sweep-arms", default=recipe.sweep_arms,
                   help="arms of the temperature sweep (default %(default)s: CE's frontier and "
                        "the primary arm's; the others are evaluated at their own T only)")
    p.add_argument("--temperatures", default=recipe.temperatures,
                   help="evaluation-only temperatures besides the arms' own (default %(default)s)")
    p.add_argument("--sesoi", type=float, default=recipe.sesoi,
                   help="smallest effect of interest on the primary endpoint (default %(default)s)")
    p.add_argument("--tracking-uri", default=None, help="MLflow store (default: "
                   "$MLFLOW_TRACKING_URI or sqlite:///mlflow.db; --smoke: sqlite in --out)")
    p.add_argument("--experiment-name", default=None,
                   help=f"MLflow experiment (default {recipe.design}; --smoke "
                        f"{recipe.design}_smoke)")
    p.add_argument("--out", default=None, help="report folder (default docs/results; --smoke: "
                   "a new temporary folder)")
    p.add_argument("--launch-id", default=None, help="tag of this launch's runs")
    p.add_argument("--report-only", action="store_true",
                   help=f"rewrite the report from <out>/{recipe.launch_file} (no runs)")
    p.add_argument("--from-tables", action="store_true",
                   help="with --report-only: from the committed per-run and per-prompt tables "
                        "beside the report, without the MLflow store (designs that keep them)")
    p.add_argument("--resume", action="store_true",
                   help=f"continue the launch in <out>/{recipe.launch_file}: its finished runs are "
                        "kept, the rest run (seeds, arms and temperatures as it was started); "
                        "refused when the code revision or library versions differ from the "
                        "launch's")
    p.add_argument("--allow-mixed-revisions", action="store_true",
                   help="--resume even though the code revision or library versions differ "
                        "from the launch's (the record then lists both)")
    args = p.parse_args(argv)
    try:
        args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
        args.temperature_list = [float(t) for t in args.temperatures.split(",") if t.strip()]
    except ValueError as exc:
        p.error(f"--seeds and --temperatures take comma-separated numbers ({exc})")
    args.arm_list = [a for a in args.arms.split(",") if a.strip()]
    args.sweep_list = [a for a in args.sweep_arms.split(",") if a.strip()]
    bad = [a for a in [*args.arm_list, *args.sweep_list] if a not in ARMS]
    if bad or not set(args.sweep_list) <= set(args.arm_list):
        p.error(f"--arms/--sweep-arms: choose among {','.join(ARMS)} (sweep arms must be arms)")
    if args.from_tables and not args.report_only:
        p.error("--from-tables rewrites a report: pass it with --report-only")
    if len(args.seed_list) < 2:
        p.error("--seeds: give at least two seeds (the statistics pair arms by seed)")
    return args, extra


def main(argv: Sequence[str], repo: Path, command: str, recipe: Recipe = V2) -> int:
    """Run the design (or, with ``--report-only``, only the report); returns 0."""
    import importlib
    import os
    import shlex
    import tempfile
    import uuid
    from datetime import datetime

    write_report = importlib.import_module(recipe.report_module).write_report
    args, extra = parse_args(argv, recipe)
    design, tag = recipe.design, f"[{recipe.design}]"
    current = {**provenance(), "command": command,
               "started": datetime.now().isoformat(timespec="seconds")}
    if args.out:
        out = Path(args.out).resolve()
    elif args.smoke:
        out = Path(tempfile.mkdtemp(prefix=f"polylora-{design}-smoke-"))
    else:
        out = repo / "docs" / "results"
    out.mkdir(parents=True, exist_ok=True)
    launch_file = out / recipe.launch_file
    if args.report_only or args.resume:
        if not launch_file.exists():
            raise SystemExit(f"error: no launch to {'resume' if args.resume else 'report'} at "
                             f"{launch_file}; start one without --resume/--report-only")
        launch = Launch.load(launch_file)
    if args.resume:
        check_same_code(launch, current, args.allow_mixed_revisions)
        launch.provenance.append(current)
        runs_dir = out / "runs" if launch.smoke else repo / "multirun" / design
        killed = close_interrupted(launch)
        print(f"{tag} resume launch {launch.launch_id}: {len(launch.runs)} run(s) "
              f"kept; interrupted run(s) marked KILLED: {', '.join(killed) or 'none'}",
              flush=True)
        run_design(launch, runs_dir / launch.launch_id, extra, args.sweep_list,
                   on_run=lambda la: la.save(launch_file))
        launch.save(launch_file)
    elif not args.report_only:
        uri = args.tracking_uri or (f"sqlite:///{out / 'mlflow.db'}" if args.smoke else
                                    os.environ.get("MLFLOW_TRACKING_URI")
                                    or f"sqlite:///{repo / 'mlflow.db'}")
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        launch = Launch(
            launch_id=args.launch_id or f"{stamp}-{uuid.uuid4().hex[:6]}",
            experiment=args.experiment_name or (f"{design}_smoke" if args.smoke else design),
            tracking_uri=uri, seeds=args.seed_list, arms=args.arm_list,
            temperatures=args.temperature_list, command=command, sesoi=args.sesoi,
            smoke=args.smoke, design=design, provenance=[current])
        runs_dir = out / "runs" if args.smoke else repo / "multirun" / design
        print(f"{tag} launch {launch.launch_id}: {launch.experiment} in {uri}; "
              f"extra overrides: {shlex.join(extra) or 'none'}", flush=True)
        run_design(launch, runs_dir / launch.launch_id, extra, args.sweep_list,
                   on_run=lambda la: la.save(launch_file))
        launch.save(launch_file)
    report = (write_report(out / recipe.report_name, launch, from_tables=True)
              if args.from_tables else write_report(out / recipe.report_name, launch))
    print(f"{tag} report: {report}\n{tag} regenerate: python launchers/headline.py "
          f"{recipe.flag} --report-only --out {out}", flush=True)
    return 0
