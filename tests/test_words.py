"""Word vectors from files, multi-word tags, and tags the vectors do not cover."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from annot.errors import AnnotError, WordVectorError
from annot.features.words import load_word_vectors
from annot.indexer import build_index
from conftest import fake_settings


def test_glove_text_without_header_and_multi_word_tags(tmp_path: Path) -> None:
    f = tmp_path / "glove.txt"
    f.write_text("polar 1 0 0\nbear 0 1 0\nwhite-tailed 0 0 1\nsky 1 1 1\n")
    words = load_word_vectors(f)
    assert words.dim == 3
    np.testing.assert_allclose(words.vector("polar bear"), [0.5, 0.5, 0])  # mean of the parts
    np.testing.assert_allclose(words.vector("white-tailed"), [0, 0, 1])  # its own vector first
    assert words.vector("polar cat") is None
    E, missing = words.matrix(["sky", "cat"])
    assert missing == ["cat"] and E[1].tolist() == [0, 0, 0]


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(WordVectorError, match="nope.txt: no such word-vector file"):
        load_word_vectors(tmp_path / "nope.txt")


@pytest.mark.slow
def test_uncovered_tags_and_untagged_images_are_reported(synthetic: dict[str, Path], tmp_path: Path) -> None:
    partial = tmp_path / "partial.txt"
    lines = synthetic["words"].read_text().splitlines()
    partial.write_text("\n".join([f"{len(lines) - 2} 6"] + [l for l in lines[1:] if not l.startswith("snow ")]) + "\n")
    corpus = tmp_path / "train.jsonl"
    rows = [json.loads(l) for l in synthetic["train"].read_text().splitlines()[:60]]
    rows[0]["tags"] = []
    corpus.write_text("".join(json.dumps({"image": str(synthetic["folder"] / r["image"]), "tags": r["tags"]}) + "\n" for r in rows))
    report = build_index(corpus, tmp_path / "s.annot", fake_settings({"words": partial}, text="w2v"))
    assert report.missing_word_vectors == ["snow"]
    only_snow = sum(1 for r in rows if r["tags"] == ["snow"])
    assert report.untagged == 1 + only_snow  # no tag the W2V view can represent
    assert report.n_indexed == 60 - report.untagged
    with pytest.raises(AnnotError, match="no vector for 1 tags: snow"):
        build_index(corpus, tmp_path / "strict.annot", fake_settings({"words": partial}, strict=True))


@pytest.mark.slow
def test_minilm_gives_every_tag_a_unit_vector_with_meaning() -> None:
    words = load_word_vectors("minilm")
    assert words.source == "minilm" and words.dim == 384
    tags = ["sea", "ocean", "car", "polar bear", "f-16", "snowy_owl"]
    E, missing = words.matrix(tags)
    assert missing == [] and E.shape == (6, 384)
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(words.vector("ocean"), E[1], atol=1e-5)  # one word alone = the same word in a batch
    assert E[0] @ E[1] > E[0] @ E[2] + 0.2  # sea is nearer ocean than car
    with pytest.raises(WordVectorError, match="minilm: .*open-vocabulary"):
        words.open_vocabulary()


@pytest.mark.slow
def test_index_with_minilm_word_vectors(synthetic: dict[str, Path], tmp_path: Path) -> None:
    report = build_index(synthetic["train"], tmp_path / "s.annot", fake_settings({"words": "minilm"}, text="w2v"))
    manifest = json.loads((tmp_path / "s.annot" / "manifest.json").read_text())
    assert manifest["words"] == {"source": "minilm", "dim": 384}
    assert report.missing_word_vectors == [] and report.n_indexed > 0
    assert manifest["projection"]["n_components"] <= 384


@pytest.mark.slow
def test_the_packaged_glove_is_read_without_gensim() -> None:
    """`glove-50` is a word table read from its package (vectors memory-mapped): a search by a word does not pay
    for importing gensim, and the vectors are GloVe's."""
    import subprocess
    import sys

    code = ("import sys; from annot.features.words import load_word_vectors; w = load_word_vectors('glove-50'); "
            "v = w.vector('sky'); m, missing = w.matrix(['sky', 'polar bear', 'zzzqqq']); "
            "print(w.dim, len(w.open_vocabulary()[0]), round(float(v @ w.vector('clouds')), 3), missing, "
            "bool(abs(m[1] - (w.vector('polar') + w.vector('bear')) / 2).max() < 1e-6), 'gensim' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "50" and out[1] == "400000" and float(out[2]) > 10  # sky and clouds are close in GloVe
    assert out[3:] == ["['zzzqqq']", "True", "False"]
