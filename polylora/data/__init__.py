"""Data: example records, tasks and their checkers, sources (builtin tasks, JSONL), splits,
samplers, prompt formatting, sentence embeddings of texts."""
