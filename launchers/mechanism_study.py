"""Which objectives sharpen, exactly: a one-step policy over a vocabulary of answers, trained
with each objective's exact expected update, no language model and no sampling noise.

    .venv/bin/python launchers/mechanism_study.py --robustness-seeds 4   # ~3 min
    .venv/bin/python launchers/mechanism_study.py --steps 50 --out /tmp/mech   # a quick look

The setting. P prompts share one answer vocabulary of V answers; each prompt has its own set
of correct answers; some answers are correct for many prompts, others for few. The policy of
prompt p is softmax(θ + M_p): M_p is fixed (what SFT put there: a popularity prior plus a
bonus on p's correct answers), θ is shared and trained — the limited capacity of a small
adapter, which has to move every prompt's distribution with the same parameters. An RL step
draws groups of N answers per prompt; the objective's advantages (polylora's own functions,
with its own scaling) weight ∇ log π. Here every possible group is enumerated (multisets of N
answers with their multinomial probabilities), so the update is the estimator's exact
expectation and any difference between arms is the objective's, not noise. Each arm then
takes Adam steps on that expected update (the same learning rate for all). Writes
docs/objective_files/mechanism.{png,csv}.

What is measured: pass@1 and pass@k (1 − (1 − π_p(correct))^k, averaged over prompts) over
training; distinct answers per correct sample among 20 samples (the sharpening metric: it falls
when the mass on correct answers concentrates on fewer of them, whatever pass@1 does); and, at
the start, the probability that a group's std-scaled polychromic advantages differ from GRPO's
(where they coincide, the two arms train on the same signal).
"""

from __future__ import annotations

import argparse
import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations_with_replacement
from pathlib import Path

import numpy as np

from polylora.metrics.diversity import set_diversity
from polylora.objectives.advantages import (
    AdvantageNorm,
    SetScoreKind,
    compute_advantages,
    normalize_advantages,
    subset_scorer,
)
from polylora.objectives.grpo import grpo_advantages
from polylora.objectives.passk import pkpo_advantages

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "docs" / "objective_files"
#: k values of the pass@k curve (the study's samples are exact, so any k is available).
CURVE_K = (1, 2, 4, 8, 16, 32, 64)
#: Samples per prompt of the sharpening metric (the headline evaluations draw 20).
SHARPENING_SAMPLES = 20

#: Per-sample advantages of one group from its answers and their 0/1 correctness.
GroupAdvantages = Callable[[Sequence[int], Sequence[bool]], list[float]]


@dataclass(frozen=True)
class Task:
    """P prompts over V answers: ``correct[p, y]`` and the fixed per-prompt offsets M_p."""

    correct: np.ndarray  # (P, V) bool
    offsets: np.ndarray  # (P, V) float

    @property
    def prompts(self) -> int:
        return int(self.correct.shape[0])

    @property
    def answers(self) -> int:
        return int(self.correct.shape[1])


def make_task(prompts: int = 12, answers: int = 16, seed: int = 0, popular_rate: float = 0.5,
              others: tuple[int, int] = (1, 3), popular_prior: float = 1.5,
              correct_bonus: float = 0.7) -> Task:
    """Answer 0 is "popular": correct for about half the prompts and a priori the likeliest
    answer everywhere; each prompt also has 1–3 correct answers among the others, drawn at
    random. M_p = that prior (plus noise) + a bonus on p's correct answers, as a short SFT run
    leaves it. The prompts without the popular answer are the hard ones: only rare answers
    are right there."""
    rng = np.random.default_rng(seed)
    correct = np.zeros((prompts, answers), dtype=bool)
    correct[:, 0] = rng.random(prompts) < popular_rate
    for p in range(prompts):
        count = rng.integers(others[0], others[1] + 1)
        correct[p, 1 + rng.choice(answers - 1, count, replace=False)] = True
    prior = np.zeros(answers)
    prior[0] = popular_prior
    prior += 0.3 * rng.standard_normal(answers)
    offsets = prior + correct_bonus * correct + 0.3 * rng.standard_normal((prompts, answers))
    return Task(correct=correct, offsets=offsets)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def grpo(norm: AdvantageNorm) -> GroupAdvantages:
    """Pass@1 RL: reward minus the group mean, then polylora's scaling ``norm``."""
    def advantages(answers: Sequence[int], correct: Sequence[bool]) -> list[float]:
        raw = grpo_advantages([float(c) for c in correct])
        return normalize_advantages([raw], norm)[0]
    return advantages


