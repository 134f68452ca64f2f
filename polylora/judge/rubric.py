"""What the judge is asked and how its reply is read: criteria, the prompt, verdict parsing.

The judge sees both answers in a (seeded) random order and replies with strict JSON, one
``"1"``/``"2"``/``"tie"`` per criterion; :func:`parse_verdict` never raises on a bad reply
(that criterion is just invalid) and :func:`map_back` turns positions into A/B.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Literal

# One-line descriptions shown to the judge for the built-in criteria; other names are shown bare.
CRITERION_DESCRIPTIONS: dict[str, str] = {
    "engagement": "how interesting and engaging the response is to read",
    "relevance": "how well the response addresses the prompt",
    "creativity": "originality and inventiveness of the response",
    "naturalness": "how fluent and natural the language sounds",
}

# Bump when the prompt wording changes in a way the rendered text does not capture.
PROMPT_VERSION = "pairwise-v1"

Verdict = Literal["A", "B", "tie", "invalid"]


SYSTEM_PROMPT = (
    "You are an impartial judge comparing two responses to the same prompt. "
    "Judge only the content; ignore the order in which the responses are shown and their "
    "length unless it matters for the criterion. Reply with a single JSON object and nothing else."
)


def render_user_message(prompt: str, first: str, second: str, criteria: Sequence[str]) -> str:
    """The judge's user turn: prompt, both answers in shown order, and the strict reply format."""
    lines = []
    for c in criteria:
        desc = CRITERION_DESCRIPTIONS.get(c)
        lines.append(f"- {c}: {desc}" if desc else f"- {c}")
    example = json.dumps({c: ("1", "2", "tie")[i % 3] for i, c in enumerate(criteria)})
    return (
        f"<prompt>\n{prompt}\n</prompt>\n\n"
        f"<response_1>\n{first}\n</response_1>\n\n"
        f"<response_2>\n{second}\n</response_2>\n\n"
        'For each criterion below, decide which response is better: "1" (response_1), '
        '"2" (response_2) or "tie".\n'
        "Criteria:\n" + "\n".join(lines) + "\n\n"
        'Answer with only a JSON object with exactly these keys and values "1", "2" or '
        f'"tie", for example:\n{example}'
    )


_VALUE_MAP = {"1": "1", "2": "2", "tie": "tie", "draw": "tie", "equal": "tie"}


def _find_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` (tolerates code fences and chatter around it)."""
    try:
        obj = json.loads(text)
        if isinstance(obj, dict):
            return obj
    except (json.JSONDecodeError, ValueError):
        pass
    decoder = json.JSONDecoder()
    for m in re.finditer(r"\{", text):
        try:
            obj, _ = decoder.raw_decode(text, m.start())
        except (json.JSONDecodeError, ValueError):
            continue
        if isinstance(obj, dict):
            return obj
    return None


def parse_verdict(text: str, criteria: Sequence[str]) -> dict[str, str | None]:
    """Positional verdicts ``"1"``/``"2"``/``"tie"`` per criterion; ``None`` where unusable.

    Never raises: junk text, a missing key or an odd value just make that criterion invalid.
    """
    obj = _find_json_object(text or "")
    out: dict[str, str | None] = dict.fromkeys(criteria)
    if obj is None:
        return out
    lowered = {str(k).strip().lower(): v for k, v in obj.items()}
    for c in criteria:
        v = lowered.get(c)
        if isinstance(v, bool) or v is None:
            continue
        out[c] = _VALUE_MAP.get(str(v).strip().strip("\"'").lower())
    return out


def map_back(positional: str | None, first_shown: str) -> Verdict:
    """Turn a positional verdict into A/B given which answer was shown first."""
    if positional == "tie":
        return "tie"
    if positional in ("1", "2"):
        first_won = positional == "1"
        return ("A" if first_won else "B") if first_shown == "A" else ("B" if first_won else "A")
    return "invalid"
