"""python launchers/headline.py [--smoke] [--seeds 42,123,456] [--tracking-uri ...] [--experiment-name headline] [--lambda-sweep]

(Over 400 lines: the first design's whole recipe, runs to report, read top to bottom as its
methods section; the second design's lives in polylora/recipes/headline_v2.py.)

``--v2`` runs the second design instead (SFT then RL arms, temperature sweep, per-kind report:
``python launchers/headline.py --v2 [--smoke] [--seeds 1,2,3] [-- overrides]``, see
polylora/recipes/headline_v2.py and docs/results/headline_v2_plan.md); ``--v3`` the third
(polylora/recipes/headline_v3.py, docs/results/headline_v3_plan.md).

The headline experiment in one command: does polychromic training beat CE at pass@k on the
builtin word task (the research question)? Steps, each printed before it runs:

1. ``python -m polylora -m +experiment=headline_ce,headline_polychromic seed=<seeds>``: both
   objectives × seeds (one Hydra multirun, one MLflow run per job);
2. ``python -m polylora -m '+experiment=[headline_ce,zero_shot],[headline_ce,few_shot]'
   seed=<seeds>``: the zero-/few-shot baselines on the headline's own model, data and
   evaluation (the headline config with the baseline experiment applied on top, so nothing
   but "no adapter, no training" and the 5 demonstrations differs);
3. with ``--lambda-sweep``: a small λ grid over headline_polychromic (``+hparams_search=lambda``,
   its own MLflow experiment ``<name>-lambda``), whose ``summary.csv`` the report includes;
4. ``polylora compare --baseline headline_ce`` twice: CE vs polychromic only (the statistics
   of the report: the Holm/Bonferroni families hold the question's tests, not the baselines'),
   into ``<out>/headline_files``; and every group (zero-/few-shot rows, pass@k curves of all
   four) into ``<out>/headline_files/all_groups``;
5. ``polylora.report.headline``: ``<out>/headline.md``.

Every run is tagged ``polylora.launch=<launch id>`` and the comparisons select that tag, so
earlier launches into the same MLflow experiment never mix in. ``--report-only --launch-id ID``
redoes steps 4-5 from the runs already logged (the committed report is regenerated that way).

Defaults: ``--out docs/results`` (the committed report), the tracking store of
``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``; Hydra outputs in
``multirun/<name>/<launch id>/``. With ``--smoke`` (tiny random model, seconds) everything goes
to a fresh temporary folder unless ``--out`` / ``--tracking-uri`` say otherwise, and the
experiment is ``headline_smoke``. Anything after ``--`` is passed to every Hydra run as
overrides, e.g. ``-- train.max_steps=40 eval.subset_size=40`` to fit another budget.

More options: ``--out DIR``, ``--runs-dir DIR``, ``--baseline-seeds 42`` (fewer zero-/few-shot
runs), ``--lambdas 0.1,0.5`` and ``--lambda-seed N`` (the sweep), ``--launch-id ID``,
``--report-only``. Budget and measured times: docs/results/README.md.
"""