def pkpo(k: int, norm: AdvantageNorm) -> GroupAdvantages:
    """Pass@k RL: the unbiased PKPO credit, then polylora's scaling ``norm``."""
    def advantages(answers: Sequence[int], correct: Sequence[bool]) -> list[float]:
        raw = pkpo_advantages([float(c) for c in correct], k)
        return normalize_advantages([raw], norm)[0]
    return advantages


def polychromic(set_score: SetScoreKind, norm: AdvantageNorm = "group_std") -> GroupAdvantages:
    """Polychromic: marginal set advantages of f(S) (checker quality, distinct-answer
    diversity), then polylora's scaling ``norm``."""
    def advantages(answers: Sequence[int], correct: Sequence[bool]) -> list[float]:
        texts = [f"w{a}" for a in answers]
        quality = [1.0 if c else 0.0 for c in correct]
        score = subset_scorer(quality,
                              lambda subset: set_diversity([texts[i] for i in subset], "distinct"),
                              set_score, answer_keys=texts)
        raw = compute_advantages(len(answers), score, "marginal")
        return normalize_advantages([raw], norm)[0]
    return advantages


@dataclass
class GroupTable:
    """Every multiset of N answers: its counts per answer and multinomial coefficient, and for
    each prompt the advantage-weighted counts W (Σ_i A_i e_{y_i}) and Σ_i A_i."""

    counts: np.ndarray  # (G, V)
    log_coef: np.ndarray  # (G,)
    weighted: np.ndarray  # (P, G, V)
    total: np.ndarray  # (P, G)
    groups: list[tuple[int, ...]] = field(default_factory=list)


def group_table(task: Task, n: int, advantages: GroupAdvantages) -> GroupTable:
    """Enumerate the groups once: the advantages depend on the answers, not on θ."""
    groups = list(combinations_with_replacement(range(task.answers), n))
    counts = np.zeros((len(groups), task.answers))
    for g, members in enumerate(groups):
        for a in members:
            counts[g, a] += 1
    log_coef = math.lgamma(n + 1) - np.array(
        [sum(math.lgamma(c + 1) for c in row if c) for row in counts])
    weighted = np.zeros((task.prompts, len(groups), task.answers))
    total = np.zeros((task.prompts, len(groups)))
    cache: dict[tuple[tuple[int, bool], ...], list[float]] = {}
    for p in range(task.prompts):
        for g, members in enumerate(groups):
            key = tuple((a, bool(task.correct[p, a])) for a in members)
            if key not in cache:
                cache[key] = advantages(members, [c for _, c in key])
            adv = cache[key]
            for a, value in zip(members, adv, strict=True):
                weighted[p, g, a] += value
            total[p, g] = sum(adv)
    return GroupTable(counts=counts, log_coef=log_coef, weighted=weighted, total=total,
                      groups=groups)


def group_probs(table: GroupTable, pi: np.ndarray) -> np.ndarray:
    """P(group) for each prompt: multinomial probability of each multiset, shape (P, G)."""
    log_pi = np.log(np.clip(pi, 1e-300, None))
    return np.exp(table.log_coef[None, :] + log_pi @ table.counts.T)


def expected_update(table: GroupTable, pi: np.ndarray, n: int) -> np.ndarray:
    """E[(1/N) Σ_i A_i ∇_logits log π(y_i)] per prompt, shape (P, V): the ascent direction of
    polylora's policy-gradient term (constant normalizer, one token per answer)."""
    probs = group_probs(table, pi)
    weighted = np.einsum("pg,pgv->pv", probs, table.weighted)
    total = (probs * table.total).sum(axis=1, keepdims=True)
    return (weighted - total * pi) / n


def ce_update(task: Task, pi: np.ndarray) -> np.ndarray:
    """CE on the references (uniform over each prompt's correct answers): target − π."""
    target = task.correct / task.correct.sum(axis=1, keepdims=True)
    return target - pi


def pass_at_k(task: Task, pi: np.ndarray, k: int) -> float:
    """Mean over prompts of 1 − (1 − π_p(correct))^k."""
    p_correct = (pi * task.correct).sum(axis=1)
    return float(np.mean(1.0 - (1.0 - p_correct) ** k))


def distinct_per_correct(task: Task, pi: np.ndarray, n: int = SHARPENING_SAMPLES) -> float:
    """E[distinct correct answers] / E[correct samples] among n samples, pooled over prompts:
    1 when every correct sample is a new answer, falling as the mass concentrates."""
    correct_pi = pi * task.correct
    distinct = (1.0 - (1.0 - correct_pi) ** n).sum()
    return float(distinct / (n * correct_pi.sum()))


