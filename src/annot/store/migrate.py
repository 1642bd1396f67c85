"""Reading a version-1 manifest (the untyped layout annot wrote before format version 2) as version 2.

Version 1 kept the build settings as one flat ``config`` object and the annotation defaults apart, recorded no
checksums, and decoded images without turning them upright by their EXIF orientation. The migration maps every
field to its typed place (files without checksums are checked for presence only; the encoder keeps its feature
cache key and decoding, so cached features and queries stay exactly as before) and is written back as version 2 the
next time the store changes. Settings that this annot no longer has are refused by name: test-time flips and crops,
a per-tag K exponent, and composites decoded at one size (stores made before composites decoded each part at its
own size).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from annot.errors import StoreError


def _file(path: Any) -> dict[str, Any] | None:
    return None if not path else {"path": str(path), "size": None, "sha256": None}


def migrate_v1(d: dict[str, Any], source: Path) -> dict[str, Any]:
    """The version-2 layout of version-1 manifest ``d``; a StoreError naming ``source`` for what cannot migrate."""
    config = dict(d["config"])
    annotation = dict(d.get("annotation") or {})
    encoder = dict(d["encoder"])
    projection = dict(d["projection"])
    index = dict(d["index"])
    gone = [flag for flag in ("flip", "crops") if encoder.get(flag) or config.get(flag)]
    if float(annotation.get("k_power") or config.get("k_power") or 0.0):
        gone.append("k-power")
    if "-strips" in str(encoder["name"]):
        gone.append("a -strips encoder")
    if "+" in str(encoder["name"]) and not encoder.get("own_sizes", False):
        gone.append("a composite encoder decoded at one size")
    if gone:
        raise StoreError(f"{source}: built with {', '.join(gone)}, which this version of annot no longer has "
                         "(BENCHMARKS.md measured none of them as a lever); index the corpus again without it")
    reg_x = float(config.get("reg_x", projection.get("reg_x")) or 0.3)
    reg_y = float(config.get("reg_y", projection.get("reg_y")) or 0.3)
    if reg_x != reg_y:
        raise StoreError(f"{source}: built with two ridges ({reg_x}, {reg_y}); this annot takes one; index again")
    settings = {
        "encoder": {"name": encoder["name"], "weights": config.get("weights")},
        "text": {"words": config.get("words", d["words"]["source"]), "view": config.get("text", d["text"]),
                 "vocabulary": config.get("vocabulary")},
        "projection": {"kind": projection["kind"], "n_components": config.get("n_components"), "reg": reg_x,
                       "normalization": projection.get("normalization", "none"),
                       "landmarks": config.get("landmarks", "auto"),
                       "gamma_scale": float(config.get("gamma_scale", 1.0)),
                       "text_kernel": projection.get("text_kernel", "linear"),
                       "text_gamma_scale": float(config.get("text_gamma_scale", 1.0)),
                       "space": projection.get("space", "image")},
        "index": {"kind": config.get("index", "auto"), "memory_budget": config.get("memory_budget", "4GB"),
                  "tag_agreement": float(config.get("tag_agreement", 0.9))},
        "scoring": {"method": annotation.get("method", "cca-knn"), "n_tags": int(annotation.get("n_tags", 5)),
                    "k": int(annotation.get("k", 5)), "temperature": float(annotation.get("temperature", 0.1)),
                    "frequency_power": float(annotation.get("frequency_power") or 0.0),
                    "depth": int(annotation.get("depth") or 0), "score": annotation.get("score", "eq5")},
        "feature_dtype": d.get("feature_dtype", config.get("feature_dtype", "float32")),
        "batch_size": int(config.get("batch_size", 32)),
        "strict": bool(config.get("strict", False)),
        "ray": config.get("ray"),
    }
    tuning = {k: index.get(k) for k in ("recall_at_10", "recall_at_depth", "recall_depth", "tag_agreement")}
    tuning["tried"] = index.get("tuning") or []
    standards = d.get("standards")
    cnnr = d.get("cnnr")
    return {
        "format_version": 1,  # what the file on disk holds; written back as version 2
        "updated_at": d.get("updated_at", ""),
        "settings": settings,
        "encoder": {"name": encoder["name"], "key": encoder["key"], "dim": int(encoder["dim"]),
                    "weights": encoder.get("weights"), "orientation": "none"},
        "words": d["words"],
        "projection": {"file": _file(projection["file"]), "statistics": _file(projection.get("statistics")),
                       "n_components": int(projection["n_components"]),
                       "canonical_correlations": projection["canonical_correlations"]},
        "index": {"file": _file(index["file"]), "ids": _file(index["ids_file"]), "labels": None,
                  "factory": index.get("factory") or index.get("kind") or "Flat", "ntotal": int(index["ntotal"]),
                  "search": index.get("search") or {}, "tuning": tuning},
        "word_index": {"file": _file(d["word_index"]["file"]), "ntotal": int(d["word_index"]["ntotal"])},
        "vocabulary": d["vocabulary"],
        "counts": d["counts"],
        "standards": None if not standards else {"file": _file(standards["file"]), "key": standards["key"]},
        "methods": {name: {"file": _file(m["file"]), "params": m["params"], "training": m["training"],
                           "fit_seconds": m.get("fit_seconds", 0.0), "fitted_at": m.get("fitted_at", "")}
                    for name, m in (d.get("methods") or {}).items()},
        "cnnr": None if not cnnr else {"file": _file(cnnr["file"]),
                                       "info": {k: v for k, v in cnnr.items() if k != "file"}},
    }