# ruff: noqa: E501  (the docstring's first line is the exact command, nanochat-style)
# Long (~420 lines): the first design's steps and report-only path; --v2 hands over to
# polylora.recipes.headline_v2.
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python launchers/headline.py` from a checkout
    sys.path.insert(0, str(REPO))

from polylora.record.names import LAUNCH_TAG  # noqa: E402  (after the checkout is importable)

HOST_TAG = "polylora.host"
LAUNCH_FILE = "launch.json"
FILES_DIR = "headline_files"
ALL_GROUPS_DIR = "all_groups"
REPORT_NAME = "headline.md"
DEFAULT_LAMBDAS = "0.1,0.5"


@dataclass(frozen=True)
class Arms:
    """The experiment files of one recipe size."""

    ce: str
    polychromic: str
    mlflow_experiment: str

    @property
    def baselines(self) -> tuple[str, str]:
        """The zero-/few-shot runs as experiment lists applied on top of the CE arm."""
        return (f"[{self.ce},zero_shot]", f"[{self.ce},few_shot]")


FULL = Arms("headline_ce", "headline_polychromic", "headline")
SMOKE = Arms("headline_smoke_ce", "headline_smoke_polychromic", "headline_smoke")


@dataclass
class Launch:
    """What one launch ran: written to ``<runs dir>/launch.json`` and read by the report."""

    launch_id: str
    experiment: str
    tracking_uri: str
    seeds: list[int]
    smoke: bool
    command: str
    host: str
    runs_dir: str
    extra_overrides: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)  # phase → wall seconds
    commands: dict[str, str] = field(default_factory=dict)  # phase → shell command
    comparison_runs: dict[str, str] = field(default_factory=dict)  # folder → MLflow run id
    lambda_summary: str | None = None
    started: str = ""
    finished: str = ""
    #: code revision, library versions, command line (polylora.record.provenance.provenance)
    provenance: dict[str, str] = field(default_factory=dict)


def host_description() -> str:
    """One line about the machine the runs used: OS, CPU model, cores, torch, GPU if any."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    parts = [f"{platform.system()} {platform.machine()}", cpu, f"{os.cpu_count()} CPU cores"]
    try:
        import torch

        parts.append(f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
        if torch.cuda.is_available():
            parts.append(f"GPU {torch.cuda.get_device_name(0)}")
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return ", ".join(parts)


def tag_override(launch_id: str, host: str) -> str:
    """Tags every run of the launch carries (merged into ``tracking.tags``)."""
    from polylora.config.overrides import hydra_quote

    # Hydra's grammar has no use for some characters of a CPU name; keep it plain.
    clean_host = re.sub(r"[^\w .,()@+-]", " ", host)
    return (f"++tracking.tags={{{LAUNCH_TAG}:{hydra_quote(launch_id)}, "
            f"{HOST_TAG}:{hydra_quote(clean_host)}}}")


def shell_join(argv: Sequence[str]) -> str:
    """The command as one copy-pasteable shell line."""
    import shlex

    return " ".join(shlex.quote(a) for a in argv)


def run_command(argv: list[str], phase: str, launch: Launch, log_dir: Path) -> str:
    """Run ``argv`` from the repository root, teeing its output to ``<log_dir>/<phase>.log``;
    exit with its status if it fails. Returns the captured output."""
    cmd = shell_join(argv)
    launch.commands[phase] = cmd
    print(f"\n[headline] {phase}: {cmd}", flush=True)
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    chunks: list[str] = []
    with (log_dir / f"{phase}.log").open("w", encoding="utf-8") as log, subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        errors="replace",
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            chunks.append(line)
            shown = line.rsplit("\r", 1)[-1]  # the last state of a progress bar line
            if "%|" not in shown:
                sys.stdout.write(shown)
        code = proc.wait()
    launch.phases[phase] = time.time() - started
    if code != 0:
        print(f"[headline] {phase} failed (exit {code}); see {log_dir / f'{phase}.log'}",
              file=sys.stderr)
        sys.exit(code)
    return "".join(chunks)


def hydra_command(experiments: str, launch: Launch, sweep_dir: Path,
                  seeds: Sequence[int] | None = None, extra: Sequence[str] = ()) -> list[str]:
    """A multirun of ``experiments`` × seeds (default: the launch's) into the launch's MLflow
    experiment."""
    return [
        sys.executable, "-m", "polylora", "-m", f"+experiment={experiments}",
        "seed=" + ",".join(str(s) for s in (seeds or launch.seeds)),
        f"tracking.uri={launch.tracking_uri}",
        f"tracking.experiment={launch.experiment}",
        tag_override(launch.launch_id, launch.host),
        f"hydra.sweep.dir={sweep_dir}",
        *extra, *launch.extra_overrides,
    ]


def lambda_command(arms: Arms, launch: Launch, lambdas: Sequence[float], seed: int,
                   sweep_dir: Path) -> list[str]:
    """A small grid over λ with the polychromic arm (``+hparams_search=lambda``)."""
    grid = ",".join(f"{x:g}" for x in lambdas)
    return [
        sys.executable, "-m", "polylora", "-m", f"+experiment={arms.polychromic}",
        "+hparams_search=lambda", "hydra/sweeper/sampler=grid",
        f"objective.pg_weight=choice({grid})",
        "optimized_metric=val/pass@10",  # the validation subset: a search never sees test
        f"hydra.sweeper.n_trials={len(lambdas)}",
        f"hydra.sweeper.study_name={launch.experiment}-lambda-{launch.launch_id}",
        f"hydra.sweeper.storage=sqlite:///{sweep_dir / 'optuna.db'}",
        f"hydra.sweep.dir={sweep_dir}",
        f"seed={seed}",
        f"tracking.uri={launch.tracking_uri}",
        f"tracking.experiment={launch.experiment}-lambda",
        tag_override(launch.launch_id, launch.host),  # merged with the sweeper's trial tags
        *launch.extra_overrides,
    ]


def compare_args(arms: Arms, launch: Launch, out: Path, baselines: bool) -> list[str]:
    """``polylora compare`` arguments for this launch's runs with CE as the baseline."""
    where = f"tags.`{LAUNCH_TAG}` = '{launch.launch_id}'"
    if not baselines:  # the two arms only (their group names start with "headline")
        where += " and tags.`polylora.group` LIKE 'headline%'"
    return [
        "compare", "--experiment", launch.experiment, "--tracking-uri", launch.tracking_uri,
        "--baseline", arms.ce, "--filter", where, "--out", str(out),
    ]


def run_compare(argv: list[str], phase: str, launch: Launch, log_dir: Path) -> str | None:
    """Run ``polylora <argv>`` in this process (no second interpreter start-up), teeing its
    output to ``<log_dir>/<phase>.log``; exit 2 if it fails. Returns the comparison run id."""
    import contextlib
    import io

    from polylora.cli.main import main as cli_main

    launch.commands[phase] = shell_join(["polylora", *argv])
    print(f"\n[headline] {phase}: {launch.commands[phase]}", flush=True)
    started = time.time()
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = cli_main(argv)
    output = buffer.getvalue()
    sys.stdout.write(output)
    (log_dir / f"{phase}.log").write_text(output, encoding="utf-8")
    launch.phases[phase] = time.time() - started
    if code != 0:
        print(f"[headline] {phase} failed (exit {code})", file=sys.stderr)
        sys.exit(code)
    return comparison_run_id(output)


def comparison_run_id(output: str) -> str | None:
    """The run id ``polylora compare`` printed ("logged comparison run <id> ...")."""
    match = re.search(r"logged comparison run ([0-9a-f]{32})", output)
    return match.group(1) if match else None


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """Options, and the Hydra overrides after ``--``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    p = argparse.ArgumentParser(
        prog="launchers/headline.py",
        description="Run the headline experiment (both objectives × seeds, zero-/few-shot "
                    "baselines, compare) and write docs/results/headline.md.",
    )
    p.add_argument("--smoke", action="store_true",
                   help="the tiny random model (seconds): headline_smoke_* experiments")
    p.add_argument("--seeds", default="42,123,456", help="comma-separated (default: %(default)s)")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow store (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db; "
                        "--smoke: sqlite in --out)")
    p.add_argument("--experiment-name", default=None,
                   help="MLflow experiment (default: headline; --smoke: headline_smoke)")
    p.add_argument("--out", default=None,
                   help="report folder: <out>/headline.md + <out>/headline_files/ "
                        "(default: docs/results; --smoke: a new temporary folder)")
    p.add_argument("--runs-dir", default=None,
                   help="Hydra outputs and logs (default: multirun/<name>/<launch id>; "
                        "--smoke: <out>/runs)")
    p.add_argument("--baseline-seeds", default=None,
                   help="seeds of the zero-/few-shot runs (default: --seeds; a seed changes "
                        "only their sampling)")
    p.add_argument("--lambda-sweep", action="store_true",
                   help="also run a small λ grid over the polychromic arm")
    p.add_argument("--lambdas", default=DEFAULT_LAMBDAS,
                   help="λ values of --lambda-sweep (default: %(default)s; the arm itself is 0.3)")
    p.add_argument("--lambda-seed", type=int, default=None,
                   help="seed of the λ sweep's runs (default: the first of --seeds)")
    p.add_argument("--launch-id", default=None,
                   help="tag value that selects this launch's runs (default: a new time stamp)")
    p.add_argument("--report-only", action="store_true",
                   help="skip the runs: compare and report the runs of --launch-id")
    args = p.parse_args(argv)
    if args.report_only and not args.launch_id:
        p.error("--report-only needs --launch-id (printed by the launch and in launch.json)")
    try:
        args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
        args.lambda_list = [float(x) for x in args.lambdas.split(",") if x.strip()]
        args.baseline_seed_list = [int(s) for s in (args.baseline_seeds or args.seeds).split(",")
                                   if s.strip()]
    except ValueError as exc:
        p.error(f"--seeds and --lambdas take comma-separated numbers ({exc})")
    if not args.seed_list:
        p.error("--seeds: give at least one seed")
    return args, extra


def main(argv: Sequence[str] | None = None) -> int:
    """Run the recipe; returns 0 (a failing step exits with its status)."""
    from polylora.record.provenance import provenance
    from polylora.report import headline

    argv = list(sys.argv[1:] if argv is None else argv)
    if "--v2" in argv or "--v3" in argv:  # polylora.recipes.headline_v2 / headline_v3
        from polylora.recipes import headline_v2, headline_v3

        recipe = headline_v3.V3 if "--v3" in argv else headline_v2.V2
        rest = [a for a in argv if a not in ("--v2", "--v3")]
        return headline_v2.main(rest, REPO, shell_join(["python", "launchers/headline.py",
                                                        *argv]), recipe)
    args, extra = parse_args(argv)
    arms = SMOKE if args.smoke else FULL
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    launch_id = args.launch_id or f"{stamp}-{uuid.uuid4().hex[:6]}"
    experiment = args.experiment_name or arms.mlflow_experiment
    if args.out:
        out = Path(args.out).resolve()
    elif args.smoke:
        out = Path(tempfile.mkdtemp(prefix="polylora-headline-smoke-"))
    else:
        out = REPO / "docs" / "results"
    if args.tracking_uri:
        uri = args.tracking_uri
    elif args.smoke:
        uri = f"sqlite:///{out / 'mlflow.db'}"
    else:
        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{REPO / 'mlflow.db'}"
    if args.runs_dir:
        runs_dir = Path(args.runs_dir).resolve()
    elif args.smoke:
        runs_dir = out / "runs" / launch_id
    else:
        runs_dir = REPO / "multirun" / experiment / launch_id
    out.mkdir(parents=True, exist_ok=True)
    runs_dir.mkdir(parents=True, exist_ok=True)
    command = shell_join(["python", "launchers/headline.py", *(sys.argv[1:] if argv is None
                                                               else argv)])
    launch = Launch(
        launch_id=launch_id, experiment=experiment, tracking_uri=uri, seeds=args.seed_list,
        smoke=args.smoke, command=command, host=host_description(), runs_dir=str(runs_dir),
        extra_overrides=extra, started=datetime.now().isoformat(timespec="seconds"),
        provenance={**provenance(), "command": command},
    )
    launch_file = runs_dir / LAUNCH_FILE
    if args.report_only and launch_file.exists():  # keep the original launch's wall times
        previous = json.loads(launch_file.read_text(encoding="utf-8"))
        launch.phases = {k: float(v) for k, v in previous.get("phases", {}).items()
                         if k not in ("compare", "compare_all_groups")}
        launch.commands = dict(previous.get("commands", {}))
        launch.host = previous.get("host", launch.host)
        launch.started = previous.get("started", launch.started)
        launch.lambda_summary = previous.get("lambda_summary")
    print(f"[headline] launch {launch_id}: experiment {experiment!r} in {uri}\n"
          f"[headline] report -> {out / REPORT_NAME}; runs -> {runs_dir}", flush=True)

    if not args.report_only:
        run_command(hydra_command(f"{arms.ce},{arms.polychromic}", launch, runs_dir / "train"),
                    "train", launch, runs_dir)
        run_command(hydra_command(",".join(arms.baselines), launch, runs_dir / "baselines",
                                  seeds=args.baseline_seed_list),
                    "baselines", launch, runs_dir)
        if args.lambda_sweep:
            seed = args.lambda_seed if args.lambda_seed is not None else args.seed_list[0]
            sweep_dir = runs_dir / "lambda"
            sweep_dir.mkdir(parents=True, exist_ok=True)  # the Optuna sqlite file lives here
            run_command(lambda_command(arms, launch, args.lambda_list, seed, sweep_dir),
                        "lambda_sweep", launch, runs_dir)
            summary = sweep_dir / "summary.csv"
            launch.lambda_summary = str(summary) if summary.exists() else None
            if launch.lambda_summary is None:
                print(f"[headline] note: the λ sweep wrote no {summary}", file=sys.stderr)
    files = out / FILES_DIR
    for phase, folder, with_baselines in (("compare", files, False),
                                          ("compare_all_groups", files / ALL_GROUPS_DIR, True)):
        run_id = run_compare(compare_args(arms, launch, folder, with_baselines), phase,
                             launch, runs_dir)
        if run_id:
            launch.comparison_runs[str(folder.relative_to(out))] = run_id
        compare_report = folder / "report.md"
        if compare_report.exists():  # committed next to headline.md: no machine paths
            compare_report.write_text(
                headline.portable(compare_report.read_text(encoding="utf-8"), REPO),
                encoding="utf-8")
    launch.finished = datetime.now().isoformat(timespec="seconds")
    launch_file.write_text(json.dumps(launch.__dict__, indent=2), encoding="utf-8")

    report = headline.write_report(
        out / REPORT_NAME,
        headline.ReportInputs(
            experiment=experiment, tracking_uri=uri, launch_id=launch_id,
            baseline=arms.ce, candidate=arms.polychromic,
            compare_dir=files, all_groups_dir=files / ALL_GROUPS_DIR,
            launch=launch.__dict__,
            lambda_summary=Path(launch.lambda_summary) if launch.lambda_summary else None,
            root=REPO,
        ),
    )
    print(f"\n[headline] report: {report}\n[headline] launch id: {launch_id} "
          f"(regenerate: python launchers/headline.py{' --smoke' if args.smoke else ''} "
          f"--report-only --launch-id {launch_id} --runs-dir {runs_dir} --out {out} "
          f"--tracking-uri {uri})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