def agreement_fraction(task: Task, n: int, first: GroupAdvantages, second: GroupAdvantages,
                       theta: np.ndarray) -> float:
    """Probability (over prompts and groups under the policy θ) that two objectives give a
    group different advantages (beyond 1e-9): where they agree, they train on one signal."""
    pi = softmax(theta[None, :] + task.offsets)
    table = group_table(task, n, first)
    probs = group_probs(table, pi)
    differ = np.zeros_like(probs)
    for p in range(task.prompts):
        for g, members in enumerate(table.groups):
            correct = [bool(task.correct[p, a]) for a in members]
            a1, a2 = first(members, correct), second(members, correct)
            differ[p, g] = float(max(abs(x - y) for x, y in zip(a1, a2, strict=True)) > 1e-9)
    return float((probs * differ).sum(axis=1).mean())


@dataclass
class Arm:
    """One objective of the study: its name and its expected update given π."""

    name: str
    update: Callable[[np.ndarray], np.ndarray]


def make_arms(task: Task, n: int, k: int) -> list[Arm]:
    """CE continued, pass@1 RL (GRPO, std-scaled as polylora's default), pass@k RL (PKPO:
    unbiased credit, unscaled; and std-scaled per group, which is not PKPO's estimator), and
    polychromic with three set scores (std-scaled, polylora's default)."""
    def rl(objective: GroupAdvantages) -> Callable[[np.ndarray], np.ndarray]:
        table = group_table(task, n, objective)
        return lambda pi: expected_update(table, pi, n)

    return [
        Arm("CE continued", lambda pi: ce_update(task, pi)),
        Arm("pass@1 RL (GRPO)", rl(grpo("group_std"))),
        Arm(f"pass@{k} RL (PKPO)", rl(pkpo(k, "none"))),
        Arm(f"pass@{k} RL (PKPO, std-scaled)", rl(pkpo(k, "group_std"))),
        Arm("polychromic (mean q × d)", rl(polychromic("polychromic"))),
        Arm("polychromic (correct diversity)", rl(polychromic("correct_diversity"))),
        Arm("polychromic (coverage)", rl(polychromic("coverage"))),
    ]


def train(task: Task, arm: Arm, steps: int, lr: float) -> list[dict[str, float]]:
    """Adam on θ with the arm's exact expected update (ascent); one record per step."""
    theta = np.zeros(task.answers)
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    history = []
    for step in range(steps + 1):
        pi = softmax(theta[None, :] + task.offsets)
        row = {"step": float(step), "distinct_per_correct": distinct_per_correct(task, pi)}
        row.update({f"pass@{k}": pass_at_k(task, pi, k) for k in CURVE_K})
        history.append(row)
        if step == steps:
            break
        grad = arm.update(pi).mean(axis=0)  # d logits_p / d θ = I; average over prompts
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * grad**2
        m_hat = m / (1 - beta1 ** (step + 1))
        v_hat = v / (1 - beta2 ** (step + 1))
        theta = theta + lr * m_hat / (np.sqrt(v_hat) + eps)
    return history


def plot(results: dict[str, list[dict[str, float]]], path: Path, k_large: int) -> None:
    """Three panels: pass@1 and pass@k_large over steps, and the sharpening metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(17, 4.0))
    for name, history in results.items():
        steps = [r["step"] for r in history]
        axes[0].plot(steps, [r["pass@1"] for r in history], label=name)
        axes[1].plot(steps, [r[f"pass@{k_large}"] for r in history], label=name)
        axes[2].plot(steps, [r["distinct_per_correct"] for r in history], label=name)
        final = history[-1]
        axes[3].plot(CURVE_K, [final[f"pass@{k}"] for k in CURVE_K], marker="o", label=name)
    start = next(iter(results.values()))[0]
    axes[3].plot(CURVE_K, [start[f"pass@{k}"] for k in CURVE_K], "k--", label="start (SFT)")
    axes[0].set_title("pass@1 over training")
    axes[1].set_title(f"pass@{k_large} over training")
    axes[2].set_title(f"distinct answers per correct sample (n={SHARPENING_SAMPLES})")
    axes[3].set_title("pass@k at the end")
    axes[3].set_xscale("log", base=2)
    axes[3].set_xlabel("k")
    for ax in axes[:3]:
        ax.set_xlabel("step")
    axes[3].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_csv(results: dict[str, list[dict[str, float]]], path: Path) -> None:
    """Every arm's record at every step, long format."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        keys = ["step", *(f"pass@{k}" for k in CURVE_K), "distinct_per_correct"]
        writer.writerow(["arm", *keys])
        for name, history in results.items():
            for row in history:
                writer.writerow([name, *(f"{row[key]:.6g}" for key in keys)])


