"""Tokens per second: training's from the Trainer's own count of input tokens
(``include_num_input_tokens_seen``), generation's from this process's counter of sampled
tokens, which the sampler adds to and the training logs and the run's end read.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from polylora.record.names import GENERATION_TOKENS, GENERATION_TOKENS_PER_S


@dataclass
class TokenCounter:
    """Tokens produced and the seconds spent producing them, since the process started."""

    tokens: int = 0
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, tokens: int, seconds: float) -> None:
        """Count ``tokens`` made in ``seconds``."""
        with self._lock:
            self.tokens += int(tokens)
            self.seconds += float(seconds)

    def snapshot(self) -> tuple[int, float]:
        """(tokens, seconds) so far."""
        with self._lock:
            return self.tokens, self.seconds


#: Every completion token sampled in this process (training's RL samples and evaluation's).
GENERATION = TokenCounter()


def rate(tokens: float, seconds: float) -> float | None:
    """Tokens per second, None when no time was spent."""
    return tokens / seconds if seconds > 0 else None


def generation_since(start: tuple[int, float]) -> dict[str, float]:
    """``generation/tokens_per_s`` (and the tokens) since ``start`` (a snapshot); {} if none."""
    tokens, seconds = GENERATION.snapshot()
    made, spent = tokens - start[0], seconds - start[1]
    speed = rate(made, spent)
    if made <= 0 or speed is None:
        return {}
    return {GENERATION_TOKENS_PER_S: speed, GENERATION_TOKENS: float(made)}
