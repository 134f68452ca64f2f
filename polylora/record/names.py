"""The names of the run record: every file, artifact, tag and metric name a run writes, the
tracking store's default URI, and the one metric-name normalizer.

Writers (:mod:`polylora.record.writer`) and readers (:mod:`polylora.record.reader`) both use
these names, so a run is read back by what was written, never by guessing spellings. Nothing
outside ``polylora/record/`` spells a recorded name (``tests/record/test_names.py`` checks).
A metric's own name (``pass@k``, ``accuracy``) is declared by the metric registry
(:mod:`polylora.metrics.builtin`); this module declares the split prefixes that make it a
recorded name (:func:`eval_metric`: ``eval/pass_at_10``).
Import-light on purpose: no MLflow, no torch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

#: The config default of ``tracking.uri`` and what readers fall back to.
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
#: The environment variable readers and MLflow take the store from.
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
CHECKPOINT_DIR = "checkpoints"  # the Trainer's checkpoints

# --- artifact folders and paths -----------------------------------------------------------------
EVAL_ARTIFACTS = "eval"  # artifact folder of the test subset's files
VAL_ARTIFACTS = "val"  # artifact folder of the validation subset's files
ADAPTER_ARTIFACTS = "adapter"  # artifact folder of the trained adapter
CLUSTERS_ARTIFACTS = "clusters"  # a clustering run's assignments and summary
#: The test subset's generations, as an artifact.
GENERATIONS_ARTIFACT = f"{EVAL_ARTIFACTS}/{GENERATIONS_FILE}"
SAMPLES_TABLE_ARTIFACT = f"{EVAL_ARTIFACTS}/samples.json"  # a few generations as an MLflow table

# --- tags -----------------------------------------------------------------------------------------
EXPERIMENT_TAG = "polylora.experiment"  # the config's experiment name
GROUP_TAG = "polylora.group"  # runs that differ by seed only
#: The objective's config name (``ce``, ``polychromic``, ...: a file of conf/objective/).
OBJECTIVE_TAG = "polylora.objective"
SEED_TAG = "polylora.seed"  # the training seed
CHECKPOINT_TAG = "polylora.checkpoint"  # which weights were evaluated: final, best
OUTPUT_DIR_TAG = "polylora.output_dir"  # the run's output folder
OVERRIDES_TAG = "polylora.overrides"  # the Hydra overrides of the command line
PARTITION_TAG = "polylora.partition"  # <field>=<value> of a per-cluster adapter
#: The small-data bucket of the training split's size.
DATASET_SIZE_BUCKET_TAG = "polylora.dataset_size_bucket"
#: Eval metrics the data cannot score, comma-separated.
METRICS_LEFT_OUT_TAG = "polylora.metrics_left_out"
GIT_COMMIT_TAG = "mlflow.source.git.commit"  # MLflow's tag for the code's commit
KIND_TAG = "polylora.kind"  # what a run that is not a training run is
COMPARISON_KIND = "comparison"  # a polylora compare run
ROLE_TAG = "polylora.role"  # a run's part in a sweep
SWEEP_ROLE = "sweep"  # a sweep's parent run
TRIAL_TAG = "polylora.trial"  # a sweep trial's number (its run is the parent's child)
STUDY_TAG = "polylora.study"  # the Optuna study a sweep trial belongs to
#: ``PRUNED`` on a trial's run that the sweep's pruner stopped (the run ends KILLED).
TRIAL_STATE_TAG = "polylora.trial_state"
PRUNED_STEP_TAG = "polylora.pruned_step"  # the training step it was pruned at
MERGE_TAG = "polylora.merge"  # the merge method of a merged / routed run
MERGE_SOURCES_TAG = "polylora.merge.sources"  # the adapters merged, comma-separated
MERGE_WEIGHTS_TAG = "polylora.merge.weights"  # their weights
MERGE_DENSITY_TAG = "polylora.merge.density"  # the density of a TIES / DARE merge
MERGE_K_TAG = "polylora.merge.k"  # how many adapters a router picks
MERGE_WEIGHTING_TAG = "polylora.merge.weighting"  # how a router weighs the picked adapters
ENSEMBLE_MEMBER_RUNS_TAG = "polylora.ensemble.member_runs"  # the runs an ensemble mixes
CLUSTERING_KIND = "clustering"  # polylora.kind of a ``polylora.cli.cluster`` run
CLUSTER_FIELD_TAG = "polylora.cluster.field"  # the record field a clustering run writes
CLUSTER_K_TAG = "polylora.cluster.k"  # how many clusters it made
BASELINE_TAG = "polylora.baseline"  # the baseline group of a comparison run
COMPARED_GROUPS_TAG = "polylora.compared_groups"  # a comparison's groups, comma-separated
COMPARED_RUNS_TAG = "polylora.compared_runs"  # the run ids a comparison read
N_TRIALS_TAG = "polylora.n_trials"  # trials a sweep asked for (on its parent run)
SWEEP_DIR_TAG = "polylora.sweep_dir"  # the sweep's output folder (on its parent run)
BEST_TRIAL_TAG = "polylora.best_trial"  # the best trial's number (on the parent run)
PARETO_TRIALS_TAG = "polylora.pareto_trials"  # a multi-objective sweep's Pareto front
BEST_PARAM_TAG_PREFIX = "best_param."  # best_param.<name>: the best trial's value of <name>
#: The headline launch a run belongs to (``launchers/headline.py`` tags every run it starts).
LAUNCH_TAG = "polylora.launch"
STAGE_TAG = "polylora.stage"  # the stage of a headline launch that started the run
HOST_TAG = "polylora.host"  # the machine a run ran on, when its launcher recorded it
#: ``polylora.warning.<kind>=step N``: a training monitor fired (diversity collapse, ...).
WARNING_TAG_PREFIX = "polylora.warning."
#: ``polylora.<key>``: a provenance tag (``code.commit``, ``version.torch``, ``precision``...).
PROVENANCE_TAG_PREFIX = "polylora."

# --- MLflow's own tags ----------------------------------------------------------------------------
PARENT_TAG = "mlflow.parentRunId"  # makes a run a child of a sweep's parent run
RUN_NAME_TAG = "mlflow.runName"  # the run's name in the MLflow UI
NOTE_TAG = "mlflow.note.content"  # the run's description in the MLflow UI
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # an experiment tag the MLflow UI reads

# --- params read back -----------------------------------------------------------------------------
SEED_PARAM = "seed"  # the config's seed (runs older than the polylora.seed tag)
OBJECTIVE_TARGET_PARAM = "objective._target_"  # the objective's class (older runs)
# A sweep parent run's params (besides its search space):
SWEEP_METRIC_PARAM = "sweep.optimized_metric"  # the metric(s) optimized, comma-separated
SWEEP_DIRECTION_PARAM = "sweep.direction"  # minimize / maximize, one per metric
SWEEP_STORAGE_PARAM = "sweep.storage"  # the Optuna storage URL (secrets redacted)
SWEEP_SAMPLER_PARAM = "sweep.sampler"  # the Optuna sampler's class name
SWEEP_STUDY_PARAM = "sweep.study_name"  # the Optuna study

# --- Optuna study and trial user attributes -------------------------------------------------------
#: Study attribute: the sweep's MLflow parent run id (a resumed sweep reuses it).
PARENT_ATTR = "polylora.parent_run_id"
SWEEPER_ATTR = "polylora.sweeper"  # study attribute: polylora sweepers drive the study
ERROR_ATTR = "polylora.error"  # trial attribute: the one-line error of a failed trial

# --- metrics --------------------------------------------------------------------------------------
#: The validation loss curve; its last point is the final validation loss.
VAL_LOSS = "eval/loss"
VAL_PERPLEXITY = "eval/perplexity"  # exp of the validation loss
TEST_LOSS = "eval/test_loss"  # the fixed test subset's reference loss
TEST_PERPLEXITY = "eval/test_perplexity"  # exp of the test subset's reference loss
TRAIN_FINAL_LOSS = "train/final_loss"  # the training loss of the last step
TRAIN_STEPS = "train/steps"  # optimizer steps trained
TRAIN_EVALUATED_STEP = "train/evaluated_step"  # the step of the weights evaluated
TRAIN_WALL_TIME = "train/wall_time_s"  # seconds spent training
TRAIN_BEST_EVAL_LOSS = "train/best_eval_loss"  # the lowest point of the validation loss curve
RUN_WALL_TIME = "run/wall_time_s"  # seconds the whole run took
RUN_PEAK_RSS = "run/peak_rss_mb"  # the process's peak resident memory, MiB
TRAINABLE_PARAMS = "model/trainable_params"  # parameters the adapter trains
TOTAL_PARAMS = "model/total_params"  # parameters of the model with its adapter
DATA_TOTAL = "data/total"  # examples loaded, before splitting
TRAIN_LOSS = "train/loss"  # the training loss curve (the objective's loss)
TRAIN_EVAL_GAP = "train/eval_gap"  # validation loss minus the last training loss
TRAIN_EPOCH = "train/epoch"  # the Trainer's fractional epoch
TRAIN_TOKENS_PER_S = "train/tokens_per_s"  # input tokens per second of training
TRAIN_TOKENS = "train/tokens"  # input tokens the Trainer counted
GENERATION_TOKENS_PER_S = "generation/tokens_per_s"  # sampled tokens per second
GENERATION_TOKENS = "generation/tokens"  # completion tokens sampled in this process
RUN_COST = "run/cost_usd"  # compute plus judge
COMPUTE_COST = "run/compute_cost_usd"  # wall time at the hardware's price per hour
JUDGE_COST = "judge/cost_usd"  # what the LLM judge's calls cost
JUDGE_PREFIX = "judge/"  # the LLM judge's verdict rates and counts
JUDGE_WIN_RATE = "judge/win_rate"  # candidate (B) over baseline (A), ties count half
JUDGE_B_WIN_RATE = "judge/b_win_rate"  # share of valid verdicts B won
JUDGE_A_WIN_RATE = "judge/a_win_rate"  # share of valid verdicts A won
JUDGE_TIE_RATE = "judge/tie_rate"  # share of valid verdicts tied
JUDGE_INVALID_RATE = "judge/invalid_rate"  # share of verdicts that could not be parsed
JUDGE_FIRST_POSITION_WIN_RATE = "judge/first_position_win_rate"  # position bias check
JUDGE_N_COMPARED = "judge/n_compared"  # pairs judged
JUDGE_N_SKIPPED = "judge/n_skipped"  # pairs left out (missing or identical texts)
JUDGE_CALLS_MADE = "judge/calls_made"  # API calls made
JUDGE_CALLS_CACHED = "judge/calls_cached"  # verdicts read from the cache
JUDGE_ESTIMATED_COST = "judge/estimated_cost_usd"  # the cost estimated before calling
ROUTE_SHARE_PREFIX = "merge/route_share/"  # merge/route_share/<adapter>: prompts routed to it
TRAIN_PREFIX = "train/"  # training metrics
EVAL_PREFIX = "eval/"  # test-subset metrics (and the validation loss curve)
VAL_PREFIX = "val/"  # validation-subset metrics
DATA_PREFIX = "data/"  # split sizes and truncation
MOE_SUFFIX = "_moe"  # a metric's margin of error
COMPARE_N_RUNS = "compare/n_runs"  # runs a comparison read
COMPARE_N_GROUPS = "compare/n_groups"  # groups it compared
CLUSTER_MIN_SIZE = "cluster/min_size"  # the smallest cluster's size
CLUSTER_SILHOUETTE = "cluster/silhouette"  # the clustering's silhouette score
BEST_VALUE = "best_value"  # a single-objective sweep's best value (on its parent run)
STUDY_STEPS = "study/steps"  # training steps of all the sweep's trials
STUDY_COST = "study/cost_usd"  # what all the sweep's trials cost
#: The study's cost per trial that ran to the end.
STUDY_COST_PER_FINISHED_TRIAL = "study/cost_per_finished_trial_usd"
STUDY_TRAIN_TOKENS_PER_S = "study/train_tokens_per_s"  # tokens/s over all trials' training


def train_metric(key: str) -> str:
    """``train/<key>``: a Trainer log value (``learning_rate``, ``grad_norm``, ``epoch``)."""
    return f"{TRAIN_PREFIX}{key}"


def eval_metric(name: str) -> str:
    """``eval/<name>``: a registry metric computed on the test subset, as MLflow spells it."""
    return EVAL_PREFIX + mlflow_metric_name(name)


def peak_rss_after_metric(phase: str) -> str:
    """``run/peak_rss_mb_after_<phase>``: the running peak memory after ``load``, ``train``..."""
    return f"{RUN_PEAK_RSS}_after_{phase}"


def truncated_metric(split: str) -> str:
    """``data/truncated_<split>``: examples longer than ``data.max_length``."""
    return f"{DATA_PREFIX}truncated_{split}"


def prompt_tokens_lost_metric(split: str) -> str:
    """``data/prompt_tokens_lost_<split>``: prompt tokens truncation cut."""
    return f"{DATA_PREFIX}prompt_tokens_lost_{split}"


def response_tokens_lost_metric(split: str) -> str:
    """``data/response_tokens_lost_<split>``: response tokens truncation cut."""
    return f"{DATA_PREFIX}response_tokens_lost_{split}"


def cluster_size_metric(index: int) -> str:
    """``cluster/size_<i>``: how many texts cluster ``i`` holds."""
    return f"cluster/size_{index}"


def study_trials_metric(state: str) -> str:
    """``study/trials_<state>``: how many of a sweep's trials ended in Optuna state ``state``."""
    return f"study/trials_{state.lower()}"


