"""Stores of format version 1 (the untyped manifest annot wrote before format 2) open, annotate and evaluate as they
did, and are written back as version 2 when they change; what cannot migrate is refused by name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from annot.evaluation.evaluate import evaluate
from annot.indexer import build_index
from annot.model import StoreModel
from annot.schema.layered import fold_into_base
from annot.store import StoreDir
from conftest import fake_settings, invoke, make_corpus


def downgrade(store: Path) -> None:
    """Rewrite a store as annot wrote format 1: its manifest in the version-1 layout (as build_index wrote it, every
    key), no checksums, no indexed-tags file, and its feature cache under the version-1 key (no EXIF decoding)."""
    m = json.loads((store / "manifest.json").read_text())
    s, p, i = m["settings"], m["projection"], m["index"]
    config = {"batch_size": s["batch_size"], "crops": False, "depth": s["scoring"]["depth"],
              "encoder": s["encoder"]["name"], "feature_dtype": s["feature_dtype"], "flip": False,
              "frequency_power": s["scoring"]["frequency_power"], "gamma_scale": s["projection"]["gamma_scale"],
              "index": s["index"]["kind"], "k": s["scoring"]["k"], "k_power": 0.0,
              "landmarks": s["projection"]["landmarks"], "memory_budget": s["index"]["memory_budget"],
              "method": s["scoring"]["method"], "n_components": s["projection"]["n_components"],
              "normalization": s["projection"]["normalization"], "projection": s["projection"]["kind"],
              "ray": s["ray"], "reg_x": s["projection"]["reg"], "reg_y": s["projection"]["reg"],
              "score": s["scoring"]["score"], "space": s["projection"]["space"], "strict": s["strict"],
              "tag_agreement": s["index"]["tag_agreement"], "temperature": s["scoring"]["temperature"],
              "text": s["text"]["view"], "text_gamma_scale": s["projection"]["text_gamma_scale"],
              "text_kernel": s["projection"]["text_kernel"], "vocabulary": s["text"]["vocabulary"],
              "weights": s["encoder"]["weights"], "words": s["text"]["words"]}
    key = m["encoder"]["key"].removesuffix("-exif")
    (store / "features" / m["encoder"]["key"]).rename(store / "features" / key)
    (store / i["labels"]["path"]).unlink()
    v1 = {
        "annotation": {"method": s["scoring"]["method"], "n_tags": s["scoring"]["n_tags"], "k": s["scoring"]["k"],
                       "temperature": s["scoring"]["temperature"], "frequency_power": s["scoring"]["frequency_power"],
                       "depth": s["scoring"]["depth"], "k_power": 0.0, "score": s["scoring"]["score"]},
        "config": config,
        "counts": m["counts"],
        "encoder": {"crops": False, "dim": m["encoder"]["dim"], "flip": False, "key": key, "name": m["encoder"]["name"],
                    "own_sizes": True, "weights": m["encoder"]["weights"]},
        "feature_dtype": s["feature_dtype"],
        "format_version": 1,
        "index": {"factory": i["factory"], "file": i["file"]["path"], "ids_file": i["ids"]["path"], "kind": i["factory"],
                  "metric": "correlation", "ntotal": i["ntotal"], "search": i["search"],
                  "recall_at_10": i["tuning"].get("recall_at_10"), "recall_at_depth": i["tuning"].get("recall_at_depth"),
                  "recall_depth": i["tuning"].get("recall_depth"), "tag_agreement": i["tuning"].get("tag_agreement"),
                  "tuning": i["tuning"].get("tried", [])},
        "projection": {"canonical_correlations": p["canonical_correlations"], "file": p["file"]["path"],
                       "gamma_scale": None, "kind": s["projection"]["kind"], "landmarks": None,
                       "n_components": p["n_components"], "normalization": s["projection"]["normalization"],
                       "reg_x": s["projection"]["reg"], "reg_y": s["projection"]["reg"], "space": s["projection"]["space"],
                       "statistics": p["statistics"]["path"] if p["statistics"] else None, "text_gamma_scale": None,
                       "text_kernel": s["projection"]["text_kernel"]},
        "text": s["text"]["view"],
        "updated_at": m["updated_at"],
        "vocabulary": m["vocabulary"],
        "word_index": {"file": m["word_index"]["file"]["path"], "ntotal": m["word_index"]["ntotal"]},
        "words": m["words"],
    }
    if m.get("standards"):
        v1["standards"] = {"file": m["standards"]["file"]["path"], "key": m["standards"]["key"]}
    (store / "manifest.json").write_text(json.dumps(v1, indent=2, sort_keys=True))
    database = m["database"]  # one database file, annot.duckdb, as annot wrote before layers
    fold_into_base(store / database["base"]["path"], [store / s["path"] for s in database["segments"]],
                   store / "annot.duckdb", lambda path: None)
    shutil.rmtree(store / "db")


@pytest.mark.slow
def test_a_version_1_store_opens_annotates_and_evaluates_as_before(store: Path, synthetic: dict[str, Path],
                                                                  tmp_path: Path) -> None:
    before = evaluate(store, synthetic["test"], record=False).summary
    image = synthetic["folder"] / json.loads(synthetic["test"].read_text().splitlines()[0])["image"]
    tags_before = json.loads(invoke("query", image, "--store", store, "--json").stdout)["annotations"][0]["tags"]
    old = tmp_path / "old.annot"
    shutil.copytree(store, old)
    downgrade(old)
    info = json.loads(invoke("info", "--store", old, "--json").stdout)
    assert info["format_version"] == 1 and info["encoder"]["orientation"] == "none"
    assert info["settings"]["scoring"]["k"] == 3 and info["index"]["ntotal"] == 160
    tags_old = json.loads(invoke("query", image, "--store", old, "--json").stdout)["annotations"][0]["tags"]
    # the same tags and scores (a version-1 store has no confidence calibration: annot index makes one)
    assert [(t["tag"], t["score"]) for t in tags_old] == [(t["tag"], t["score"]) for t in tags_before]
    assert all("confidence" not in t for t in tags_old) and all(0 <= t["confidence"] <= 1 for t in tags_before)
    after = evaluate(old, synthetic["test"], record=False).summary
    assert (after.precision, after.recall, after.f1, after.n_plus) == (before.precision, before.recall, before.f1,
                                                                        before.n_plus)
    # the features it cached stay its own: nothing is extracted again, under the key it had
    more = make_corpus(tmp_path / "more", 1, seed=9)
    result = invoke("add", more, "--store", old, "--json")
    assert result.exit_code == 0, result.output
    manifest = json.loads((old / "manifest.json").read_text())
    assert manifest["format_version"] == 2 and manifest["encoder"]["key"] == "fake"  # written back as version 2
    assert not (old / "features" / "fake-exif").exists()
    with StoreDir.open(old) as s:
        index = s.manifest().index
        assert index.labels is not None and all(f.sha256 for f in (index.file, index.ids, index.labels))
        assert StoreModel(s).index.ntotal == 161
    assert evaluate(old, synthetic["test"], record=False).summary.f1 == pytest.approx(before.f1)


@pytest.mark.slow
def test_a_standardized_version_1_store_keeps_its_saved_standards(synthetic: dict[str, Path], tmp_path: Path) -> None:
    store = tmp_path / "z.annot"
    build_index(synthetic["train"], store, fake_settings(synthetic, k=4, score="standardized-held-out"))
    before = evaluate(store, synthetic["test"], record=False).summary
    downgrade(store)
    after = evaluate(store, synthetic["test"], record=False).summary  # held-out standards cannot be recomputed here
    assert (after.f1, after.n_plus) == (before.f1, before.n_plus)


@pytest.mark.parametrize(("change", "message"), [
    ({"encoder": {"crops": True}}, "built with crops"), ({"encoder": {"flip": True}}, "built with flip"),
    ({"annotation": {"k_power": 0.5}}, "built with k-power"),
    ({"encoder": {"name": "efficientnet-lite2-strips", "key": "efficientnet-lite2-strips"}}, "a -strips encoder"),
    ({"encoder": {"name": "fake+fake@32", "own_sizes": False}}, "a composite encoder decoded at one size"),
    ({"format_version": 3}, "store format version 3; this annot reads versions 1 and 2"),
])
def test_what_cannot_migrate_is_refused_by_name(store: Path, change: dict[str, object], message: str) -> None:
    downgrade(store)
    manifest = json.loads((store / "manifest.json").read_text())
    for key, value in change.items():
        if isinstance(value, dict):
            manifest[key].update(value)
        else:
            manifest[key] = value
    (store / "manifest.json").write_text(json.dumps(manifest))
    result = invoke("info", "--store", store)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and message in " ".join(result.stderr.split()), result.stderr
