"""Corpus files: both formats, tag normalisation, vocabulary, and every malformed input named with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from annot.errors import CorpusError
from annot.indexer.corpus import normalize_tag, read_corpus, read_vocabulary


def test_jsonl_paths_are_relative_to_the_file_and_tags_normalised(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    f = tmp_path / "sub" / "c.jsonl"
    f.write_text('{"image": "a.jpg", "tags": ["  Polar   Bear ", "SKY", "sky"]}\n\n{"image": "b.jpg", "tags": []}\n')
    corpus = read_corpus(f)
    assert [e.path for e in corpus.entries] == [tmp_path / "sub" / "a.jpg", tmp_path / "sub" / "b.jpg"]
    assert corpus.entries[0].tags == ("polar bear", "sky")
    assert corpus.entries[0].line == 1 and corpus.entries[1].line == 3
    assert corpus.vocabulary == ("polar bear", "sky") and corpus.n_untagged == 1


def test_csv_with_semicolons_or_spaces(tmp_path: Path) -> None:
    f = tmp_path / "c.csv"
    f.write_text("image,tags\na.jpg,polar bear;ice\nb.jpg,sky sun\nc.jpg\n")
    corpus = read_corpus(f)
    assert [e.tags for e in corpus.entries] == [("polar bear", "ice"), ("sky", "sun"), ()]


def test_vocabulary_restricts_orders_and_counts_dropped(tmp_path: Path) -> None:
    v = tmp_path / "v.txt"
    v.write_text("sun\nsky\n")
    f = tmp_path / "c.jsonl"
    f.write_text('{"image": "a.jpg", "tags": ["sky", "cat", "sun", "cat"]}\n{"image": "b.jpg", "tags": ["cat"]}\n')
    corpus = read_corpus(f, read_vocabulary(v))
    assert corpus.vocabulary == ("sun", "sky")
    assert corpus.entries[0].tags == ("sky", "sun")
    assert corpus.dropped_tags == {"cat": 2}


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("c.jsonl", '{"image": "a.jpg"}\n{"image": "b.jpg", "tags": [1]\n', r"c\.jsonl:2: not valid JSON"),
        ("c.jsonl", '{"image": "a.jpg"}\n{"tags": ["x"]}\n', r"c\.jsonl:2: expected an object"),
        ("c.jsonl", '{"image": "a.jpg", "tags": [1, 2]}\n', r"c\.jsonl:1: \"tags\" must be a list of strings"),
        ("c.jsonl", '{"image": "a.jpg"}\n{"image": "./a.jpg"}\n', r"c\.jsonl:2: duplicate image \./a\.jpg \(first on line 1\)"),
        ("c.jsonl", "\n\n", r"c\.jsonl: no images listed"),
        ("c.csv", "image,tags\na.jpg,x,y\n", r"c\.csv:2: expected 2 columns"),
        ("c.txt", "a.jpg\n", r"unknown corpus format"),
    ],
)
def test_malformed_input_names_file_and_line(tmp_path: Path, name: str, content: str, message: str) -> None:
    f = tmp_path / name
    f.write_text(content)
    with pytest.raises(CorpusError, match=message):
        read_corpus(f)


def test_missing_file_and_bad_vocabulary(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="no such file"):
        read_corpus(tmp_path / "nope.jsonl")
    v = tmp_path / "v.txt"
    v.write_text("sky\nSky\n")
    with pytest.raises(CorpusError, match=r"v\.txt:2: word 'sky' repeats line 1"):
        read_vocabulary(v)


def test_normalize_tag() -> None:
    assert normalize_tag("\tWhite-Tailed  DEER\n") == "white-tailed deer"
