"""python bench/eval_throughput.py [--model smollm2|tiny] [--prompts 16] [--n 10] [--threads 1]

Evaluation throughput: polylora's evaluation sampling (``polylora.model.generation.sample`` as
``evaluate`` calls it: length-sorted batches of prompts, each prompt prefilled once and its KV
cache repeated n ways) against a plain ``model.generate`` loop over prompts (one call per
prompt, ``num_return_sequences=n``), same model, prompts and decoding, interleaved in one
process; prints generated tokens/s of each and the ratio (target >= 3x). Then the share of a
whole ``polylora.evaluate.evaluation.evaluate`` call spent in the metrics suite. Run by hand.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from polylora.data.formatting import PromptFormat, render_prompt
from polylora.data.words import WordChecker, WordTask
from polylora.model.generation import SamplingParams, sample
from polylora.model.loading import load_base_model

MODELS = {
    "smollm2": {"source": "smollm2_gguf", "cache_dir": "~/.cache/polylora"},
    "tiny": {"source": "tiny_random", "hidden_size": 64, "intermediate_size": 128,
             "num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "init_seed": 0},
}


def plain_loop(model: Any, tok: Any, prompt_ids: list[list[int]], params: SamplingParams) -> int:
    """One ``generate`` call per prompt; returns the number of generated tokens."""
    total = 0
    with torch.no_grad():
        for ids in prompt_ids:
            x = torch.tensor([ids])
            out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), do_sample=True,
                                 temperature=params.temperature, top_p=params.top_p, top_k=0,
                                 num_return_sequences=params.n,
                                 max_new_tokens=params.max_new_tokens,
                                 pad_token_id=tok.pad_token_id)
            new = out[:, x.shape[1]:]
            total += int((new != tok.pad_token_id).sum())
    return total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=sorted(MODELS), default="smollm2")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--n", type=int, default=10)
    p.add_argument("--max-new-tokens", type=int, default=8)
    p.add_argument("--batch", type=int, default=16, help="prompts per batched generate call")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    p.add_argument("--skip-evaluate", action="store_true", help="ratio only")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    hw = OmegaConf.create({"device": "cpu", "precision": "fp32", "load_in_4bit": False})
    model, tok = load_base_model(OmegaConf.create({"trust_remote_code": False,
                                                   **MODELS[a.model]}), hw)
    model.eval()
    examples = WordTask(n_examples=a.prompts, seed=0).load()
    fmt = PromptFormat()
    prompt_ids = [tok(render_prompt(e, tok, fmt), add_special_tokens=False)["input_ids"]
                  for e in examples]
    params = SamplingParams(n=a.n, max_new_tokens=a.max_new_tokens)
    ours, plain = [], []
    for r in range(a.rounds):
        torch.manual_seed(r)
        t = time.perf_counter()
        out = sample(model, tok, prompt_ids, params, batch_size=a.batch, sort_by_length=True)
        tokens = sum(len(ids) for rows in out.token_ids for ids in rows)
        ours.append(tokens / (time.perf_counter() - t))
        torch.manual_seed(r)
        t = time.perf_counter()
        tokens = plain_loop(model, tok, prompt_ids, params)
        plain.append(tokens / (time.perf_counter() - t))
        print(f"round {r + 1}: batched {ours[-1]:.1f} tok/s, plain loop {plain[-1]:.1f} tok/s",
              flush=True)
    print(f"model={a.model} prompts={a.prompts} n={a.n} max_new_tokens={a.max_new_tokens} "
          f"batch={a.batch} fp32 CPU threads={torch.get_num_threads()}")
    print(f"RATIO polylora/per-prompt loop throughput = "
          f"{statistics.median(ours) / statistics.median(plain):.2f}x (target >= 3x)")
    if a.skip_evaluate:
        return

    # Share of a whole evaluation spent in metrics (suite time vs total).
    import polylora.evaluate.evaluation as ev

    timings: dict[str, float] = {"suite": 0.0}
    real = ev.score_generations

    def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            timings["suite"] += time.perf_counter() - t0

    ev.score_generations = timed  # type: ignore[assignment]
    cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "polylora/conf/eval/quick.yaml")
    cfg = OmegaConf.merge(cfg, {"subset_size": a.prompts, "n_samples": a.n, "ks": [1, 3, 5, 10],
                                "max_new_tokens": a.max_new_tokens, "batch_size": a.batch})
    cfg.pop("defaults", None)
    from polylora.data.embeddings import get_embedder

    get_embedder()  # load MiniLM outside the timed evaluation (a once-per-process cost)
    t = time.perf_counter()
    ev.evaluate(model, tok, examples, fmt, cfg, WordChecker(), 128, progress=False)
    total = time.perf_counter() - t
    print(f"evaluate(): total {total:.1f} s, metrics suite {timings['suite']:.1f} s "
          f"= {timings['suite'] / total:.1%} of evaluation time ({len(cfg.metrics)} metrics)")


if __name__ == "__main__":
    main()
