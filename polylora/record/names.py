"""The names of the run record: every file, artifact, tag and metric name a run writes, the
tracking store's default URI, and the one metric-name normalizer.

Writers (:mod:`polylora.record.writer`) and readers (:mod:`polylora.record.reader`) both use
these names, so a run is read back by what was written, never by guessing spellings.
Import-light on purpose: no MLflow, no torch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

#: The config default of ``tracking.uri`` and what readers fall back to.
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"

# --- files in a run's output_dir ---------------------------------------------------------------
CONFIG_FILE = "config.yaml"  # the resolved config, secrets redacted (also an artifact)
METRICS_FILE = "metrics.json"  # every final metric, sorted by name
GENERATIONS_FILE = "generations.jsonl"  # one row per test prompt (artifact eval/)
VAL_GENERATIONS_FILE = "val_generations.jsonl"  # the same for the validation subset (val/)
JUDGE_FILE = "judge.jsonl"  # the LLM judge's verdicts (artifact eval/)
SPLIT_REPORT_FILE = "split_report.json"  # split sizes, groups, leakage checks
PASSK_PLOT_FILE = "passk.png"  # pass@k against k (artifact eval/)
RUN_ID_FILE = "mlflow_run_id.txt"  # the MLflow run id, for resuming the same run
ADAPTER_DIR = "adapter"  # the trained adapter (PEFT format; artifact adapter/)
CHECKPOINT_DIR = "checkpoints"

# --- artifact folders and paths -----------------------------------------------------------------
EVAL_ARTIFACTS = "eval"
VAL_ARTIFACTS = "val"
ADAPTER_ARTIFACTS = "adapter"
GENERATIONS_ARTIFACT = f"{EVAL_ARTIFACTS}/{GENERATIONS_FILE}"
SAMPLES_TABLE_ARTIFACT = f"{EVAL_ARTIFACTS}/samples.json"

# --- tags -----------------------------------------------------------------------------------------
EXPERIMENT_TAG = "polylora.experiment"
GROUP_TAG = "polylora.group"  # runs that differ by seed only
#: The objective's config name (``ce``, ``polychromic``, ...: a file of conf/objective/).
OBJECTIVE_TAG = "polylora.objective"
SEED_TAG = "polylora.seed"
CHECKPOINT_TAG = "polylora.checkpoint"
OUTPUT_DIR_TAG = "polylora.output_dir"
OVERRIDES_TAG = "polylora.overrides"
PARTITION_TAG = "polylora.partition"  # <field>=<value> of a per-cluster adapter
DATASET_SIZE_BUCKET_TAG = "polylora.dataset_size_bucket"
METRICS_LEFT_OUT_TAG = "polylora.metrics_left_out"
GIT_COMMIT_TAG = "mlflow.source.git.commit"
KIND_TAG = "polylora.kind"
COMPARISON_KIND = "comparison"  # a polylora compare run
ROLE_TAG = "polylora.role"
SWEEP_ROLE = "sweep"  # a sweep's parent run
TRIAL_TAG = "polylora.trial"  # a sweep trial's number (its run is the parent's child)
STUDY_TAG = "polylora.study"  # the Optuna study a sweep trial belongs to
#: ``PRUNED`` on a trial's run that the sweep's pruner stopped (the run ends KILLED).
TRIAL_STATE_TAG = "polylora.trial_state"
PRUNED_STEP_TAG = "polylora.pruned_step"  # the training step it was pruned at
MERGE_TAG = "polylora.merge"  # the merge method of a merged / routed run
MERGE_SOURCES_TAG = "polylora.merge.sources"
MERGE_WEIGHTS_TAG = "polylora.merge.weights"
MERGE_DENSITY_TAG = "polylora.merge.density"
MERGE_K_TAG = "polylora.merge.k"
MERGE_WEIGHTING_TAG = "polylora.merge.weighting"

# --- metrics --------------------------------------------------------------------------------------
#: The validation loss curve; its last point is the final validation loss.
VAL_LOSS = "eval/loss"
VAL_PERPLEXITY = "eval/perplexity"
TEST_LOSS = "eval/test_loss"  # the fixed test subset's reference loss
TEST_PERPLEXITY = "eval/test_perplexity"
TRAIN_FINAL_LOSS = "train/final_loss"
TRAIN_STEPS = "train/steps"
TRAIN_EVALUATED_STEP = "train/evaluated_step"
TRAIN_WALL_TIME = "train/wall_time_s"
TRAIN_BEST_EVAL_LOSS = "train/best_eval_loss"
RUN_WALL_TIME = "run/wall_time_s"
RUN_PEAK_RSS = "run/peak_rss_mb"
TRAINABLE_PARAMS = "model/trainable_params"
TOTAL_PARAMS = "model/total_params"
DATA_TOTAL = "data/total"
ROUTE_SHARE_PREFIX = "merge/route_share/"
EVAL_PREFIX = "eval/"
VAL_PREFIX = "val/"
MOE_SUFFIX = "_moe"  # a metric's margin of error


def data_size_metric(split: str) -> str:
    """``data/<split>``: how many examples a split has (``train``, ``validation``, ``test``)."""
    return f"data/{split}"


def data_groups_metric(split: str) -> str:
    """``data/groups_<split>``: how many groups a split has."""
    return f"data/groups_{split}"


#: The size of the training split, as the pipeline logs it.
TRAIN_SIZE = data_size_metric("train")

_SPLIT_PREFIX = re.compile(r"^(?:eval|val|test)/")
_AT_K_MLFLOW = re.compile(r"_at_([0-9]+)$")


def canonical_metric(name: str) -> str:
    """The registry spelling of a metric name, the only normalizer: ``eval/pass_at_10`` →
    ``pass@10`` (MLflow rejects ``@``), ``val/accuracy`` → ``accuracy`` (split prefixes
    ``eval/``, ``val/``, ``test/`` dropped); other names (``train/steps``) are kept."""
    key = _SPLIT_PREFIX.sub("", name.strip())
    return _AT_K_MLFLOW.sub(r"@\1", key)


def mlflow_metric_name(name: str) -> str:
    """MLflow's spelling of a metric name: it rejects '@', so ``pass@k`` is ``pass_at_k``."""
    return re.sub(r"[^\w\-./ :]", "_", name.replace("@", "_at_"))


