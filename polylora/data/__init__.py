"""Data: example records, sources (builtin tasks, JSONL), splits, samplers, prompt formatting."""
