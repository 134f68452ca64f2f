"""python bench/sampling_overhead.py [--model smollm2|tiny] [--prompts 8] [--n 3] [--threads 1]

polylora's sampler (``polylora.model.generation.sample``) against a bare ``transformers``
``model.generate`` on the same left-padded batch of prompts (``num_return_sequences=n``, no
polylora code), same decoding, interleaved in one process: prints the wall time of each and
the ratio bare/polylora (target >= 1.0: polylora adds no overhead). With the same seed both
produce the same samples, so both run the same number of decode steps.

Beside it, the floor estimate: a decode step must read every weight once, so it takes at
least weight bytes / memory bandwidth (bandwidth measured here by copying a 256 MiB tensor);
the script prints that floor per decode step and for the run's decode steps, next to the
measured time per decode step. Run by hand (``--model tiny`` checks the script in seconds).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
from omegaconf import OmegaConf

from polylora.data.formatting import PromptFormat, left_pad, render_prompt
from polylora.data.words import WordTask
from polylora.model.generation import SamplingParams, sample
from polylora.model.loading import load_base_model

MODELS = {
    "smollm2": {"source": "smollm2_gguf", "cache_dir": "~/.cache/polylora"},
    "tiny": {"source": "tiny_random", "hidden_size": 64, "intermediate_size": 128,
             "num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "init_seed": 0},
}


def bare_generate(model: Any, tok: Any, prompt_ids: list[list[int]],
                  params: SamplingParams) -> torch.Tensor:
    """Plain ``generate``: one left-padded batch, n copies of each prompt."""
    ids, mask = left_pad(prompt_ids, tok.pad_token_id)
    with torch.no_grad():
        return model.generate(input_ids=ids, attention_mask=mask, do_sample=True,
                              temperature=params.temperature, top_p=params.top_p, top_k=0,
                              num_return_sequences=params.n,
                              max_new_tokens=params.max_new_tokens,
                              pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)


def memory_bandwidth(mib: int = 256, reps: int = 5) -> float:
    """Bytes/s of a large tensor copy (read + write), best of ``reps``."""
    src = torch.ones(mib * 2**20 // 4)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t)
    return 2 * src.numel() * 4 / best


def main() -> None:
    p = argparse.ArgumentParser(description="polylora sampling vs bare HF generate")
    p.add_argument("--model", choices=sorted(MODELS), default="smollm2")
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--n", type=int, default=3)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    hw = OmegaConf.create({"device": "cpu", "precision": "fp32", "load_in_4bit": False})
    model, tok = load_base_model(OmegaConf.create({"trust_remote_code": False,
                                                   **MODELS[a.model]}), hw)
    model.eval()
    fmt = PromptFormat()
    prompt_ids = [tok(render_prompt(e, tok, fmt), add_special_tokens=False)["input_ids"]
                  for e in WordTask(n_examples=a.prompts, seed=0).load()]
    params = SamplingParams(n=a.n, max_new_tokens=a.max_new_tokens)
    ours, bare, steps = [], [], []
    for r in range(a.rounds):
        first = ("ours", "bare") if r % 2 == 0 else ("bare", "ours")
        for which in first:
            torch.manual_seed(r)
            t = time.perf_counter()
            if which == "ours":
                sample(model, tok, prompt_ids, params, batch_size=len(prompt_ids))
                ours.append(time.perf_counter() - t)
            else:
                out = bare_generate(model, tok, prompt_ids, params)
                bare.append(time.perf_counter() - t)
                steps.append(out.shape[1] - max(len(x) for x in prompt_ids))
        print(f"round {r + 1}: polylora {ours[-1]:.2f} s, bare generate {bare[-1]:.2f} s, "
              f"{steps[-1]} decode steps", flush=True)
    weight_bytes = sum(t.numel() * t.element_size() for t in model.parameters())
    bandwidth = memory_bandwidth()
    floor_step = weight_bytes / bandwidth
    med_ours, med_bare = statistics.median(ours), statistics.median(bare)
    n_steps = statistics.median(steps)
    print(f"model={a.model} prompts={a.prompts} n={a.n} max_new_tokens={a.max_new_tokens} "
          f"fp32 CPU threads={torch.get_num_threads()} rounds={a.rounds}")
    print(f"RATIO bare generate / polylora wall time = {med_bare / med_ours:.2f}x "
          f"({med_bare:.2f} s / {med_ours:.2f} s; target >= 1.0x)")
    print(f"floor: {weight_bytes / 2**20:.0f} MiB of weights / {bandwidth / 2**30:.1f} GiB/s "
          f"= {floor_step * 1e3:.1f} ms per decode step, {n_steps:.0f} steps "
          f"= {floor_step * n_steps:.2f} s; measured per decode step (prefill included): "
          f"polylora {med_ours / max(n_steps, 1) * 1e3:.1f} ms, "
          f"bare {med_bare / max(n_steps, 1) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
