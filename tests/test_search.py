"""annot search: by tags, in the shared space (words outside the vocabulary too), by example, with filters."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import WORDS, invoke
from tests.test_library import make_photos

import annot
from annot.library.collection import annotate_photos


@pytest.fixture(scope="module")
def library(built_store: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A copy of the built store with 30 photos annotated in two folders."""
    root = tmp_path_factory.mktemp("library")
    store = root / "s.annot"
    shutil.copytree(built_store, store)
    photos = make_photos(root / "photos" / "a", 15, seed=21) | make_photos(root / "photos" / "b", 15, seed=22)
    annotate_photos(store, [root / "photos"])
    return {"store": store, "photos": photos, "root": root}


def tags_of(hit: annot.library.search.Hit) -> set[str]:  # type: ignore[name-defined]
    return {t.tag for t in hit.tags}


def test_by_tags_every_result_has_the_words(library: dict[str, object]) -> None:
    api = annot.open_store(library["store"])  # type: ignore[arg-type]
    for words in (["sky"], ["sea", "sand"]):
        hits = api.search(words, mode="tags", n=500, scope="all")
        assert hits and all(set(words) <= tags_of(h) for h in hits)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        assert {h.kind for h in hits} == {"training", "library"}
        assert all(h.found_by == ("tags",) for h in hits)
        mine = api.search(words, mode="tags", n=500)  # by default the library's photos, when it has any
        assert mine == [h for h in hits if h.kind == "library"] and api.search_scope() == "library"



def _by_tags_over_the_whole_view(searcher: object, words: list[str], every: bool, cut: float | None,
                                 ) -> tuple[list[int], list[float]]:
    """by_tags as a scan of every tag of the view (the reference the inverted lists must agree with)."""
    view = searcher.view  # type: ignore[attr-defined]
    total = None
    for word in dict.fromkeys(words):
        part = np.full(len(view), np.nan)
        for position, weight in searcher.expand(word):  # type: ignore[attr-defined]
            hit = (view.words == position) & (view.confidence >= (cut if cut is not None else -np.inf))
            rows = view.rows_of_tags[hit]
            part[rows] = np.fmax(part[rows], weight * view.confidence[hit].astype(np.float64))
        if not every:
            part = np.where(np.isnan(part), 0.0, part)
        total = part if total is None else total + part
    assert total is not None
    rows = np.flatnonzero(~np.isnan(total) & (total > 0 if not every else True))
    mean = total[rows] / len(dict.fromkeys(words))
    order = np.argsort(-mean, kind="stable")
    return rows[order].tolist(), mean[order].tolist()


def test_by_tags_from_the_words_photos_is_the_scan_of_every_tag(library: dict[str, object]) -> None:
    """The search by tags reads each word's photos from the view's inverted lists and sums them sparsely: the same
    rows, scores and order as scanning every tag, for one word, several, a word standing for others, with and
    without the evidence cut, all words or some."""
    api = annot.open_store(library["store"])  # type: ignore[arg-type]
    searcher = api._search()
    vocabulary = searcher.view.vocabulary
    read = searcher.expand
    stand_in = [(vocabulary.index("sky"), 0.9), (vocabulary.index("sea"), 0.7), (vocabulary.index("snow"), 0.6)]
    searcher.expand = lambda word: stand_in if word == "blue" else read(word)  # type: ignore[method-assign]
    cases = [["sky"], ["sea", "sand"], [vocabulary[0], vocabulary[-1], "sky"], ["blue"], ["blue", "sand"]]
    for words in cases:
        for every in (True, False):
            for cut in (None, 0.3):
                rows, scores = searcher.by_tags(words, every=every, cut=cut)
                want_rows, want_scores = _by_tags_over_the_whole_view(searcher, words, every, cut)
                assert rows.tolist() == want_rows, (words, every, cut)
                assert np.allclose(scores, want_scores), (words, every, cut)
    assert searcher.by_tags(["sky"])[0].size > 0 and searcher.by_tags(["sea", "sand"], every=False)[0].size > 0

def test_query_words_are_read_as_typed(library: dict[str, object]) -> None:
    """Case, punctuation around a word, extra spaces and a plural of a store word do not change a search."""
    api = annot.open_store(library["store"])  # type: ignore[arg-type]
    plain = api.search(["tree", "sky"], n=30)
    assert plain and api.search(["  Trees, ", "SKIES!", "tree"], n=30) == plain
    assert api.search(["f-16"], mode="tags") == []  # punctuation inside a word is kept (no such tag here)
    only_punctuation = invoke("search", "?!", "--store", library["store"])
    assert only_punctuation.exit_code == 1 and "say what to search for" in only_punctuation.stderr


