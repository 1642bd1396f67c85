"""Baselines over a store: `annot fit` keeps them, `annot query/eval --method` uses them, and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from annot.errors import StoreError
from annot.indexer import build_index
from annot.methods import method_class
from annot.model import StoreModel
from annot.store import StoreDir
from conftest import fake_settings, invoke


def fit_baseline(store: Path, name: str):  # type: ignore[no-untyped-def]
    model = StoreModel(StoreDir.open(store, write=True))
    try:
        return method_class(name).fit(model)
    finally:
        model.close()


def load_baseline(store: StoreDir, name: str):  # type: ignore[no-untyped-def]
    return method_class(name).open(StoreModel(store)).fitted  # type: ignore[attr-defined]


@pytest.mark.slow
def test_fit_keeps_parameters_and_eval_records_them(store: Path, synthetic: dict[str, Path]) -> None:
    result = invoke("fit", "tagprop", "--store", store, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["params"]["variant"] in ("distance", "rank") and report["fit_seconds"] > 0
    assert (store / report["file"]).is_file()

    result = invoke("eval", synthetic["test"], "--store", store, "--method", "tagprop", "--json")
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)
    assert run["method"] == "tagprop" and run["params"]["variant"] == report["params"]["variant"]
    assert run["summary"]["R"] > 50  # the synthetic tags are painted colours: any working method finds most

    result = invoke("sql", "SELECT method, count(*) AS n FROM runs JOIN predictions ON predictions.run_id = runs.id "
                    "GROUP BY method", "--store", store, "--json")
    assert result.exit_code == 0, result.output
    assert {"method": "tagprop", "n": 200} in json.loads(result.stdout)

    info = json.loads(invoke("info", "--store", store, "--json").stdout)
    assert "tagprop" in info["fitted_methods"]

    refit = fit_baseline(store, "tagprop")  # a refit replaces the file; the old one is kept one generation
    assert (store / report["file"]).exists() and (store / refit.file).is_file()  # (a reader may have just read it)
    again = fit_baseline(store, "tagprop")
    assert not (store / report["file"]).exists() and (store / refit.file).is_file() and (store / again.file).is_file()


@pytest.mark.slow
def test_query_with_a_baseline_gives_evidence(store: Path, synthetic: dict[str, Path]) -> None:
    image = synthetic["folder"] / json.loads(synthetic["test"].read_text().splitlines()[0])["image"]
    for method in ("jec", "2pknn", "mbrm"):  # these choose their settings on the fly when not fitted
        result = invoke("query", image, "--store", store, "--method", method, "--json", "--explain", "-n", "3")
        assert result.exit_code == 0, result.output
        tags = json.loads(result.stdout)["annotations"][0]["tags"]
        assert len(tags) == 3 and all(t["evidence"] for t in tags), method
        scores = [t["score"] for t in tags]
        assert scores == sorted(scores, reverse=True)


def test_an_unfitted_trained_method_is_a_clear_error(store: Path, synthetic: dict[str, Path]) -> None:
    image = synthetic["folder"] / json.loads(synthetic["test"].read_text().splitlines()[0])["image"]
    result = invoke("query", image, "--store", store, "--method", "svm-dmbrm")
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "annot fit svm-dmbrm" in lines[0] and str(store) in lines[0]
    result = invoke("fit", "bogus", "--store", store)
    assert result.exit_code == 2 and "must be one of" in result.output and "'bogus'" in result.output


@pytest.mark.slow
def test_restored_baseline_predicts_as_the_fitted_one(store: Path) -> None:
    fit_baseline(store, "2pknn-ml")
    with StoreDir.open(store) as s:
        restored = load_baseline(s, "2pknn-ml")
        fresh = type(restored)(restored.data)
        fresh.fit()
        X = restored.data.X[:10]
        a, _ = restored.annotate(X, 4)
        b, _ = fresh.annotate(X, 4)
        assert [x.words.tolist() for x in a] == [y.words.tolist() for y in b]
        np.testing.assert_allclose(restored.w, fresh.w, rtol=1e-5)


@pytest.mark.slow
def test_fitted_methods_do_not_survive_a_rebuild_on_other_images(store: Path, synthetic: dict[str, Path]) -> None:
    fit_baseline(store, "svm-dmbrm")
    with StoreDir.open(store) as s:
        entry = s.manifest().methods["svm-dmbrm"]
    manifest = json.loads((store / "manifest.json").read_text())
    manifest["methods"]["svm-dmbrm"]["training"] = "0" * 16  # as if fitted on other training images
    (store / "manifest.json").write_text(json.dumps(manifest))
    with StoreDir.open(store) as s, pytest.raises(StoreError, match="fitted on other training images"):
        load_baseline(s, "svm-dmbrm")
    build_index(synthetic["train"], store, fake_settings(synthetic, k=3, temperature=0.1))
    with StoreDir.open(store) as s:
        assert not s.manifest().methods
    assert not (store / entry.file.path).exists()
