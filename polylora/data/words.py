"""Builtin verifiable task: name an English word that meets letter constraints.

Each prompt has many correct answers (dozens to hundreds of words), so a model can be scored
exactly (pass@k, accuracy) and its answers can be diverse. Answers are accepted if they appear
in the ``english-words`` package's ``web2`` or ``gcide`` list, or are a regular inflection of
such a word that the ``wordfreq`` package knows ("years", "called"). Training targets and
references are words present in both ``english-words`` lists or, with ``min_zipf``, accepted
words that are common (a small model fine-tuned on rare dictionary words learns to invent
word-like strings).
"""

from __future__ import annotations

import math
import random
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from polylora.data.checking import CheckResult
from polylora.data.example import Example
from polylora.errors import ConfigError, Problems

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
_START_TEMPLATES = (
    "Name an English word that starts with '{start}'.",
    "Give one English word beginning with '{start}'.",
    "Write an English word starting with the letter '{start}'.",
)
_TEMPLATES = {"start": _START_TEMPLATES, "length": _LENGTH_TEMPLATES, "end": _ENDS_TEMPLATES}
CONSTRAINT_KINDS = tuple(_TEMPLATES)
_SUFFIX = " Answer with the word only."
# Inflections (years, called, using) missing from the dictionary lists are accepted if at least
# this frequent (Zipf scale: log10 of occurrences per billion words; 2 = once per 10 million).
_ACCEPTED_MIN_ZIPF = 2.0
_WORD_RE = re.compile(r"[A-Za-z]+")


#: How many letter constraints a prompt of each kind sets (the report's one- vs two-constraint).
CONSTRAINTS_OF_KIND = {"start": 1, "length": 2, "end": 2}


@lru_cache(maxsize=1)
def _prompt_patterns() -> tuple[tuple[re.Pattern[str], str], ...]:
    """One regex per prompt template (placeholders as wildcards), with the template's kind."""
    out = []
    for kind, templates in _TEMPLATES.items():
        for t in templates:
            body = re.escape(t + _SUFFIX)
            for name in ("start", "end"):
                body = body.replace(re.escape("{" + name + "}"), "[a-z]")
            body = body.replace(re.escape("{length}"), "[0-9]+")
            out.append((re.compile(body), kind))
    return tuple(out)


def prompt_kind(prompt: str) -> str | None:
    """The constraint kind (``start``, ``length``, ``end``) of a word-task prompt's text, or
    None if the text is not one of the task's templates (e.g. a chat-formatted prompt)."""
    for pattern, kind in _prompt_patterns():
        if pattern.fullmatch(prompt.strip()):
            return kind
    return None


@lru_cache(maxsize=1)
def _listed_words() -> frozenset[str]:
    """Alphabetic words of the ``english-words`` ``web2`` and ``gcide`` lists, as spelled there."""
    from english_words import get_english_words_set

    return frozenset(get_english_words_set(["web2", "gcide"], lower=False, alpha=True))


@lru_cache(maxsize=1)
def dictionary_words() -> frozenset[str]:
    """Words in the ``web2`` or ``gcide`` list, lower-cased (the checker's dictionary)."""
    return frozenset(w.lower() for w in _listed_words())


@lru_cache(maxsize=1)
def lowercase_dictionary_words() -> frozenset[str]:
    """Dictionary words the lists spell in lower case: no proper nouns (smith, chile)."""
    return frozenset(w for w in _listed_words() if w.islower())


def is_inflection(word: str, dictionary: frozenset[str]) -> bool:
    """True if ``word`` is a regular inflection (-s, -es, -ed, -ing, -ly) of a dictionary word."""
    stems = []
    for suffix in ("s", "es", "ed", "ing", "ly"):
        if word.endswith(suffix) and len(word) >= len(suffix) + 2:
            stem = word[: -len(suffix)]
            stems += [stem, stem + "e"]
            if suffix in ("es", "ed") and stem.endswith("i"):
                stems.append(stem[:-1] + "y")  # tries, tried
            if suffix in ("ed", "ing") and len(stem) > 2 and stem[-1] == stem[-2]:
                stems.append(stem[:-1])  # stopped, running
    return any(s in dictionary for s in stems)


@lru_cache(maxsize=1)
def accepted_words() -> frozenset[str]:
    """Every word the checker accepts: dictionary words plus their common inflections."""
    dictionary = dictionary_words()
    inflections = {
        w
        for w in common_words(_ACCEPTED_MIN_ZIPF)
        if w not in dictionary and is_inflection(w, dictionary)
    }
    return dictionary | inflections


