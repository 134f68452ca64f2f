"""Builtin verifiable task: name an English word that meets letter constraints.

Each prompt has many correct answers (dozens to hundreds of words), so a model can be scored
exactly (pass@k, accuracy) and its answers can be diverse. Words come from the
``english-words`` package: answers are accepted if they appear in its ``web2`` or ``gcide``
list; training targets and references are drawn from words present in both.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache

from polylora.checking import CheckResult
from polylora.data.example import Example
from polylora.errors import ConfigError

_LENGTH_TEMPLATES = (
    "Name an English word that starts with '{start}' and has {length} letters.",
    "Give one English word of {length} letters beginning with '{start}'.",
    "Write a {length}-letter English word starting with the letter '{start}'.",
)
_ENDS_TEMPLATES = (
    "Name an English word that starts with '{start}' and ends with '{end}'.",
    "Give one English word beginning with '{start}' and ending in '{end}'.",
    "Write an English word whose first letter is '{start}' and last letter is '{end}'.",
)
_SUFFIX = " Answer with the word only."
_WORD_RE = re.compile(r"[A-Za-z]+")


@lru_cache(maxsize=1)
def accepted_words() -> frozenset[str]:
    """Every word the checker accepts (lower-case, alphabetic)."""
    from english_words import get_english_words_set

    return frozenset(get_english_words_set(["web2", "gcide"], lower=True, alpha=True))


@lru_cache(maxsize=1)
def target_words() -> tuple[str, ...]:
    """Words used as training targets and references: in both lists, 3 to 8 letters."""
    from english_words import get_english_words_set

    both = get_english_words_set(["web2"], lower=True, alpha=True) & get_english_words_set(
        ["gcide"], lower=True, alpha=True
    )
    return tuple(sorted(w for w in both if 3 <= len(w) <= 8))


@dataclass(frozen=True)
class WordConstraint:
    """Letter constraints of one prompt: a start letter plus a length or an end letter."""

    start: str
    length: int | None = None
    end: str | None = None

    def accepts(self, word: str) -> bool:
        """True if ``word`` satisfies the constraint (membership is checked separately)."""
        if not word.startswith(self.start):
            return False
        if self.length is not None and len(word) != self.length:
            return False
        return self.end is None or word.endswith(self.end)


def first_word(answer: str) -> str | None:
    """The first alphabetic token of an answer, lower-cased (models add quotes, periods)."""
    match = _WORD_RE.search(answer)
    return match.group(0).lower() if match else None


class WordChecker:
    """Exact checker: the answer's first word must be an English word meeting the constraint."""

    name = "words"

    def __call__(self, example: Example, answer: str) -> CheckResult:
        c = WordConstraint(
            start=example.fields["start"],
            length=example.fields.get("length"),
            end=example.fields.get("end"),
        )
        word = first_word(answer)
        valid = word is not None and word in accepted_words()
        meets = word is not None and c.accepts(word)
        return CheckResult(
            correct=valid and meets,
            details={"valid_word": float(valid), "meets_constraint": float(meets)},
        )


def _constraint_pools(min_answers: int) -> list[tuple[WordConstraint, list[str]]]:
    """All constraints with at least ``min_answers`` target words, with those words."""
    by_length: dict[tuple[str, int], list[str]] = defaultdict(list)
    by_end: dict[tuple[str, str], list[str]] = defaultdict(list)
    for w in target_words():
        if 3 <= len(w) <= 7:
            by_length[(w[0], len(w))].append(w)
        by_end[(w[0], w[-1])].append(w)
    pools = [
        (WordConstraint(start=s, length=n), ws)
        for (s, n), ws in sorted(by_length.items())
        if len(ws) >= min_answers
    ]
    pools += [
        (WordConstraint(start=s, end=e), ws)
        for (s, e), ws in sorted(by_end.items())
        if len(ws) >= min_answers
    ]
    return pools


class WordTask:
    """Generates the word task's examples deterministically from a seed."""

    def __init__(
        self, n_examples: int = 600, seed: int = 0, min_answers: int = 20, n_references: int = 8
    ) -> None:
        if n_examples < 1:
            raise ConfigError(f"data.source.n_examples must be >= 1, got {n_examples}")
        self.n_examples = n_examples
        self.seed = seed
        self.min_answers = min_answers
        self.n_references = n_references

    def load(self) -> list[Example]:
        """Build ``n_examples`` prompts, each with one target word and a few references."""
        rng = random.Random(self.seed)
        pools = _constraint_pools(self.min_answers)
        examples = []
        for i in range(self.n_examples):
            constraint, words = pools[rng.randrange(len(pools))]
            if constraint.length is not None:
                template = rng.choice(_LENGTH_TEMPLATES)
            else:
                template = rng.choice(_ENDS_TEMPLATES)
            prompt = (
                template.format(
                    start=constraint.start, length=constraint.length, end=constraint.end
                )
                + _SUFFIX
            )
            picked = rng.sample(words, k=min(len(words), self.n_references + 1))
            fields: dict[str, object] = {"start": constraint.start, "n_answers": len(words)}
            if constraint.length is not None:
                fields["length"] = constraint.length
            if constraint.end is not None:
                fields["end"] = constraint.end
            examples.append(
                Example(
                    id=f"words-{i:05d}",
                    prompt=prompt,
                    response=picked[0],
                    references=tuple(picked),
                    fields=fields,
                )
            )
        return examples