def summarize(results: dict[str, list[dict[str, float]]], k_large: int) -> list[str]:
    """One line per arm: start → end of pass@1, pass@k_large and the sharpening metric."""
    lines = [f"{'arm':34s} {'pass@1':>15s} {f'pass@{k_large}':>15s} {'distinct/correct':>17s}"]
    for name, history in results.items():
        a, b = history[0], history[-1]
        lines.append(
            f"{name:34s} {a['pass@1']:.3f} → {b['pass@1']:.3f}  "
            f"{a[f'pass@{k_large}']:.3f} → {b[f'pass@{k_large}']:.3f}  "
            f"{a['distinct_per_correct']:.3f} → {b['distinct_per_correct']:.3f}")
    return lines


#: The set scores whose signal is compared with pass@1 RL's at the start, with their labels.
SCORED_SETS: tuple[tuple[str, SetScoreKind], ...] = (
    ("mean q × d", "polychromic"), ("correct diversity", "correct_diversity"),
    ("coverage", "coverage"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--n", type=int, default=4, help="samples per group (N)")
    parser.add_argument("--k", type=int, default=2, help="PKPO's k (≤ N)")
    parser.add_argument("--prompts", type=int, default=12)
    parser.add_argument("--answers", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k-large", type=int, default=16, help="the pass@k plotted over steps")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--robustness-seeds", type=int, default=0,
                        help="also train every arm on this many other random tasks and print "
                             "each arm's end-of-training pass@1 / pass@k_large (mean, min, max)")
    args = parser.parse_args(argv)

    task = make_task(args.prompts, args.answers, args.seed)
    arms = make_arms(task, args.n, args.k)
    results = {arm.name: train(task, arm, args.steps, args.lr) for arm in arms}
    theta0 = np.zeros(task.answers)
    differ = {name: agreement_fraction(task, args.n, grpo("group_std"), polychromic(score),
                                       theta0)
              for name, score in SCORED_SETS}
    args.out.mkdir(parents=True, exist_ok=True)
    plot(results, args.out / "mechanism.png", args.k_large)
    write_csv(results, args.out / "mechanism.csv")
    correct_per_prompt = task.correct.sum(axis=1)
    print(f"{task.prompts} prompts × {task.answers} answers; correct answers per prompt "
          f"{correct_per_prompt.min()}–{correct_per_prompt.max()}; N = {args.n}, "
          f"{args.steps} Adam steps at lr {args.lr}")
    print("\n".join(summarize(results, args.k_large)))
    for name, value in differ.items():
        print(f"groups whose polychromic ({name}) advantages differ from GRPO's at the start: "
              f"{value:.2f}")
    print(f"wrote {args.out / 'mechanism.png'} and {args.out / 'mechanism.csv'}")
    if args.robustness_seeds:
        seeds = range(args.seed + 1, args.seed + 1 + args.robustness_seeds)
        print("\n".join(robustness(seeds, args)))
    return 0


def robustness(seeds: Sequence[int], args: argparse.Namespace) -> list[str]:
    """Each arm's end-of-training change in pass@1 and pass@k_large over other random tasks,
    as mean [min, max] over the tasks: is the ordering of the figure a property of one task?"""
    k_large = args.k_large
    changes: dict[str, list[tuple[float, float, float]]] = {}
    for seed in seeds:
        task = make_task(args.prompts, args.answers, seed)
        for arm in make_arms(task, args.n, args.k):
            history = train(task, arm, args.steps, args.lr)
            a, b = history[0], history[-1]
            changes.setdefault(arm.name, []).append(
                (b["pass@1"] - a["pass@1"], b[f"pass@{k_large}"] - a[f"pass@{k_large}"],
                 b["distinct_per_correct"] - a["distinct_per_correct"]))
    lines = [f"change from the start over {len(seeds)} other tasks: mean [min, max]",
             f"{'arm':34s} {'Δ pass@1':>22s} {f'Δ pass@{k_large}':>22s} "
             f"{'Δ distinct/correct':>22s}"]
    for name, rows in changes.items():
        cells = []
        for column in zip(*rows, strict=True):
            cells.append(f"{np.mean(column):+.3f} [{min(column):+.3f}, {max(column):+.3f}]")
        lines.append(f"{name:34s} " + " ".join(f"{c:>22s}" for c in cells))
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