def test_space_finds_photos_for_a_word_outside_the_vocabulary(library: dict[str, object]) -> None:
    api = annot.open_store(library["store"])  # type: ignore[arg-type]
    assert "unseen" not in api.model().vocabulary  # it has a word vector only
    # by tags it stands for its nearest vocabulary words: every result shows one of them
    by_tags = api.search(["unseen"], mode="tags", n=100)
    searcher = api._searcher
    assert searcher is not None
    stands_for = {searcher.view.vocabulary[j] for j, _ in searcher.expand("unseen")}
    assert all(stands_for & tags_of(h) for h in by_tags) and (bool(by_tags) == bool(stands_for))
    assert searcher.expand("sky") == [(searcher.view.vocabulary.index("sky"), 1.0)]
    hits = api.search(["unseen"], mode="space", n=10)
    assert len(hits) == 10 and all(h.found_by == ("space",) for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    with pytest.raises(annot.AnnotError, match="no word vector"):
        api.search(["qwertyzz"], mode="space")


def test_space_ranks_photos_with_the_word_first(library: dict[str, object]) -> None:
    """In the shared space a vocabulary word finds photos that show it: better than its share of the corpus."""
    api = annot.open_store(library["store"])  # type: ignore[arg-type]
    photos: dict[Path, list[str]] = library["photos"]  # type: ignore[assignment]
    for word in WORDS:
        hits = [h for h in api.search([word], mode="space", n=1000) if h.kind == "library"]
        top = hits[:5]
        share = sum(word in t for t in photos.values()) / len(photos)
        precision = sum(word in photos[Path(h.path)] for h in top) / len(top)
        assert precision >= min(1.0, share + 0.2), word


def test_combined_and_filters(library: dict[str, object]) -> None:
    api = annot.open_store(library["store"])  # type: ignore[arg-type]
    hits = api.search(["sky"], n=40)
    assert any(set(h.found_by) == {"tags", "space"} for h in hits)
    folder = Path(library["root"]) / "photos" / "b"  # type: ignore[arg-type]
    inside = api.search(["sky"], folder=folder, n=100)
    assert inside and all(h.path.startswith(str(folder.resolve()) + "/") for h in inside)
    required = api.search(["sky"], require=["sea"], exclude=["sun"], n=100, all_results=True)
    assert required and all("sea" in tags_of(h) and "sun" not in tags_of(h) for h in required)
    assert len(api.search(["sky"], n=3)) == 3
    mine = api.search(["sky"], scope="library", n=100)
    assert mine and all(h.kind == "library" for h in mine)
    theirs = api.search(["sky"], scope="training", n=100)
    assert theirs and all(h.kind == "training" for h in theirs)
    with pytest.raises(annot.AnnotError, match="search.scope must be one of"):
        api.search(["sky"], scope="mine")


def test_like_finds_the_photo_itself_first(library: dict[str, object]) -> None:
    api = annot.open_store(library["store"])  # type: ignore[arg-type]
    photos: dict[Path, list[str]] = library["photos"]  # type: ignore[assignment]
    for path in sorted(photos)[:5]:
        best = api.search(like=path, n=3)
        assert best[0].path == str(path) and best[0].score == pytest.approx(1.0, abs=1e-4)
        assert best[0].score >= best[1].score


@pytest.mark.slow
def test_search_cli(library: dict[str, object]) -> None:
    result = invoke("search", "sea", "sand", "--store", library["store"], "-n", "5", "--json", "--all")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)["results"]
    assert len(found) == 5 and all({"id", "path", "score", "kind", "tags"} <= set(r) for r in found)
    cut = json.loads(invoke("search", "sea", "sand", "--store", library["store"], "-n", "5", "--json").stdout)
    assert len(cut["results"]) <= 5 and cut["left_out"] >= 0 and cut["scope"] == "library"
    assert all(isinstance(t["confidence"], float) for r in found if r["kind"] == "library" for t in r["tags"])
    table = invoke("search", "sea", "--store", library["store"], "-n", "3")
    assert table.exit_code == 0 and "sea" in table.stdout
    nothing = invoke("search", "--store", library["store"])
    assert nothing.exit_code == 1 and "say what to search for" in nothing.stderr
    no_vector = invoke("search", "qwertyzz", "--mode", "space", "--store", library["store"])
    assert no_vector.exit_code == 1 and "'qwertyzz': no word vector" in no_vector.stderr
    mode = invoke("search", "sky", "--mode", "fuzzy", "--store", library["store"])
    assert mode.exit_code == 2 and "--mode must be one of" in mode.stderr  # a usage error, in the flag's name


def test_a_vocabulary_word_searches_by_its_word_index_row(built_store: Path) -> None:
    """One fitted vocabulary word's query row is read from the word index, and equals the row its text view gives
    through W_y (what several words, or a word outside the vocabulary, still compute)."""
    from annot.library.search import Searcher

    with annot.open_store(built_store) as api:
        searcher = Searcher(api.model())
        for word in api.model().vocabulary:
            fast = searcher.text_query([word])
            searcher._word_index, kept = None, searcher._word_row
            searcher._word_row = lambda w: None  # type: ignore[method-assign]
            slow = searcher.text_query([word])
            searcher._word_row = kept  # type: ignore[method-assign]
            np.testing.assert_allclose(fast, slow, atol=1e-5)


