"""The package's import layering, read from the source with ``ast`` (nothing imported).

The root holds the entry point, the shared errors and one package per stage. Each package sits
in one layer of :data:`LAYERS`, lowest first; a module may import its own package and the
packages of lower layers, never a higher layer nor another package of its own layer (so
``report`` and ``sweep`` stay independent). No import cycles between modules (module-level
imports; a function-level import is still held to the layers). The Hydra plugin shim imports
only ``polylora.sweep``. Reports only read runs: nothing under ``polylora.report`` imports what
trains or runs a job (a recipe in ``polylora.recipes`` runs them). ``docs/architecture.md``
describes the same layers.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

from helpers import REPO

PACKAGE = REPO / "polylora"

#: (layer, its packages or root modules), lowest first.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("errors", ("polylora", "polylora.errors")),
    ("names", ("polylora.record.names",)),
    ("render", ("polylora.render",)),
    ("data", ("polylora.data",)),
    ("model", ("polylora.model",)),
    ("record", ("polylora.record",)),
    ("statistics and judge", ("polylora.stats", "polylora.judge")),
    ("config", ("polylora.config",)),
    ("metrics", ("polylora.metrics",)),
    ("objectives", ("polylora.objectives",)),
    ("train", ("polylora.train",)),
    ("evaluate", ("polylora.evaluate",)),
    ("adapters", ("polylora.adapters",)),
    ("run", ("polylora.run",)),
    ("orchestration", ("polylora.sweep", "polylora.report")),
    ("recipes", ("polylora.recipes",)),
    ("entry points", ("polylora.cli", "polylora.__main__")),
)

#: Modules that every stage may import, though they sit inside a package: the recorded names
#: are declarations (no imports but errors), spelled once for writers and readers alike.
FOUNDATION_MODULES = {"polylora.record.names"}

#: What may sit at the root of the package besides the stage packages.
ROOT_MODULES = {"__init__", "__main__", "errors"}


def unit(module: str) -> str:
    """The stage package (or root module) ``module`` belongs to: ``polylora.<first part>``,
    or the module itself for :data:`FOUNDATION_MODULES`."""
    if module in FOUNDATION_MODULES:
        return module
    return ".".join(module.split(".")[:2])


def layer(module: str) -> int:
    """The index in :data:`LAYERS` of ``module``'s package (ValueError if in none)."""
    owner = unit(module)
    for index, (_, units) in enumerate(LAYERS):
        if owner in units:
            return index
    raise ValueError(f"{module}: its package {owner} is in no layer of LAYERS")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, module: str, top_level_only: bool = False) -> Iterator[str]:
    """The polylora modules ``path`` imports (``from a import b``: ``a.b`` if a module,
    else ``a``), optionally only those at module level (not in a function)."""
    known = modules()
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes: list[ast.AST]
    if top_level_only:
        nodes = []
        stack: list[ast.AST] = list(tree.body)
        while stack:
            node = stack.pop()
            nodes.append(node)
            if isinstance(node, (ast.If, ast.Try)):  # if TYPE_CHECKING, try/except ImportError
                if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                    continue
                stack += [*node.body, *node.orelse,
                          *(getattr(node, "handlers", None) or []),
                          *(getattr(node, "finalbody", None) or [])]
            if isinstance(node, ast.ExceptHandler):
                stack += node.body
    else:
        nodes = list(ast.walk(tree))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "polylora":
                    yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            if base.split(".")[0] != "polylora":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield sub if sub in known else base


def violations() -> list[str]:
    out = []
    for module, path in modules().items():
        for target in set(imports(path, module)):
            if unit(target) == unit(module) or target == "polylora":
                continue
            mine, theirs = layer(module), layer(target)
            if theirs > mine:
                out.append(f"{module} ({LAYERS[mine][0]}) imports {target} "
                           f"({LAYERS[theirs][0]}): a higher layer")
            elif theirs == mine:
                out.append(f"{module} imports {target}: packages of one layer are independent")
    return sorted(out)


def test_every_package_is_in_a_layer() -> None:
    unplaced = []
    for module in modules():
        try:
            layer(module)
        except ValueError as exc:
            unplaced.append(str(exc))
    assert unplaced == []


def test_every_layer_names_existing_packages() -> None:
    missing = [u for _, units in LAYERS for u in units if u not in modules()]
    assert missing == []


def test_the_root_holds_only_the_entry_point_errors_and_stage_packages() -> None:
    loose = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in ROOT_MODULES)
    assert loose == [], f"put {loose} in the package of its stage"


def test_layers_only_import_downwards() -> None:
    assert violations() == []


#: What a report may never import: whatever trains, runs a job, or drives runs.
RUNS_JOBS = ("polylora.run", "polylora.train", "polylora.evaluate", "polylora.adapters",
             "polylora.recipes")


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_reports_only_read_runs() -> None:
    """No module of ``polylora.report`` imports what trains or runs a job, at module level or
    inside a function: a report reads finished runs, a recipe (``polylora.recipes``) runs them."""
    found = sorted(f"{module} imports {target}" for module, path in modules().items()
                   if _under(module, ("polylora.report",))
                   for target in set(imports(path, module)) if _under(target, RUNS_JOBS))
    assert found == []


def test_the_report_rule_sees_function_level_imports(tmp_path: Path) -> None:
    """The rule reads imports inside functions too (a report that trained did so there)."""
    source = tmp_path / "recipe_like.py"
    source.write_text("def main():\n    from polylora.run.pipeline import execute\n"
                      "    from polylora.train import trainer\n")
    found = set(imports(source, "polylora.report.recipe_like"))
    assert {t for t in found if _under(t, RUNS_JOBS)} == {"polylora.run.pipeline",
                                                          "polylora.train.trainer"}


def test_no_import_cycles() -> None:
    graph = {m: {t for t in imports(p, m, top_level_only=True) if t != m}
             for m, p in modules().items()}
    cycles = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt):], nxt]))
            elif nxt in graph and not state.get(nxt):
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if not state.get(module):
            visit(module, [])
    assert cycles == []


def test_the_sweeper_plugin_is_a_shim_into_polylora_sweep() -> None:
    shim = REPO / "hydra_plugins" / "polylora_sweeper"
    for path in shim.glob("*.py"):
        targets = set(imports(path, "hydra_plugins.polylora_sweeper." + path.stem))
        assert all(unit(t) == "polylora.sweep" for t in targets), (path.name, targets)
        assert len(path.read_text().splitlines()) < 20, f"{path.name}: keep the shim thin"


def test_the_rules_classify_modules() -> None:
    assert layer("polylora.cli.judge") > layer("polylora.report.compare")
    assert layer("polylora.report.compare") == layer("polylora.sweep.sweeper")
    assert layer("polylora.run.pipeline") > layer("polylora.adapters.ensemble")
    assert layer("polylora.record.reader") < layer("polylora.stats.analysis")
    assert layer("polylora.errors") == 0 and unit("polylora.data.example") == "polylora.data"
    assert layer("polylora.stats.power") == layer("polylora.judge.runs")
