"""Static merges of LoRA adapters through PEFT's ``add_weighted_adapter``: one adapter out,
saved in PEFT format.

``cat`` is exact (the merged update is ``Σ wᵢ·ΔWᵢ``, rank = sum of ranks); ``linear`` mixes
the A and B factors separately (rank kept, needs equal ranks; exact only when one weight is
non-zero); ``ties``/``dare_*`` prune with ``density`` first."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from polylora.adapters.sources import AdapterSource, load_sources, model_identity
from polylora.errors import ConfigError

PEFT_METHODS: tuple[str, ...] = ("linear", "ties", "dare_linear", "dare_ties", "cat")
METHODS: tuple[str, ...] = (*PEFT_METHODS, "sparse_topk")
#: PEFT combines these factor-wise, so every adapter must have the same rank.
EQUAL_RANK_METHODS: frozenset[str] = frozenset({"linear", "ties", "dare_linear", "dare_ties"})
DENSITY_METHODS: frozenset[str] = frozenset({"ties", "dare_linear", "dare_ties"})

MERGED_NAME = "default"  # saved at the root of --out (PEFT puts other names in subfolders)
MERGE_INFO_FILE = "polylora_merge.json"

def check_compatible(
    sources: Sequence[AdapterSource], method: str, base_model_cfg: Any | None = None
) -> None:
    """Raise ConfigError unless the adapters can be combined with ``method`` on one base model.

    Checks the recorded base models agree (with each other and with ``base_model_cfg`` when
    given) and, for the factor-wise methods, that all ranks are equal.
    """
    if method not in METHODS:
        raise ConfigError(f"--method {method!r} is unknown; use one of {', '.join(METHODS)}")
    known = [(s.ref, s.base_identity()) for s in sources]
    known_ids: list[tuple[str, dict[str, Any]]] = [
        (ref, ident) for ref, ident in known if ident is not None
    ]
    if base_model_cfg is not None:
        known_ids.insert(0, ("the base model (--base/--evaluate)", model_identity(base_model_cfg)))
    # Compare what both sides recorded (a run's model config, or PEFT's base model name);
    # adapters recording neither are checked by loading them (shapes must fit).
    for i, (first_ref, first) in enumerate(known_ids):
        for ref, ident in known_ids[i + 1 :]:
            diff = sorted(k for k in set(first) & set(ident) if first[k] != ident[k])
            if diff:
                detail = ", ".join(f"{k}: {first[k]!r} vs {ident[k]!r}" for k in diff)
                raise ConfigError(
                    f"adapters come from different base models: {first_ref} and {ref} differ "
                    f"in {detail}; merge only adapters trained on the same base model"
                )
    if method in EQUAL_RANK_METHODS:
        ranks = {s.ref: s.rank for s in sources}
        if len(set(ranks.values())) > 1:
            listed = ", ".join(f"{ref} (r={r})" for ref, r in ranks.items())
            raise ConfigError(
                f"--method {method} needs adapters of equal LoRA rank, got {listed}; "
                "use --method cat (or sparse_topk), which accepts different ranks"
            )


def parse_weights(text: str | None, n: int) -> list[float]:
    """``"0.7,0.3"`` → ``[0.7, 0.3]``; one finite weight per adapter; default ``1/n`` each."""
    if text is None:
        return [1.0 / n] * n
    parts = [p.strip() for p in text.split(",")]
    try:
        weights = [float(p) for p in parts]
    except ValueError:
        raise ConfigError(
            f"--weights {text!r} is not a comma-separated list of numbers, e.g. 0.5,0.5"
        ) from None
    if len(weights) != n:
        raise ConfigError(
            f"--weights has {len(weights)} value(s) for {n} adapter(s); give one weight per "
            "adapter, in the same order"
        )
    if not all(math.isfinite(w) for w in weights):
        raise ConfigError(f"--weights must be finite numbers, got {text!r}")
    return weights

def merge_loaded(
    peft_model: Any,
    names: Sequence[str],
    weights: Sequence[float],
    method: str,
    density: float | None = None,
    seed: int = 0,
) -> Any:
    """Add the weighted combination of ``names`` as the active adapter ``default``."""
    import torch

    if method not in PEFT_METHODS:
        raise ConfigError(f"--method {method} is not a static merge; use one of {PEFT_METHODS}")
    kwargs: dict[str, Any] = {}
    if method in DENSITY_METHODS:
        kwargs["density"] = density
    if MERGED_NAME in peft_model.peft_config:
        peft_model.delete_adapter(MERGED_NAME)
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # DARE drops parameters at random
        try:
            peft_model.add_weighted_adapter(
                adapters=list(names),
                weights=list(weights),
                adapter_name=MERGED_NAME,
                combination_type=method,
                **kwargs,
            )
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"PEFT cannot merge these adapters with {method}: {exc}") from None
    peft_model.set_adapter(MERGED_NAME)
    peft_model.eval()
    return peft_model


def merge_adapters(
    sources: Sequence[AdapterSource],
    model_cfg: DictConfig,
    hardware_cfg: DictConfig,
    method: str,
    weights: Sequence[float],
    out_dir: str | Path,
    density: float | None = None,
    seed: int = 0,
) -> Path:
    """Load the base model, merge the adapters and save the result (PEFT format) to out_dir."""
    from polylora.model.loading import load_base_model

    check_compatible(sources, method, model_cfg)
    check_density(method, density)
    model, _ = load_base_model(model_cfg, hardware_cfg)
    peft_model, names = load_sources(model, sources)
    merge_loaded(peft_model, names, weights, method, density, seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(out, selected_adapters=[MERGED_NAME])
    info = {
        "method": method,
        "sources": [s.ref for s in sources],
        "weights": list(weights),
        "density": density,
        "seed": seed,
        "model": OmegaConf.to_container(model_cfg, resolve=True),
    }
    (out / MERGE_INFO_FILE).write_text(json.dumps(info, indent=2, default=str))
    return out


def check_density(method: str, density: float | None) -> None:
    """Raise ConfigError unless a pruning merge has a density in (0, 1]."""
    if method in DENSITY_METHODS:
        if density is None:
            raise ConfigError(
                f"--method {method} needs --density (the fraction of each adapter's weights "
                "kept, in (0, 1]), e.g. --density 0.5"
            )
        if not 0.0 < density <= 1.0:
            raise ConfigError(f"--density must be in (0, 1], got {density}")
