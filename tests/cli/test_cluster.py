"""``polylora cluster``: writes the cluster id into each record, reports the silhouette,
saves centroids for routing, logs to MLflow on request; bad input is one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest

from polylora.cli.main import main

COOKING = [
    "Roast the chicken with garlic, rosemary and lemon until the skin is golden.",
    "Caramelize the onions slowly in butter before adding the beef stock.",
    "Knead the bread dough, let it rise, then bake it in a hot oven.",
    "Simmer the tomato sauce with basil, oregano and a pinch of sugar.",
    "Whisk eggs, milk and cheese for a fluffy omelette with fresh herbs.",
    "Marinate the salmon in soy sauce, ginger and honey before grilling.",
    "Boil the potatoes in salted water and mash them with cream.",
    "Fold the chocolate into the whipped cream for a light mousse dessert.",
    "Season the beef stew with thyme, bay leaves and black pepper.",
    "Toast the spices in oil, then stir in the lentils and coconut milk.",
]
CODE = [
    "The Python function raises a TypeError when the input list is empty.",
    "A segmentation fault occurs when the C program dereferences a null pointer.",
    "Merging the feature branch in git produced conflicts in three source files.",
    "The JavaScript build fails because a module import path is misspelled.",
    "The unit test mocks the file system so the parser can be tested.",
    "Two threads update the shared counter without a lock, causing a race condition.",
    "The Java method throws a NullPointerException when the config object is missing.",
    "The Rust compiler rejects a mutable borrow of the vector inside the loop.",
    "The compiler reports an undefined variable in the recursive sorting function.",
    "The Go HTTP handler decodes the JSON request body into a struct.",
]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def texts_file(tmp_path: Path) -> Path:
    records = [
        {"id": f"t{i:02d}", "prompt": text, "response": "ok", "topic": topic}
        for i, (text, topic) in enumerate(
            [(t, "cooking") for t in COOKING] + [(t, "code") for t in CODE]
        )
    ]
    return write_jsonl(tmp_path / "in.jsonl", records)


def test_cluster_cli_writes_field_silhouette_and_centroids(
    texts_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], mlflow_uri: str
) -> None:
    out = tmp_path / "out" / "clustered.jsonl"
    code = main(
        [
            "cluster",
            str(texts_file),
            str(out),
            "--k",
            "2",
            "--seed",
            "0",
            "--tracking-uri",
            mlflow_uri,
            "--experiment",
            "cluster-test",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "silhouette=" in printed
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 20
    assert all(set(r) == {"id", "prompt", "response", "topic", "cluster"} for r in records)
    # Two clearly different topics: each topic lands in one cluster of its own.
    by_topic = {
        topic: {r["cluster"] for r in records if r["topic"] == topic}
        for topic in ("cooking", "code")
    }
    assert all(len(labels) == 1 for labels in by_topic.values())
    assert by_topic["cooking"] != by_topic["code"]

    centroids = np.load(out.with_name("clustered.centroids.npy"))
    assert centroids.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, rtol=1e-5)
    info = json.loads(out.with_name("clustered.clusters.json").read_text())
    assert sorted(info["sizes"]) == [10, 10]
    assert 0.0 < info["silhouette"] <= 1.0
    assert f"silhouette={info['silhouette']:.3f}" in printed
    # The centroid of a cluster is nearest to that cluster's own texts.
    from polylora.data.embeddings import get_embedder

    vectors = get_embedder().encode([r["prompt"] for r in records])
    nearest = np.argmax(vectors @ centroids.T, axis=1)
    assert nearest.tolist() == [r["cluster"] for r in records]

    client = mlflow.MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("cluster-test")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.metrics["cluster/silhouette"] == pytest.approx(info["silhouette"])
    assert run.data.params["k"] == "2"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "clusters")}
    assert "clusters/clustered.centroids.npy" in artifacts


def _assert_one_line_error(capsys: pytest.CaptureFixture[str], *needles: str) -> None:
    err = capsys.readouterr().err.strip()
    assert err.startswith("polylora: error: ") and "\n" not in err, err
    for needle in needles:
        assert needle in err, err


def test_k_larger_than_the_data_is_a_clear_error(
    texts_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["cluster", str(texts_file), str(tmp_path / "o.jsonl"), "--k", "21"])
    assert code == 2
    _assert_one_line_error(capsys, "k=21", "20")
    assert not (tmp_path / "o.jsonl").exists()


def test_existing_field_needs_overwrite(
    texts_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["cluster", str(texts_file), str(tmp_path / "o.jsonl"), "--field", "topic"])
    assert code == 2
    _assert_one_line_error(capsys, "'topic'", "--overwrite")


def test_missing_text_field_names_the_record(
    texts_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["cluster", str(texts_file), str(tmp_path / "o.jsonl"), "--text-field", "persona"])
    assert code == 2
    _assert_one_line_error(capsys, "record 1", "'persona'", "--text-field")
