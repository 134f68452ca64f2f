"""The package's import layering, read from the source with ``ast`` (nothing imported).

Layers, lowest first; a module may import its own layer and the layers below it:

1. **library**: everything not named below (errors, config, record, data, models, generation,
   training, objectives, evaluation, metrics, judge, stats, tracking, ...);
2. **run**: one training/evaluation job and its adapter variants (``pipeline``, ``run``,
   ``merge``, ``adapters``);
3. **orchestration**: what drives or reads many runs (``report``, ``sweep``; neither imports
   the other);
4. **recipes**: designs that run many jobs through the pipeline and hand them to a report
   (``recipes``);
5. **cli**: command-line entry points (``__main__``, ``cli``, ``*_cli`` modules); nothing
   imports them but other CLI modules.

Reports only read runs: nothing under ``polylora.report`` imports the modules that train or
run a job (``pipeline``, ``training``, the other run-layer modules, ``recipes``).

Rules are over module-name prefixes, so moved and new modules are covered without a list.
No import cycles between polylora modules (module-level imports; a function-level import is
still held to the layers). The Hydra plugin shim imports only ``polylora.sweep``.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

from helpers import REPO

PACKAGE = REPO / "polylora"

RUN = ("polylora.run.pipeline", "polylora.run", "polylora.merge", "polylora.adapters",
       "polylora.evaluate.loop", "polylora.train.preparation")
ORCHESTRATION = ("polylora.report", "polylora.sweep")
RECIPES = ("polylora.recipes",)
#: What a report may never import: whatever trains, runs a job, or drives runs.
RUNS_JOBS = (*RUN, "polylora.train.trainer", *RECIPES)

#: Known violations, each to be deleted when the move that fixes it lands.
ALLOWED: set[tuple[str, str]] = set()


def _is(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def is_cli(module: str) -> bool:
    """A command-line entry point: ``polylora.__main__``, ``polylora.cli.main[.*]``, ``*_cli``,
    ``*.cli``."""
    last = module.rsplit(".", 1)[-1]
    return (module in ("polylora.__main__", "polylora.cli.main") or module.startswith("polylora.cli.main.")
            or last.endswith("_cli") or (last == "cli" and module != "polylora.cli.main"))


def layer(module: str) -> int:
    """1 library, 2 run, 3 orchestration, 4 recipes, 5 cli."""
    if is_cli(module):
        return 5
    if _is(module, RECIPES):
        return 4
    if _is(module, ORCHESTRATION):
        return 3
    if _is(module, RUN):
        return 2
    return 1


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
            if (module, target) in ALLOWED:
                continue
            mine, theirs = layer(module), layer(target)
            if theirs > mine:
                out.append(f"{module} (layer {mine}) imports {target} (layer {theirs})")
            elif theirs == mine == 5 and is_cli(target) and not is_cli(module):
                out.append(f"{module} imports the CLI module {target}")
            elif mine == theirs == 3 and module.split(".")[1] != target.split(".")[1]:
                out.append(f"{module} imports {target}: report and sweep are independent")
    return sorted(out)


def test_layers_only_import_downwards() -> None:
    assert violations() == []


def test_reports_only_read_runs() -> None:
    """No module of ``polylora.report`` imports what trains or runs a job, at module level or
    inside a function: a report reads finished runs, a recipe (``polylora.recipes``) runs them."""
    found = sorted(f"{module} imports {target}" for module, path in modules().items()
                   if _is(module, ("polylora.report",))
                   for target in set(imports(path, module)) if _is(target, RUNS_JOBS))
    assert found == []


def test_the_report_rule_sees_function_level_imports(tmp_path: Path) -> None:
    """The rule reads imports inside functions too (a report that trained did so there)."""
    source = tmp_path / "recipe_like.py"
    source.write_text("def main():\n    from polylora.run.pipeline import execute\n"
                      "    from polylora import training\n")
    found = set(imports(source, "polylora.report.recipe_like"))
    assert {t for t in found if _is(t, RUNS_JOBS)} == {"polylora.run.pipeline", "polylora.train.trainer"}


def test_allowlist_entries_are_still_needed() -> None:
    """An allowlisted import that is gone must leave the list (so it cannot grow back)."""
    found = {(m, t) for m, p in modules().items() for t in imports(p, m)}
    assert found >= ALLOWED, sorted(ALLOWED - found)


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
        assert all(_is(t, ("polylora.sweep",)) for t in targets), (path.name, targets)
        assert len(path.read_text().splitlines()) < 20, f"{path.name}: keep the shim thin"


def test_the_rules_classify_modules() -> None:
    assert layer("polylora.cli.judge") == 5 and layer("polylora.cli.main.compare") == 5
    assert layer("polylora.recipes.headline_v2") == 4
    assert layer("polylora.report.compare") == 3 and layer("polylora.sweep.sweeper") == 3
    assert layer("polylora.run.pipeline") == 2 and layer("polylora.adapters.static") == 2
    assert layer("polylora.record.reader") == 1 and layer("polylora.stats.significance") == 1