def trials_metric(state: str) -> str:
    """``trials/<state>``: the parent run's count of trials in Optuna state ``state``."""
    return f"trials/{state.lower()}"


def best_metric(name: str) -> str:
    """``best/<name>``: a multi-objective sweep's best value of metric ``name``."""
    return f"best/{mlflow_metric_name(name)}"


def best_param_tag(name: str) -> str:
    """``best_param.<name>``: the best trial's value of search parameter ``name``."""
    return f"{BEST_PARAM_TAG_PREFIX}{name}"


def warning_tag(kind: str) -> str:
    """``polylora.warning.<kind>``: the tag a training monitor's warning sets."""
    return f"{WARNING_TAG_PREFIX}{kind}"


def provenance_tag(key: str) -> str:
    """``polylora.<key>``: the tag of provenance entry ``key`` (``code.commit``, ...)."""
    return f"{PROVENANCE_TAG_PREFIX}{key}"


def data_size_metric(split: str) -> str:
    """``data/<split>``: how many examples a split has (``train``, ``validation``, ``test``)."""
    return f"{DATA_PREFIX}{split}"


def data_groups_metric(split: str) -> str:
    """``data/groups_<split>``: how many groups a split has."""
    return f"{DATA_PREFIX}groups_{split}"


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
# Share of the step's groups whose advantages point another way than pass@1 RL's (GRPO's
# std-scaled advantages on the same 0/1 rewards): where it is 0 the two arms train alike.
TRAIN_DIFFERS_FROM_PASS1 = "train/differs_from_pass1"
