"""``polylora cluster``: assign k-means clusters (MiniLM embeddings) to the records of a JSONL.

Per-cluster work trains one adapter per cluster of personas and reports the clustering's silhouette
score (0.022 there: barely separated clusters). This step writes the cluster id into each
record (``--field``, default ``cluster``) so that ``data.partition_by=cluster`` trains one
adapter per cluster, saves the L2-normalized centroids (``.npy``, row i = cluster i) that
``polylora merge --method sparse_topk`` routes prompts with, and reports the silhouette and
cluster sizes (printed, in a summary JSON, and in an MLflow run when tracking is asked for).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from polylora.data.clustering import ClusterResult, Embedder, cluster_examples
from polylora.errors import ConfigError, DataError

#: Below this silhouette the clusters are hardly distinct (a failed clustering had 0.022).
LOW_SILHOUETTE = 0.1


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Every JSON object of a JSONL file, in order (blank lines skipped)."""
    from polylora.data.jsonl import read_lines  # BOM, CRLF, UTF-8 and path errors

    file = Path(path).expanduser()
    records = []
    for lineno, line in read_lines(file):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{file}:{lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise DataError(f"{file}:{lineno}: expected a JSON object per line")
        records.append(record)
    if not records:
        raise DataError(f"{file} holds no records (the file is empty)")
    return records


def record_text(record: dict[str, Any], text_field: str, where: str) -> str:
    """The text a record is clustered by: ``text_field``, or the user turns of ``messages``."""
    value = record.get(text_field)
    if value is None and text_field == "prompt" and isinstance(record.get("messages"), list):
        value = "\n".join(
            str(m.get("content", ""))
            for m in record["messages"]
            if isinstance(m, dict) and m.get("role") == "user"
        )
    if not isinstance(value, str) or not value.strip():
        raise DataError(
            f"{where}: no text in field {text_field!r} (keys: {', '.join(sorted(record))}); "
            "choose the field to cluster by with --text-field"
        )
    return value


def assign_clusters(
    records: Sequence[dict[str, Any]],
    k: int,
    seed: int = 0,
    field: str = "cluster",
    text_field: str = "prompt",
    embedder: Embedder | None = None,
    overwrite: bool = False,
) -> tuple[list[dict[str, Any]], ClusterResult]:
    """Copies of ``records`` with ``field`` set to their cluster id, and the clustering."""
    if field in ("id", "prompt", "response", "messages", "references"):
        raise ConfigError(f"--field {field!r} would overwrite the record's data; pick another")
    taken = [i for i, r in enumerate(records) if field in r]
    if taken and not overwrite:
        raise DataError(
            f"{len(taken)} record(s) already have a {field!r} field (first: record "
            f"{taken[0] + 1}); pass --overwrite to replace it or choose another --field"
        )
    texts = [record_text(r, text_field, f"record {i + 1}") for i, r in enumerate(records)]
    result = cluster_examples(texts, k, seed, embedder=embedder)
    out = []
    for record, label in zip(records, result.labels, strict=True):
        updated = dict(record)
        updated[field] = int(label)
        out.append(updated)
    return out, result


def summary(result: ClusterResult, k: int, seed: int, n_texts: int) -> dict[str, Any]:
    """JSON-friendly summary: silhouette (None when undefined), sizes, k, seed."""
    silhouette = None if math.isnan(result.silhouette) else float(result.silhouette)
    return {
        "k": k,
        "seed": seed,
        "n_texts": n_texts,
        "silhouette": silhouette,
        "sizes": result.sizes,
        "embedder": "all-MiniLM-L6-v2 (L2-normalized), k-means; silhouette with cosine distance",
    }


def write_outputs(
    records: Sequence[dict[str, Any]], result: ClusterResult, info: dict[str, Any], out: Path
) -> tuple[Path, Path, Path]:
    """Write the JSONL, ``<stem>.centroids.npy`` and ``<stem>.clusters.json`` beside it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    centroids = out.with_name(f"{out.stem}.centroids.npy")
    np.save(centroids, result.centroids.astype(np.float32))
    summary_path = out.with_name(f"{out.stem}.clusters.json")
    info = {**info, "output": str(out), "centroids": str(centroids)}
    summary_path.write_text(json.dumps(info, indent=2))
    return out, centroids, summary_path


def _log_to_mlflow(args: argparse.Namespace, info: dict[str, Any], files: Sequence[Path]) -> str:
    from polylora.record import names, tracking, writer

    uri = args.tracking_uri or _default_uri()
    tracking.setup(uri, args.experiment or "polylora")
    # No polylora.group tag: `polylora compare` groups model runs by it, and this run has no
    # eval metrics; polylora.kind marks it as a clustering step.
    tags = {
        names.KIND_TAG: names.CLUSTERING_KIND,
        names.CLUSTER_FIELD_TAG: args.field,
        names.CLUSTER_K_TAG: str(args.k),
    }
    with tracking.standalone_run(run_name=f"cluster k={args.k}", tags=tags) as run_id:
        writer.log_params(
            {
                "k": args.k,
                "seed": args.seed,
                "field": args.field,
                "text_field": args.text_field,
                "input": str(args.input),
                "n_texts": info["n_texts"],
            }
        )
        metrics = {names.cluster_size_metric(i): float(n) for i, n in enumerate(info["sizes"])}
        metrics[names.CLUSTER_MIN_SIZE] = float(min(info["sizes"]))
        if info["silhouette"] is not None:
            metrics[names.CLUSTER_SILHOUETTE] = info["silhouette"]
        writer.log_metrics(metrics)
        for path in files:
            writer.log_artifact(path, names.CLUSTERS_ARTIFACTS)
        return run_id


def _default_uri() -> str:
    from polylora.record.reader import resolve_tracking_uri

    return resolve_tracking_uri()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``polylora cluster``."""
    parser.add_argument("input", help="JSONL file to cluster (one JSON object per line)")
    parser.add_argument("output", help="JSONL to write: the records plus their cluster id")
    parser.add_argument("--k", type=int, default=5, help="number of clusters (default 5)")
    parser.add_argument("--field", default="cluster", help="field receiving the cluster id")
    parser.add_argument(
        "--text-field", default="prompt", help="field holding the text to embed (default prompt)"
    )
    parser.add_argument("--seed", type=int, default=0, help="k-means seed")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --field")
    parser.add_argument("--tracking-uri", help="log an MLflow run here (silhouette, sizes)")
    parser.add_argument("--experiment", help="MLflow experiment for that run")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``polylora cluster``."""
    out = Path(args.output).expanduser()
    if out.resolve() == Path(args.input).expanduser().resolve():
        raise ConfigError("OUT must differ from IN (the input is read while OUT is written)")
    records = read_records(args.input)
    labelled, result = assign_clusters(
        records, args.k, args.seed, args.field, args.text_field, overwrite=args.overwrite
    )
    info = summary(result, args.k, args.seed, len(records))
    files = write_outputs(labelled, result, info, out)
    sil = info["silhouette"]
    sil_text = "undefined" if sil is None else f"{sil:.3f}"
    print(f"clustered {len(records)} records into k={args.k}: silhouette={sil_text}")
    print("sizes: " + ", ".join(f"{i}: {n}" for i, n in enumerate(info["sizes"])))
    if sil is not None and sil < LOW_SILHOUETTE:
        print(
            f"note: silhouette < {LOW_SILHOUETTE}: the clusters barely separate, so per-cluster "
            "adapters may not beat one unified adapter (a failed persona clustering had 0.022)"
        )
    print(f"wrote {files[0]} (field {args.field!r}), centroids {files[1]}, summary {files[2]}")
    if args.tracking_uri or args.experiment:
        run_id = _log_to_mlflow(args, info, files[1:])
        print(f"MLflow run {run_id}")
    return 0