@lru_cache(maxsize=8)
def common_words(min_zipf: float) -> dict[str, float]:
    """Alphabetic lower-case ``wordfreq`` English words with Zipf frequency >= ``min_zipf``."""
    from wordfreq import get_frequency_dict

    out = {}
    for word, freq in get_frequency_dict("en").items():
        zipf = math.log10(freq) + 9.0 if freq > 0 else 0.0
        if zipf < min_zipf:
            break  # the dictionary is sorted by frequency, most frequent first
        if word.isascii() and word.isalpha() and len(word) >= 2:
            out[word] = zipf
    return out


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
    """Letter constraints of one prompt: a start letter, optionally a length or an end letter."""

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


def _target_pool(min_zipf: float | None) -> tuple[str, ...]:
    """Candidate targets: dictionary words, or with ``min_zipf`` common words that are lower-case
    dictionary words or their inflections (no proper nouns)."""
    if min_zipf is None:
        return target_words()
    lower = lowercase_dictionary_words()
    return tuple(
        sorted(
            w
            for w in common_words(min_zipf)
            if 3 <= len(w) <= 8 and (w in lower or is_inflection(w, lower))
        )
    )


def _constraint_pools(
    min_answers: int, kinds: Sequence[str], min_zipf: float | None
) -> dict[str, list[tuple[WordConstraint, list[str]]]]:
    """Per kind, every constraint with at least ``min_answers`` target words, with those words."""
    by_start: dict[str, list[str]] = defaultdict(list)
    by_length: dict[tuple[str, int], list[str]] = defaultdict(list)
    by_end: dict[tuple[str, str], list[str]] = defaultdict(list)
    for w in _target_pool(min_zipf):
        by_start[w[0]].append(w)
        if 3 <= len(w) <= 7:
            by_length[(w[0], len(w))].append(w)
        by_end[(w[0], w[-1])].append(w)
    candidates = {
        "start": [(WordConstraint(start=s), ws) for s, ws in sorted(by_start.items())],
        "length": [
            (WordConstraint(start=s, length=n), ws) for (s, n), ws in sorted(by_length.items())
        ],
        "end": [(WordConstraint(start=s, end=e), ws) for (s, e), ws in sorted(by_end.items())],
    }
    return {k: [(c, ws) for c, ws in candidates[k] if len(ws) >= min_answers] for k in kinds}


class WordTask:
    """Generates the word task's examples deterministically from a seed."""

    def __init__(
        self,
        n_examples: int = 600,
        seed: int = 0,
        min_answers: int = 50,
        n_references: int = 8,
        kinds: Sequence[str] = CONSTRAINT_KINDS,
        min_zipf: float | None = 3.5,
    ) -> None:
        """``kinds``: which constraints prompts use, drawn uniformly per prompt: ``start``
        (first letter only), ``length`` (first letter and length), ``end`` (first and last
        letter). ``min_zipf``: draw targets and references from words at least this common
        (None: any dictionary word). The defaults are calibrated so that SmolLM2-135M lands
        mid-range after a short CE run (docs/results/README.md)."""
        found = Problems()
        found.check(n_examples >= 1, f"data.source.n_examples must be >= 1, got {n_examples}")
        kinds = tuple(kinds)
        unknown = [k for k in kinds if k not in CONSTRAINT_KINDS]
        found.check(
            bool(kinds) and not unknown,
            f"data.source.kinds must be a non-empty list of {list(CONSTRAINT_KINDS)}, "
            f"got {list(kinds)}",
        )
        found.raise_any()
        self.n_examples = n_examples
        self.seed = seed
        self.min_answers = min_answers
        self.n_references = n_references
        self.kinds = kinds
        self.min_zipf = min_zipf

    @staticmethod
    def normalize(answer: str) -> str:
        """An answer as :class:`WordChecker` reads it: its first word, lower-cased (the
        stripped, lower-cased text when it has none)."""
        return first_word(answer) or answer.strip().lower()

    def load(self) -> list[Example]:
        """Build ``n_examples`` prompts, each with one target word and a few references."""
        rng = random.Random(self.seed)
        by_kind = _constraint_pools(self.min_answers, self.kinds, self.min_zipf)
        empty = [k for k, pools in by_kind.items() if not pools]
        if empty:
            raise ConfigError(
                f"data.source: no '{empty[0]}' constraint has {self.min_answers} or more target "
                f"words; lower data.source.min_answers or min_zipf"
            )
        examples = []
        for i in range(self.n_examples):
            kind = rng.choice(self.kinds)
            kind_pools = by_kind[kind]
            constraint, words = kind_pools[rng.randrange(len(kind_pools))]
            template = rng.choice(_TEMPLATES[kind])
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
