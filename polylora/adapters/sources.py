"""The adapters a merge or a routed mixture combines: where each came from, its PEFT config,
the config of the run that trained it, the base model it belongs to, and loading them all onto
one base model."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from polylora.errors import ConfigError, DataError, PolyloraError
from polylora.record import names

log = logging.getLogger(__name__)

# Fields of the `model` config that identify a base model's weights (tiny_random builds them
# from the architecture and init seed; the others load name/path).
_BASE_KEYS = (
    "source",
    "path",
    "hidden_size",
    "intermediate_size",
    "num_layers",
    "num_heads",
    "num_kv_heads",
    "init_seed",
)

@dataclass
class AdapterSource:
    """One adapter to merge: where it came from, its PEFT config and its run's config."""

    ref: str
    path: Path
    adapter_config: dict[str, Any]
    run_config: dict[str, Any] | None = None

    @property
    def rank(self) -> int:
        """The adapter's LoRA rank (the largest, with a rank pattern)."""
        ranks = [int(self.adapter_config.get("r", 0))]
        ranks += [int(v) for v in (self.adapter_config.get("rank_pattern") or {}).values()]
        return max(ranks)

    def base_identity(self) -> dict[str, Any] | None:
        """What identifies the base model this adapter was trained on, when recorded."""
        model = (self.run_config or {}).get("model")
        if isinstance(model, dict):
            return model_identity(model)
        name = self.adapter_config.get("base_model_name_or_path")
        return {"base_model_name_or_path": name} if name else None


def model_identity(model_cfg: Any) -> dict[str, Any]:
    """The base-model fields of a ``model`` config that must agree between adapters."""
    if isinstance(model_cfg, DictConfig):
        model_cfg = OmegaConf.to_container(model_cfg, resolve=True)
    source = model_cfg.get("source")
    keys = _BASE_KEYS if source == "tiny_random" else ("source", "path")
    identity = {key: model_cfg.get(key) for key in keys}
    if source == "smollm2_gguf":
        identity["path"] = "SmolLM2-135M-Instruct"
    return identity


def _run_config(ref: str, path: Path) -> dict[str, Any] | None:
    """The resolved config of the run that trained the adapter, if it can be found.

    A pipeline run writes ``<output_dir>/config.yaml`` next to ``<output_dir>/adapter`` and
    logs it as an artifact, so ``runs:/<id>/adapter`` has ``runs:/<id>/config.yaml``.
    """
    import yaml

    candidate = path.parent / names.CONFIG_FILE
    if not candidate.is_file() and ref.startswith("runs:/"):
        run_id = ref[len("runs:/") :].split("/", 1)[0]
        try:
            from polylora.record.reader import download_artifact

            candidate = download_artifact(artifact_uri=f"runs:/{run_id}/{names.CONFIG_FILE}")
        except Exception:  # no config artifact: the base is then checked by loading only
            return None
    if not candidate.is_file():
        return None
    try:
        loaded = yaml.safe_load(candidate.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return None
    return loaded if isinstance(loaded, dict) else None


def resolve_sources(refs: Sequence[str]) -> list[AdapterSource]:
    """Resolve adapter folders / ``runs:/<id>/adapter`` URIs and read their configs."""
    from polylora.model.loading import check_adapter_folder
    from polylora.record.reader import resolve_adapter

    sources = []
    for ref in refs:
        path = check_adapter_folder(resolve_adapter(ref), ref)
        config_file = path / "adapter_config.json"
        try:
            adapter_config = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"cannot read {config_file}: {exc}") from None
        if adapter_config.get("peft_type", "LORA") != "LORA":
            raise ConfigError(
                f"adapter {ref!r} is a {adapter_config.get('peft_type')} adapter; "
                "polylora merge combines LoRA adapters only"
            )
        sources.append(AdapterSource(ref, path, adapter_config, _run_config(ref, path)))
    return sources

def load_sources(model: Any, sources: Sequence[AdapterSource]) -> tuple[Any, list[str]]:
    """Attach every adapter to ``model`` (frozen) as ``src0``, ``src1``…; returns the PeftModel."""
    from peft import PeftModel

    names = [f"src{i}" for i in range(len(sources))]
    peft_model: Any = model
    for i, (name, source) in enumerate(zip(names, sources, strict=True)):
        try:
            if i == 0:
                peft_model = PeftModel.from_pretrained(
                    model, source.path, adapter_name=name, is_trainable=False
                )
            else:
                peft_model.load_adapter(source.path, adapter_name=name, is_trainable=False)
        except (RuntimeError, ValueError, KeyError) as exc:
            lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
            mismatch = [line for line in lines if "size mismatch" in line]
            first = (mismatch or lines or [type(exc).__name__])[0]
            raise PolyloraError(
                f"adapter {source.ref!r} does not fit the base model: {first[:300]} "
                "(all merged adapters must be trained on the same base model as --base)"
            ) from None
    peft_model.eval()
    return peft_model, names

def stored_section(run: Mapping[str, Any], name: str, ref: str) -> DictConfig:
    """The ``model`` or ``hardware`` section of a run's stored config, read as data: only the
    schema's scalar fields, no interpolation (``${...}`` is refused, never resolved), and
    ``trust_remote_code`` always false (pass ``--base "... model.trust_remote_code=true"`` to
    opt in yourself). An artifact can be written by anyone with access to the store."""
    from polylora.config import HardwareConfig, ModelConfig

    schema = {"model": ModelConfig, "hardware": HardwareConfig}[name]
    base = OmegaConf.structured(schema)
    known = {f.name for f in dataclasses.fields(schema)}
    clean: dict[str, Any] = {}
    for key, value in (run.get(name) or {}).items():
        if key not in known or isinstance(value, dict | list):
            continue
        if isinstance(value, str) and "${" in value:
            raise ConfigError(
                f"the stored config of {ref} has an interpolation in {name}.{key} ({value!r}); "
                'stored configs are data: pass the base model with --base "model=..."'
            )
        clean[key] = value
    if clean.get("trust_remote_code"):
        log.warning(
            "ignoring %s.trust_remote_code=true from the stored config of %s; pass --base "
            '"... model.trust_remote_code=true" to allow remote code yourself', name, ref
        )
        clean["trust_remote_code"] = False
    try:
        merged = OmegaConf.merge(base, clean)
        assert isinstance(merged, DictConfig)
        return merged
    except Exception as exc:
        raise ConfigError(
            f"the stored config of {ref} has an invalid {name} section: {str(exc).splitlines()[0]}"
        ) from None

def partition_cluster_id(source: AdapterSource) -> int | None:
    """The integer ``data.partition_value`` of the run that trained the adapter, if any."""
    data = (source.run_config or {}).get("data")
    if not isinstance(data, dict) or not data.get("partition_by"):
        return None
    try:
        return int(str(data.get("partition_value")))
    except ValueError:
        return None