def test_a_search_ends_where_the_evidence_ends(library: dict[str, object]) -> None:
    """By tags, a photo counts where its tag for the word reaches the calibrated cut; the weaker matches are
    counted as left out, and --all shows them too. Combined: only photos with that evidence, the space orders them."""
    api = annot.open_store(library["store"])  # type: ignore[arg-type]
    searcher = api._search()
    cut = searcher.evidence_cut()
    assert cut is not None and 0 < cut < 1
    for word in WORDS:
        found = api.find([word], mode="tags", n=500)
        assert all(t.confidence >= cut for h in found.hits for t in h.tags if t.tag == word), word
        every = api.find([word], mode="tags", n=500, all_results=True)
        assert {h.image_id for h in found.hits} <= {h.image_id for h in every.hits}
        assert len(every.hits) - len(found.hits) == found.left_out and every.left_out == 0
        combined = api.find([word], n=500)
        assert {h.image_id for h in combined.hits} == {h.image_id for h in found.hits}, word
    said = invoke("search", "sky", "--store", library["store"], "--mode", "tags")
    weaker = api.find(["sky"], mode="tags", n=20).left_out
    assert said.exit_code == 0 and (f"{weaker:,} weaker matches left out" in said.stdout or weaker == 0)


@pytest.mark.slow
def test_a_word_in_another_language_finds_what_its_english_meaning_finds(library: dict[str, object]) -> None:
    """With the multilingual encoder (annot[multilingual], installed for the tests) a word in German, French or
    Spanish stands for the vocabulary word it means: the same photos in the same order as the English word."""
    api = annot.open_store(library["store"])  # type: ignore[arg-type]
    for given, english in (("Schnee", "snow"), ("soleil", "sun"), ("ciudad", "city"), ("arbre", "tree")):
        foreign, native = api.find([given], n=30), api.find([english], n=30)
        assert foreign.read_as == {given.lower(): [english]} and foreign.unknown == ()
        assert native.hits and foreign.hits == native.hits, given
        assert api.find([given], mode="space", n=10).hits == api.find([english], mode="space", n=10).hits
    both = api.find(["Schnee", "sky"], n=30)  # with a vocabulary word: the same as both in English
    assert both.hits == api.find(["snow", "sky"], n=30).hits and both.read_as == {"schnee": ["snow"]}
    nothing = api.find(["xqzvv"], n=30)  # near no vocabulary word in any language: said, and nothing found
    assert nothing.unknown == ("xqzvv",) and nothing.hits == [] and nothing.read_as == {}
    served = json.loads(invoke("search", "Schnee", "--store", library["store"], "--json").stdout)
    assert served["read_as"] == {"schnee": ["snow"]} and served["unknown"] == []
    table = invoke("search", "Schnee", "--store", library["store"])
    assert table.exit_code == 0 and "read 'schnee' as snow" in table.stdout


def test_without_the_multilingual_encoder_a_foreign_word_is_said_unknown(library: dict[str, object],
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from annot.features import multilingual

    monkeypatch.setattr(multilingual, "available", lambda: False)
    api = annot.open_store(library["store"])  # type: ignore[arg-type]
    found = api.find(["Schnee"], n=30)
    assert found.unknown == ("schnee",) and found.hits == []
    result = invoke("search", "Schnee", "--store", library["store"])
    assert result.exit_code == 0 and "Traceback" not in result.output
    assert "no word of the store's vocabulary means 'schnee'" in result.stderr
    assert "pip install 'annot[multilingual]'" in result.stderr


@pytest.mark.slow
def test_bad_queries_are_one_line(library: dict[str, object]) -> None:
    """A 100 KB word, 100 KB of words, a script nothing reads: one line each, no traceback, the store unchanged."""
    store: Path = library["store"]  # type: ignore[assignment]
    manifest = (store / "manifest.json").read_bytes()
    huge = invoke("search", "x" * 100_000, "--store", store)
    assert huge.exit_code == 0 and "Traceback" not in huge.output
    assert len(huge.stderr.strip().splitlines()) <= 2 and len(huge.stderr) < 400  # the word cut short in the message
    many = invoke("search", *[f"w{i}" for i in range(20_000)], "--store", store)
    assert many.exit_code == 1 and many.stderr.strip() == "error: a search takes at most 32 words, got 20,000"
    runes = invoke("search", "ᚠᚢᚦ", "--store", store, "--json")
    assert runes.exit_code == 0 and json.loads(runes.stdout)["results"] == []
    space = invoke("search", "ᚠᚢᚦ", "--mode", "space", "--store", store)
    assert space.exit_code == 1 and len(space.stderr.strip().splitlines()) == 1 and "'ᚠᚢᚦ'" in space.stderr
    assert (store / "manifest.json").read_bytes() == manifest
