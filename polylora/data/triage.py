"""A small builtin bug-triage dataset (severity / component / reproducibility), made in code.

Reports are composed from templates with component-specific vocabulary and explicit severity
and reproducibility cues, so the labels are learnable from the text. Each report comes from a
synthetic reporter (``Example.group``) with their own style and favourite components, which
makes group-aware splits meaningful. Deterministic for a seed; needs no download.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from polylora.data.example import Example
from polylora.data.fields import fields_instruction, format_fields
from polylora.data.jsonl import write_rows
from polylora.errors import ConfigError

FIELD_NAMES: tuple[str, str, str] = ("severity", "component", "reproducibility")
SEVERITIES: tuple[str, ...] = ("critical", "high", "medium", "low")
COMPONENTS: tuple[str, ...] = ("ui", "api", "database", "auth", "installer")
REPRODUCIBILITY: tuple[str, ...] = ("always", "sometimes", "once")
ALLOWED: dict[str, list[str]] = {
    "severity": list(SEVERITIES),
    "component": list(COMPONENTS),
    "reproducibility": list(REPRODUCIBILITY),
}

# What each component's reports talk about: the things that break and what the user was doing.
_VOCAB: dict[str, dict[str, list[str]]] = {
    "ui": {
        "thing": ["settings dialog", "sidebar", "toolbar", "dark mode theme", "tooltip"],
        "action": [
            "open the settings dialog",
            "resize the window",
            "switch to dark mode",
            "collapse the sidebar",
            "drag a tab",
        ],
    },
    "api": {
        "thing": [
            "/v2/orders endpoint",
            "REST client",
            "webhook delivery",
            "JSON response",
            "rate limiter",
        ],
        "action": [
            "call the /v2/orders endpoint",
            "send a batch request",
            "paginate past page 10",
            "retry a webhook",
            "request with an API key",
        ],
    },
    "database": {
        "thing": [
            "schema migration",
            "query planner",
            "nightly backup",
            "index rebuild",
            "transaction log",
        ],
        "action": [
            "run the schema migration",
            "run a large report query",
            "restore the nightly backup",
            "rebuild the index",
            "commit a transaction",
        ],
    },
    "auth": {
        "thing": [
            "login page",
            "password reset email",
            "2FA prompt",
            "session cookie",
            "SSO redirect",
        ],
        "action": [
            "log in with SSO",
            "reset my password",
            "enter my 2FA code",
            "sign out and back in",
            "refresh an expired session",
        ],
    },
    "installer": {
        "thing": ["installer", "upgrade wizard", "package download", "setup script", "uninstaller"],
        "action": [
            "run the installer",
            "upgrade from 3.1 to 3.2",
            "install offline",
            "run the setup script",
            "uninstall the old version",
        ],
    },
}

_SEVERITY_TEMPLATES: dict[str, list[str]] = {
    "critical": [
        "The whole application crashes when I {action}.",
        "When I {action}, we lose data: records saved earlier are gone (data loss).",
        "The {thing} crashes the server when I {action}, taking production down.",
        "Security issue: the {thing} exposes other users' data when I {action}.",
    ],
    "high": [
        "I can't {action} at all; the {thing} is completely broken and there is no workaround.",
        "The {thing} fails with an error when I try to {action}, blocking my work.",
        "Core feature broken: the {thing} rejects valid input when I {action}.",
    ],
    "medium": [
        "The {thing} is very slow when I {action}, but it eventually works.",
        "The {thing} shows stale information after I {action}; reloading is a workaround.",
        "When I {action}, the {thing} gives a confusing error, though retrying succeeds.",
    ],
    "low": [
        "There is a typo in the {thing} text.",
        "The {thing} is slightly misaligned by a few pixels; purely cosmetic.",
        "Minor wording issue: the {thing} label says 'Cancle' instead of 'Cancel'.",
        "The {thing} icon looks a bit blurry on high-DPI screens, nothing functional.",
    ],
}

_REPRO_TEMPLATES: dict[str, list[str]] = {
    "always": [
        "It happens every time.",
        "I can reproduce it 100% of the time.",
        "Reproducible on every attempt, on two different machines.",
    ],
    "sometimes": [
        "It happens intermittently, maybe one try in three.",
        "It occurs now and then; I haven't found the pattern.",
        "Happens occasionally, roughly every few days.",
    ],
    "once": [
        "It only happened once and I could not reproduce it afterwards.",
        "I saw this a single time and haven't seen it since.",
        "One-off so far: a second attempt worked fine.",
    ],
}

_TITLES = [
    "problem with the {thing}",
    "{thing} issue",
    "issue when I {action}",
    "{thing} misbehaving",
    "trouble when I {action}",
]
_OPENERS = ["Hi team,", "Hello,", "Bug report:", "Hey folks,", "Reporting an issue:", ""]
_SIGNOFFS = ["Thanks!", "Cheers", "Regards", "Let me know if you need logs.", ""]
_ENVIRONMENTS = [
    "Windows 11",
    "macOS 14",
    "Ubuntu 22.04",
    "Firefox 126",
    "Chrome 125",
    "Safari 17",
    "Android 14",
    "iOS 17",
]
_PRODUCTS = ["acme-web", "acme-desktop", "acme-mobile"]


def generate_triage_examples(n: int = 300, seed: int = 0) -> list[Example]:
    """``n`` bug reports with severity/component/reproducibility labels, deterministic in seed.

    The prompt is the report plus the field instruction, the response the canonical field
    lines, ``fields`` the three labels, and ``group`` the synthetic reporter id.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"triage dataset size must be an integer >= 0, got {n!r}")
    rng = random.Random(seed)
    reporters = _make_reporters(rng, max(3, n // 12))
    instruction = fields_instruction(FIELD_NAMES, ALLOWED)
    examples: list[Example] = []
    for i in range(n):
        reporter = rng.choice(reporters)
        component = rng.choices(COMPONENTS, weights=reporter["weights"])[0]
        severity = rng.choices(SEVERITIES, weights=(2, 3, 3, 2))[0]
        repro = rng.choices(REPRODUCIBILITY, weights=(4, 3, 2))[0]
        report = _compose(rng, reporter, component, severity, repro)
        values = {"severity": severity, "component": component, "reproducibility": repro}
        examples.append(
            Example(
                id=f"triage-{i:04d}",
                prompt=f"Triage this bug report.\n\n{report}\n\n{instruction}",
                response=format_fields(values),
                group=str(reporter["id"]),
                fields=dict(values),
            )
        )
    return examples


def to_jsonl_record(example: Example) -> dict[str, Any]:
    """One JSONL line's object: id, prompt, response, group, then the fields as extra keys."""
    record: dict[str, Any] = {
        "id": example.id,
        "prompt": example.prompt,
        "response": example.response,
        "group": example.group,
    }
    for key, value in example.fields.items():
        if key not in record:
            record[key] = value
    return record


def write_jsonl(examples: Sequence[Example], path: str | Path) -> Path:
    """Write examples as JSONL (one ``to_jsonl_record`` object per line); returns the path."""
    return write_rows((to_jsonl_record(example) for example in examples), path)


def _make_reporters(rng: random.Random, count: int) -> list[dict[str, Any]]:
    """Reporters with a product, a writing style and a bias toward one or two components."""
    reporters = []
    for k in range(count):
        favourites = rng.sample(range(len(COMPONENTS)), 2)
        weights = [1.0] * len(COMPONENTS)
        weights[favourites[0]] = 6.0
        weights[favourites[1]] = 3.0
        reporters.append(
            {
                "id": f"{rng.choice(_PRODUCTS)}/reporter-{k:03d}",
                "weights": weights,
                "opener": rng.choice(_OPENERS),
                "signoff": rng.choice(_SIGNOFFS),
                "environment": rng.choice(_ENVIRONMENTS),
            }
        )
    return reporters


def _compose(
    rng: random.Random, reporter: dict[str, Any], component: str, severity: str, repro: str
) -> str:
    vocab = _VOCAB[component]
    thing = rng.choice(vocab["thing"])
    action = rng.choice(vocab["action"])
    symptom = rng.choice(_SEVERITY_TEMPLATES[severity]).format(thing=thing, action=action)
    title = rng.choice(_TITLES).format(thing=thing, action=action)
    lines = [f"Title: {title[0].upper()}{title[1:]}", ""]
    if reporter["opener"]:
        lines.append(reporter["opener"])
    lines.append(f"{symptom} {rng.choice(_REPRO_TEMPLATES[repro])}")
    lines.append(f"Environment: {reporter['environment']}.")
    if reporter["signoff"]:
        lines.append(reporter["signoff"])
    return "\n".join(lines)