# --- which split an optimized metric is scored on ------------------------------------------


def optimized_metrics(value: Any) -> list[str]:
    """``optimized_metric`` as a list: one name, or a list of names (a multi-objective sweep,
    e.g. ``+hparams_search=pareto``). Raises ConfigError for anything else."""
    from polylora.errors import ConfigError

    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(
        f"optimized_metric must be a metric name or a list of names, got {value!r}"
    )


#: Names of the validation loss curve (early stopping's metric): validation, not test.
VALIDATION_LOSS = ("eval/loss", "eval/perplexity", "val/loss", "val/perplexity")


def metric_split(name: str) -> str:
    """Which split ``optimized_metric`` is computed on: ``"validation"`` (``val/<metric>``:
    the fixed validation eval subset; ``eval/loss``: the validation loss curve), ``"train"``
    (``train/...``) or ``"test"`` (``eval/<metric>`` or a bare name: the final evaluation)."""
    n = name.strip()
    if n.startswith("train/"):
        return "train"
    if n.startswith("val/") or n in VALIDATION_LOSS:
        return "validation"
    return "test"


def validation_name(name: str) -> str:
    """The validation counterpart of a test metric: ``eval/pass_at_10`` → ``val/pass@10``."""
    key = canonical_metric(name)
    return {"test_loss": "val/loss", "test_perplexity": "val/perplexity"}.get(key, f"val/{key}")


def study_name(experiment: str, search: str | None) -> str:
    """``smoke`` + ``lr`` → ``smoke-lr``: one study per (experiment, search)."""
    return f"{experiment}-{search}" if search else f"{experiment}-sweep"


# --- objective metrics (train/...) ---------------------------------------------------------------
# What the RL objectives (polylora/objectives/) log per training step.
TRAIN_QUALITY_LOSS = "train/quality_loss"  # the CE term (before ce_weight)
TRAIN_COMBINED_LOSS = "train/combined_loss"  # ce_weight·CE + λ·PG + β·KL
TRAIN_PG_LOSS = "train/pg_loss"  # the policy-gradient term (before λ)
TRAIN_KL = "train/kl"  # the KL estimate to the base model, nats per sample
TRAIN_KL_LOSS = "train/kl_loss"  # the KL surrogate term (before β)
TRAIN_DIVERSITY_SCORE = "train/diversity_score"  # mean diversity of the sampled sets
TRAIN_SAMPLE_QUALITY = "train/sample_quality"  # mean quality (reward) of the samples
TRAIN_ADVANTAGE_ABS = "train/advantage_abs"  # mean |advantage| after advantage_norm
TRAIN_NO_SIGNAL = "train/no_signal"  # 1 when every raw advantage of the step was 0
TRAIN_SAMPLE_TOKENS = "train/sample_tokens"  # mean tokens per sample
TRAIN_GENERATION_TIME = "train/generation_time_s"
TRAIN_SCORING_TIME = "train/scoring_time_s"
TRAIN_LEARNING_TIME = "train/learning_time_s"  # the teacher-forced passes of the step
TRAIN_SAMPLE_PASS_AT_K = "train/sample_pass_at_k"  # passk: mean pass@k of the sampled sets
TRAIN_SET_SCORE = "train/set_score"  # polychromic: mean set score f(S)


# --- launches -------------------------------------------------------------------------------------
#: The id of the launch (one ``launchers/headline.py`` invocation) a run belongs to: reports
#: select a launch's runs by it, so earlier launches into the same experiment never mix in.
LAUNCH_TAG = "polylora.launch"
