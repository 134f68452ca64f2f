"""HF_HUB_OFFLINE=1 .venv/bin/python bench/make_run.py [--old-rev 7318b2d] [-- OVERRIDE ...]

``make run`` (``python -m polylora +experiment=polychromic_0.3``) of an older revision against
this checkout, side by side in one invocation: the older revision is checked out in a
temporary git worktree, both run the same command with the same Python (this virtualenv),
the same overrides and a fresh MLflow store each, alternating old/new for ``--rounds``
rounds. For each run it prints the wall time, the training time (``train/wall_time_s``),
pass@1 and pass@10 (with 95% bootstrap intervals over the evaluation prompts, from the run's
``generations.jsonl``) and the peak RSS of the job's process (its ``ru_maxrss`` from
``wait4``, children included), then the new/old ratios of the medians and the compute floor of
the new revision's training (one step's matmul FLOPs, counted in this process on the same
model, LoRA, objective and batch size, × the steps, over this CPU's measured matmul rate).

Shorten a check with overrides after ``--``, e.g. ``-- train.max_steps=2 eval.subset_size=8``;
the full comparison (no overrides) takes about 20 minutes on a 2-core CPU. ``--timeline``
also samples each job's RSS every 0.5 s into ``<workdir>/<label>-<round>.rss.csv`` (seconds,
MB) to see which phase holds the memory. ``--new-overrides`` are added to the new revision's
runs only (e.g. ``hardware=cpu_bf16``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def worktree(rev: str, where: Path) -> Path:
    """A detached git worktree of ``rev`` under ``where`` (removed by :func:`drop_worktree`)."""
    path = where / f"polylora-{rev[:12]}"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), rev],
                   check=True, capture_output=True)
    return path


def drop_worktree(path: Path) -> None:
    subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)],
                   check=False, capture_output=True)


def _sample_rss(pid: int, out: Path, stop: threading.Event) -> None:
    """RSS of the job (and its children) every 0.5 s, as ``seconds,MB`` lines."""
    import psutil

    start = time.perf_counter()
    with out.open("w") as f:
        f.write("seconds,rss_mb\n")
        while not stop.is_set():
            try:
                proc = psutil.Process(pid)
                rss = proc.memory_info().rss + sum(
                    c.memory_info().rss for c in proc.children(recursive=True))
            except psutil.Error:
                break
            f.write(f"{time.perf_counter() - start:.1f},{rss / 2**20:.0f}\n")
            f.flush()
            stop.wait(0.5)


def run_metrics(run_dir: Path) -> dict[str, float]:
    """The run's ``metrics.json`` (training time, pass@k, ...)."""
    import json

    return {k: float(v) for k, v in json.loads((run_dir / "metrics.json").read_text()).items()
            if isinstance(v, (int, float))}


def passk_interval(run_dir: Path, k: int, reps: int = 2000) -> tuple[float, float, float]:
    """pass@k over the run's evaluation prompts with a 95% percentile bootstrap interval over
    prompts (from the per-prompt samples in ``generations.jsonl``)."""
    import json

    import numpy as np

    from polylora.metrics.passk import pass_at_k

    per_prompt = []
    for line in (run_dir / "generations.jsonl").read_text().splitlines():
        row = json.loads(line)
        correct = row.get("correct") or row.get("sample_correct")
        if correct is None:
            continue
        per_prompt.append(pass_at_k(len(correct), int(sum(bool(c) for c in correct)), k))
    values = np.asarray(per_prompt, dtype=float)
    rng = np.random.default_rng(0)
    boots = values[rng.integers(0, len(values), (reps, len(values)))].mean(1)
    return float(values.mean()), float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def training_floor(overrides: list[str]) -> tuple[int, float, int]:
    """(matmul FLOPs of one training step of this checkout, measured matmul FLOP/s, steps)."""
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from compute_floor import counted_flops, matmul_rate
    from hydra import compose, initialize_config_dir

    from polylora.config import build, register_configs
    from polylora.data.formatting import EncodedDataset
    from polylora.model.loading import autocast, autocast_dtype, load_base_model, wrap_lora
    from polylora.objectives.base import ObjectiveContext
    from polylora.train.preparation import prompt_format
    from polylora.train.trainer import IndexedCollator, IndexedDataset

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "polylora" / "conf"), version_base=None):
        cfg = compose(config_name="config",
                      overrides=["+experiment=polychromic_0.3", "output_dir=floor", *overrides])
    model, tok = load_base_model(cfg.model, cfg.hardware)
    model = wrap_lora(model, cfg.lora, cfg.hardware)
    model.train()
    examples = build(cfg.data.source).load()[: cfg.train.batch_size]
    fmt = prompt_format(cfg, examples)
    objective = build(cfg.objective, _convert_="all")
    checker = build(cfg.data.checker) if cfg.data.checker is not None else None
    objective.bind(ObjectiveContext(tokenizer=tok, examples=examples, prompt_format=fmt,
                                    checker=checker, max_length=cfg.data.max_length))
    dataset = IndexedDataset(EncodedDataset(examples, tok, fmt, cfg.data.max_length))
    batch = IndexedCollator(tok.pad_token_id)([dataset[i] for i in range(len(dataset))])

    def step() -> None:
        with autocast(cfg.hardware):
            objective.compute_loss(model, batch, None, 1).loss.backward()

    _, flops = counted_flops(step)
    steps = cfg.train.max_steps if cfg.train.max_steps > 0 else 60
    return flops, matmul_rate(bf16=autocast_dtype(cfg.hardware) is not None), steps


