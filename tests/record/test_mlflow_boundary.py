"""MLflow is imported only by the run record (``polylora/record/``: the one reader and the one
writer) and the tracking layer (``tracking.py``, ``tracking_store.py``: store, URIs, run
lifecycle); a scan of the package's source (``ast``, nothing imported) fails on any other
``import mlflow`` or ``from mlflow... import``, at module level or inside a function."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from helpers import package_sources

#: The modules allowed to import MLflow.
MLFLOW_OWNERS = ("polylora/record/", "polylora/record/tracking.py", "polylora/record/store.py")


def mlflow_imports(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """``(line, module)`` of every import of ``mlflow`` or one of its submodules."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "mlflow" or alias.name.startswith("mlflow."):
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
                node.module == "mlflow" or node.module.startswith("mlflow.")):
            yield node.lineno, node.module


def test_only_record_and_tracking_import_mlflow() -> None:
    found = []
    for rel, path in package_sources(skip=MLFLOW_OWNERS):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
        found += [f"{rel}:{line}: imports {module}" for line, module in mlflow_imports(tree)]
    assert not found, (
        "MLflow imported outside polylora/record/ and the tracking layer (read through "
        "polylora.record.reader, log through polylora.record.writer):\n" + "\n".join(found)
    )


def test_the_scan_finds_imports_at_any_depth() -> None:
    source = (
        "import mlflow\n"
        "def f():\n"
        "    from mlflow.entities import Metric\n"
        "    import mlflow.artifacts as a\n"
        "from polylora.record import writer\n"
        "from .mlflow import x\n"
    )
    assert sorted(mlflow_imports(ast.parse(source))) == [
        (1, "mlflow"), (3, "mlflow.entities"), (4, "mlflow.artifacts")]


def test_the_record_and_tracking_layer_are_where_mlflow_is_used() -> None:
    owners = [rel for rel, path in package_sources()
              if rel.startswith(MLFLOW_OWNERS)
              and list(mlflow_imports(ast.parse(path.read_text(encoding="utf-8"))))]
    assert "polylora/record/reader.py" in owners and "polylora/record/writer.py" in owners
