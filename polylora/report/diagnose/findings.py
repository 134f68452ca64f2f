"""What the decision matrix says: one finding per rule, and the diagnosis (verdict, next
command) with its Markdown rendering."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from polylora.render import markdown

__all__ = ["LEVEL_LABEL", "LEVEL_RANK", "Diagnosis", "Finding", "Level"]

Level = Literal["ok", "monitor", "act"]
LEVEL_RANK: dict[str, int] = {"ok": 0, "monitor": 1, "act": 2}
LEVEL_LABEL: dict[str, str] = {"ok": "healthy", "monitor": "monitor", "act": "act"}


@dataclass
class Finding:
    """One rule's outcome: its level, the rule id, a message with the numbers, a command."""

    level: Level
    rule: str
    message: str
    command: str | None = None  # the exact command that follows this finding, if any


@dataclass
class Diagnosis:
    """All findings of a run, the overall verdict and the one command to run next."""

    findings: list[Finding]
    verdict: str
    next_command: str | None
    level: Level = "ok"

    def to_markdown(self) -> str:
        """Render as a Markdown section: verdict, findings table, next command."""
        lines = [
            f"## Diagnosis: {LEVEL_LABEL[self.level]}",
            "",
            f"**Verdict:** {self.verdict}",
            "",
            *markdown.table(["level", "rule", "finding"],
                            ([f.level, f.rule, f.message] for f in self.findings)),
        ]
        if self.next_command:
            lines += ["", "**Next command:**", "", "```bash", self.next_command, "```"]
        others: dict[str, str] = {}
        for f in self.findings:
            if f.command and f.command != self.next_command:
                others.setdefault(f.command, f.rule)
        if others:
            lines += ["", "Other suggestions:", ""]
            lines += [f"- `{cmd}` ({rule})" for cmd, rule in others.items()]
        return "\n".join(lines) + "\n"