def run_job(tree: Path, workdir: Path, label: str, overrides: list[str],
            timeline: bool) -> tuple[float, float]:
    """Run the job in ``tree``; returns (wall seconds, peak RSS MB). Output goes to a log."""
    run_dir = workdir / label
    cmd = [sys.executable, "-m", "polylora", "+experiment=polychromic_0.3",
           f"hydra.run.dir={run_dir}", f"tracking.uri=sqlite:///{workdir / label}.db",
           *overrides]
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    log = (workdir / f"{label}.log").open("w")
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT)
    stop = threading.Event()
    sampler = None
    if timeline:
        sampler = threading.Thread(target=_sample_rss,
                                   args=(proc.pid, workdir / f"{label}.rss.csv", stop))
        sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    stop.set()
    if sampler is not None:
        sampler.join()
    log.close()
    if proc.returncode != 0:
        raise SystemExit(f"{label} failed (exit {proc.returncode}); see {workdir / label}.log")
    return wall, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def main() -> None:
    p = argparse.ArgumentParser(description="make run: an older revision vs this checkout")
    p.add_argument("--old-rev", default="7318b2d")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--workdir", type=Path, default=None, help="kept when given")
    p.add_argument("--timeline", action="store_true", help="sample RSS every 0.5 s")
    p.add_argument("--new-overrides", nargs="*", default=[])
    p.add_argument("overrides", nargs="*", help="Hydra overrides for both (after --)")
    a = p.parse_args()
    workdir = a.workdir or Path(tempfile.mkdtemp(prefix="polylora-make-run-"))
    workdir.mkdir(parents=True, exist_ok=True)
    old_tree = worktree(a.old_rev, workdir)
    results: dict[str, list[tuple[float, float]]] = {"old": [], "new": []}
    train_s: dict[str, list[float]] = {"old": [], "new": []}
    try:
        for r in range(a.rounds):
            order = ("old", "new") if r % 2 == 0 else ("new", "old")
            for which in order:
                tree = old_tree if which == "old" else REPO
                extra = a.overrides + (a.new_overrides if which == "new" else [])
                wall, rss = run_job(tree, workdir, f"{which}-{r}", extra, a.timeline)
                results[which].append((wall, rss))
                metrics = run_metrics(workdir / f"{which}-{r}")
                train_s[which].append(metrics.get("train/wall_time_s", float("nan")))
                scores = "  ".join(
                    "pass@{} {:.3f} [{:.3f}, {:.3f}]".format(k, *passk_interval(
                        workdir / f"{which}-{r}", k)) for k in (1, 10))
                print(f"round {r + 1} {which}: wall {wall:.1f} s, training "
                      f"{train_s[which][-1]:.1f} s, peak RSS {rss:.0f} MB, {scores}", flush=True)
    finally:
        drop_worktree(old_tree)
    med = {k: (statistics.median(w for w, _ in v), statistics.median(m for _, m in v))
           for k, v in results.items()}
    print(f"old={a.old_rev} new={REPO.name} overrides={' '.join(a.overrides) or '(none)'} "
          f"new-only={' '.join(a.new_overrides) or '(none)'} rounds={a.rounds}")
    print(f"RATIO wall time new/old = {med['new'][0] / med['old'][0]:.2f}x "
          f"({med['new'][0]:.1f} s / {med['old'][0]:.1f} s; target <= 0.45x)")
    train = {k: statistics.median(v) for k, v in train_s.items()}
    print(f"RATIO training time new/old = {train['new'] / train['old']:.2f}x "
          f"({train['new']:.1f} s / {train['old']:.1f} s; target <= 0.35x)")
    print(f"peak RSS new/old = {med['new'][1]:.0f} MB / {med['old'][1]:.0f} MB "
          f"({med['new'][1] / med['old'][1]:.2f}x; target <= 2.5 GB)")
    from compute_floor import floor_line

    flops, rate, steps = training_floor(a.overrides + a.new_overrides)
    print(floor_line(f"new training ({steps} steps)", flops * steps, rate, train["new"]))
    print(f"logs and run dirs: {workdir}")


if __name__ == "__main__":
    main()
