"""``docs/architecture.md`` against the package: every module it names exists, every package
that exists has a section, and its layer table lists the layers of ``test_layering``."""

from __future__ import annotations

import re

from helpers import REPO
from test_layering import LAYERS

DOC = REPO / "docs" / "architecture.md"
PACKAGE = REPO / "polylora"


def sections() -> dict[str, list[str]]:
    """``### `polylora.x``` heading -> the names of its bullets (``a``, ``b/`` for packages)."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in DOC.read_text().splitlines():
        heading = re.match(r"### `(polylora(?:\.\w+)*)`", line)
        if heading:
            current = out.setdefault(heading.group(1), [])
        elif line.startswith("## "):
            current = None
        elif current is not None and line.startswith("- "):
            lead = line[2:].split(":", 1)[0]
            current += re.findall(r"`([\w/]+)`", lead)
    return out


def packages() -> set[str]:
    """Every package under polylora (``__init__.py``), as dotted names, the root included."""
    return {".".join(p.parent.relative_to(REPO).parts) for p in PACKAGE.rglob("__init__.py")}


def exists(package: str, name: str) -> bool:
    folder = REPO.joinpath(*package.split("."))
    if name.endswith("/"):
        return (folder / name / "__init__.py").is_file()
    return (folder / f"{name}.py").is_file()


def test_every_module_the_map_names_exists() -> None:
    missing = [f"{package}.{name}" for package, names in sections().items()
               for name in names if not exists(package, name)]
    missing += [package for package in sections() if package not in packages()]
    assert missing == []


def test_every_package_is_in_the_map() -> None:
    mapped = set(sections())
    for package, names in sections().items():
        mapped |= {f"{package}.{n.rstrip('/')}" for n in names if n.endswith("/")}
    assert sorted(packages() - mapped) == []


def test_the_layer_table_lists_the_enforced_layers_in_order() -> None:
    rows = re.findall(r"^\| \d+ \| ([^|]+) \| ([^|]+) \|", DOC.read_text(), re.MULTILINE)
    table = [(name.strip(), tuple(re.findall(r"`([\w.]+)`", units))) for name, units in rows]
    enforced = [(name, tuple(u for u in units if u != "polylora")) for name, units in LAYERS]
    assert table == enforced
