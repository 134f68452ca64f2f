"""Every recorded name is spelled once, in :mod:`polylora.record.names`: a scan of the package's
source (``ast``, nothing imported) fails on a string that looks like a tag or metric name
anywhere else, and the name helpers spell the names the rest of polylora reads back.

What counts as a recorded name:

* a metric: a string (or an f-string's head) made only of name characters that starts with
  one of :data:`METRIC_PREFIXES`, e.g. ``"train/loss"`` or ``f"data/truncated_{split}"``;
  prose such as ``"train/eval gap of ..."`` has other characters and is not one;
* a tag: ``polylora.<something>`` (also inside backticks of an MLflow filter) that is not a
  module of the package or a module-level name of one (a Hydra ``_target_``), nor the name
  given to ``OmegaConf.register_resolver`` (a config interpolation, not a record).

Docstrings and other bare string statements are documentation, not names.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO, package_sources

from polylora.record import names

#: Where every recorded name is declared.
RECORD = "polylora/record/"

#: First path segments of metric names: those of every metric names.py declares (checked by
#: ``test_prefixes_cover_every_declared_metric``).
METRIC_PREFIXES = (
    "train/", "eval/", "val/", "test/", "run/", "model/", "data/", "merge/", "generation/",
    "judge/", "compare/", "cluster/", "study/", "trials/", "best/", "system/", "sweep/",
)
_NAME_CHARS = r"[\w@.\-/]*"
METRIC = re.compile(rf"^(?:{'|'.join(re.escape(p) for p in METRIC_PREFIXES)}){_NAME_CHARS}$")
TAG = re.compile(r"^polylora\.[A-Za-z_][\w.]*$")
TAG_IN_FILTER = re.compile(r"`(polylora\.[A-Za-z_][\w.]*)`")


@functools.cache
def _top_level_names(module_file: Path) -> frozenset[str]:
    """Names a module defines at module level (functions, classes, assignments, imports)."""
    tree = ast.parse(module_file.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            found.update((a.asname or a.name).split(".")[0] for a in node.names)
    return frozenset(found)


def is_module_path(dotted: str) -> bool:
    """``polylora.a.b`` names a module of the package, or ``polylora.a.b.Name`` a module-level
    name of one (a Hydra ``_target_``)."""
    parts = dotted.rstrip(".").split(".")
    for cut in range(len(parts), 1, -1):
        base = REPO.joinpath(*parts[:cut])
        module_file = base.with_suffix(".py")
        if not module_file.is_file():
            module_file = base / "__init__.py"
        if not module_file.is_file():
            continue
        rest = parts[cut:]
        return not rest or (len(rest) <= 2 and rest[0] in _top_level_names(module_file))
    return False


def _documentation(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings or other bare string statements."""
    return {id(node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}


def _resolver_names(tree: ast.AST) -> set[int]:
    """ids of the first argument of ``register_resolver(...)`` calls (interpolation names)."""
    out = set()
    for node in ast.walk(tree):
        called = getattr(node, "func", None)
        if (isinstance(node, ast.Call) and node.args
                and getattr(called, "attr", getattr(called, "id", "")) == "register_resolver"):
            out.add(id(node.args[0]))
    return out


def looks_recorded(text: str) -> str | None:
    """The recorded name ``text`` spells (whole, or as the head of an f-string), or None."""
    if METRIC.match(text):
        return text
    if TAG.match(text) and not is_module_path(text):
        return text
    for tag in TAG_IN_FILTER.findall(text):
        if not is_module_path(tag):
            return tag
    return None


def name_literals(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """``(line, text)`` of every string constant or f-string head that looks recorded."""
    skip = _documentation(tree) | _resolver_names(tree)
    inside_fstrings: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            inside_fstrings.update(id(v) for v in ast.walk(node) if v is not node)
            head = node.values[0] if node.values else None
            if (isinstance(head, ast.Constant) and isinstance(head.value, str)
                    and (name := looks_recorded(head.value)) is not None):
                yield node.lineno, name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                and id(node) not in skip and id(node) not in inside_fstrings
                and (name := looks_recorded(node.value)) is not None):
            yield node.lineno, name


def test_no_recorded_name_is_spelled_outside_record() -> None:
    found = []
    for rel, path in package_sources(skip=(RECORD,)):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
        found += [f"{rel}:{line}: {text!r}" for line, text in sorted(set(name_literals(tree)))]
    assert not found, (
        "recorded names spelled outside polylora/record/ (declare each in "
        "polylora/record/names.py and use the constant):\n" + "\n".join(found)
    )


@pytest.mark.parametrize("source, expected", [
    ('x = "train/loss"', ["train/loss"]),
    ('x = f"data/truncated_{split}"', ["data/truncated_"]),
    ('x = f"polylora.warning.{kind}"', ["polylora.warning."]),
    ('x = "polylora.host"', ["polylora.host"]),
    ("x = f\"tags.`polylora.launch` = '{v}'\"", ["polylora.launch"]),
    ('"""A docstring naming train/loss and polylora.kind."""', []),
    ('x = "train/eval gap of 0.3"', []),
    ('x = f"train/epoch: step {s}"', []),
    ('x = "polylora.objectives.ce.CrossEntropyObjective"', []),
    ('x = "polylora.record.names"', []),
    ('OmegaConf.register_resolver("polylora.example", f)', []),
])
def test_the_scan_tells_names_from_module_paths_and_prose(source: str,
                                                          expected: list[str]) -> None:
    assert [text for _, text in name_literals(ast.parse(source))] == expected


def _declared() -> dict[str, str]:
    return {k: v for k, v in vars(names).items() if k.isupper() and isinstance(v, str)}


def test_prefixes_cover_every_declared_metric() -> None:
    paths = ("_FILE", "_DIR", "_ARTIFACT", "_ARTIFACTS", "_URI", "_ENV", "_PREFIX", "_SUFFIX")
    metrics = {k: v for k, v in _declared().items()
               if "/" in v and not k.endswith(paths) and "://" not in v}
    families = [names.train_metric("x"), names.eval_metric("x"), names.truncated_metric("x"),
                names.peak_rss_after_metric("x"), names.cluster_size_metric(0),
                names.study_trials_metric("x"), names.trials_metric("x"),
                names.best_metric("x"), names.data_size_metric("x")]
    assert metrics, "names.py declares metric names"
    uncovered = [v for v in [*metrics.values(), *families] if not METRIC.match(v)]
    assert not uncovered, f"add their prefixes to METRIC_PREFIXES: {uncovered}"


def test_every_declared_name_is_spelled_once() -> None:
    by_value: dict[str, list[str]] = {}
    for key, value in _declared().items():
        by_value.setdefault(value, []).append(key)
    aliases = {"ADAPTER_DIR", "ADAPTER_ARTIFACTS"}  # the folder and its artifact path
    twice = {v: ks for v, ks in by_value.items() if len(ks) > 1 and not set(ks) <= aliases}
    assert not twice, f"one name, several constants: {twice}"


def test_family_helpers_spell_what_runs_record() -> None:
    assert names.warning_tag("diversity_collapse") == "polylora.warning.diversity_collapse"
    assert names.provenance_tag("code.commit") == "polylora.code.commit"
    assert names.eval_metric("pass@10") == "eval/pass_at_10"
    assert names.train_metric("grad_norm") == "train/grad_norm"
    assert names.peak_rss_after_metric("eval") == "run/peak_rss_mb_after_eval"
    assert names.truncated_metric("test") == "data/truncated_test"
    assert names.study_trials_metric("PRUNED") == "study/trials_pruned"
    assert names.trials_metric("COMPLETE") == "trials/complete"
    assert names.best_metric("pass@1") == "best/pass_at_1"
    assert names.best_param_tag("lora.r") == "best_param.lora.r"
    assert names.cluster_size_metric(3) == "cluster/size_3"
