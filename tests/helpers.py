"""Helpers shared by tests (importable; conftest.py holds the fixtures)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "polylora" / "conf"


def runs_of(cfg: object) -> list[object]:
    """All MLflow runs of the config's tracking experiment."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=cfg.tracking.uri)  # type: ignore[attr-defined]
    exp = client.get_experiment_by_name(cfg.tracking.experiment)  # type: ignore[attr-defined]
    return [] if exp is None else client.search_runs([exp.experiment_id])


def tiny_configs() -> tuple[object, object, object]:
    """(model, hardware, lora) configs for the tiny random model on CPU, as test defaults."""
    from omegaconf import OmegaConf

    model = OmegaConf.create(
        {
            "source": "tiny_random",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_layers": 2,
            "num_heads": 4,
            "num_kv_heads": 2,
            "init_seed": 0,
            "trust_remote_code": False,
        }
    )
    hardware = OmegaConf.create(
        {
            "device": "cpu",
            "precision": "fp32",
            "load_in_4bit": False,
            "gradient_checkpointing": False,
        }
    )
    lora = OmegaConf.create(
        {
            "rank": 4,
            "alpha": 8.0,
            "alpha_ratio": None,
            "dropout": 0.0,
            "target_modules": "all-linear",
            "bias": "none",
        }
    )
    return model, hardware, lora


def jail_or_skip() -> None:
    """Skip a test that needs the code jail where it cannot be built (the reason names what
    to install); fail instead under ``POLYLORA_REQUIRE_JAIL=1`` (CI)."""
    import os

    import pytest

    from polylora.metrics.sandbox import jail_problem

    problem = jail_problem()
    if problem is None:
        return
    if os.environ.get("POLYLORA_REQUIRE_JAIL") == "1":
        pytest.fail(problem)
    pytest.skip(f"no jail here: {problem}")


#: A prompt of the words data, for comparing logits.
PROMPT = "Name an English word that starts with 'b' and has 5 letters."
#: The smoke evaluation without its embedding-based metrics (faster; the names still match).
CHEAP_EVAL = "eval.metrics=[test_loss,accuracy,sample_accuracy,pass@1,pass@2] eval.ks=[1,2]"


def make_adapter(
    cfg: object, run_dir: Path, seed: int, rank: int = 4, model_overrides: object = None
) -> Path:
    """A tiny LoRA adapter with random (non-zero) A and B, saved like a pipeline run does:
    ``<run_dir>/adapter`` plus the run's ``<run_dir>/config.yaml``."""
    import torch
    from omegaconf import OmegaConf

    from polylora.model import loading as models

    run_cfg = OmegaConf.merge(cfg, {"model": model_overrides or {}, "lora": {"rank": rank}})
    base, _ = models.load_base_model(run_cfg.model, run_cfg.hardware)
    # alpha != rank so the merge must carry each adapter's scaling (alpha / r) correctly
    lora = OmegaConf.merge(run_cfg.lora, {"alpha": 2.0 * rank, "dropout": 0.0})
    peft_model = models.wrap_lora(base, lora, run_cfg.hardware)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.3)
    run_dir.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(run_dir / "adapter")
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(run_cfg, resolve=True))
    return run_dir / "adapter"


def tiny_adapter_set(root: Path) -> tuple[object, dict[str, Path]]:
    """The smoke config and four adapters: a, b (rank 4), wide (rank 8), other_base (rank 4
    but trained on a differently initialized tiny model)."""
    from polylora.config.compose import compose_config

    cfg = compose_config(["+experiment=smoke"], root / "unused")
    adapters = {
        "a": make_adapter(cfg, root / "a", seed=1),
        "b": make_adapter(cfg, root / "b", seed=2),
        "wide": make_adapter(cfg, root / "wide", seed=3, rank=8),
        "other_base": make_adapter(cfg, root / "other", seed=4, model_overrides={"init_seed": 7}),
    }
    return cfg, adapters


def package_sources(skip: tuple[str, ...] = ()) -> list[tuple[str, Path]]:
    """``(path relative to the repository, path)`` of every module under ``polylora/``, except
    those under a prefix in ``skip``."""
    left_out = skip
    out = []
    for path in sorted((REPO / "polylora").rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if not rel.startswith(left_out):
            out.append((rel, path))
    return out
