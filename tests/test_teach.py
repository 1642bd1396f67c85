"""Teaching the store: new words by correction, re-scoring the library, and photos that keep their identity."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select
from tests.conftest import invoke, paint

import annot
from annot.library.collection import annotate_photos
from annot.schema import corrections, images, photo_files
from annot.store import StoreDir


def beach_photos(folder: Path, n: int, seed: int = 3) -> dict[Path, bool]:
    """n painted photos; every other one shows sand and sea (a beach), the rest sky and tree or snow and city."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i in range(n):
        beach = i % 2 == 0
        tags = ["sand", "sea"] if beach else (["sky", "tree"] if i % 4 == 1 else ["snow", "city"])
        path = folder / f"b{i:03d}.jpg"
        Image.fromarray(paint(tags, rng)).save(path, quality=92)
        out[path.resolve()] = beach
    return out


def tags_of(api: annot.Store, path: Path) -> dict[str, str]:
    """A library photo's shown tags and where each comes from (predicted, confirmed, added)."""
    with StoreDir.open(api.root) as s, s.db.connect() as conn:
        image_id = conn.execute(select(images.c.id).where(images.c.path == str(path))).scalar_one()
    return {t["tag"]: t["source"] for t in api.photo(image_id).to_dict()["tags"]}


@pytest.mark.slow
def test_a_new_word_is_learned_from_corrections_and_reaches_the_library(store: Path, tmp_path: Path) -> None:
    photos = beach_photos(tmp_path / "photos", 40)
    first = annotate_photos(store, [tmp_path / "photos"])
    assert first.annotated == 40 and first.rescored == 0
    taught = [p for p, beach in sorted(photos.items()) if beach][:4]
    for path in taught:
        result = invoke("correct", path, "--store", store, "--add", "  Beach ", "--json")
        assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["new_words"] == []  # the word was new at the first correction only
    with StoreDir.open(store) as s:
        vocabulary = s.manifest().vocabulary
    assert vocabulary.words[-1] == "beach" and vocabulary.grown == ("beach",) and vocabulary.n_fitted == 8
    info = json.loads(invoke("info", "--store", store, "--json").stdout)
    assert info["vocabulary_size"] == 9 and info["words_added_by_corrections"] == ["beach"]

    api = annot.open_store(store)
    rerun = api.annotate()  # no paths: the library is re-scored for the changed model, nothing decoded
    assert rerun.rescored == 40 and rerun.annotated == rerun.reannotated == 0
    assert 0 < rerun.retagged <= 40
    others = {p: beach for p, beach in photos.items() if p not in taught}
    got = {p: "beach" in tags_of(api, p) for p in others}
    hits = sum(got[p] for p, beach in others.items() if beach)
    false = sum(got[p] for p, beach in others.items() if not beach)
    assert hits >= 12 and false <= 2, (hits, false)  # 16 untaught beaches, 20 photos without one
    assert all(tags_of(api, p)["beach"] == "added" for p in taught)
    found = api.search(["beach"], mode="tags", n=50)
    assert {Path(h.path) for h in found} >= set(taught)
    again = api.annotate()
    assert again.rescored == 0  # nothing changed since

    refit = invoke("refit", "--store", store)
    assert refit.exit_code == 0, refit.output
    with StoreDir.open(store) as s:
        assert s.manifest().vocabulary.grown == () and s.manifest().vocabulary.words[-1] == "beach"
    assert json.loads(invoke("info", "--store", store, "--json").stdout)["words_added_by_corrections"] == []
    after = api.annotate()
    assert after.rescored == 40
    assert sum("beach" in tags_of(api, p) for p, beach in others.items() if beach) >= 12
    api.close()


@pytest.mark.slow
def test_kcca_keeps_a_new_word_and_says_so(tmp_path: Path, synthetic: dict[str, Path]) -> None:
    from tests.conftest import fake_settings

    from annot.indexer import build_index

    store = tmp_path / "k.annot"
    build_index(synthetic["train"], store, fake_settings(synthetic, k=3, temperature=0.1, projection="kcca"))
    photos = beach_photos(tmp_path / "photos", 4)
    annotate_photos(store, [tmp_path / "photos"])
    result = invoke("correct", min(photos), "--store", store, "--add", "beach")
    assert result.exit_code == 0, result.output
    assert "kernel-CCA model cannot take new training images" in result.stdout and "new words: beach" in result.stdout
    with StoreDir.open(store) as s, s.db.connect() as conn:
        assert conn.execute(select(corrections.c.action)).scalars().all() == ["add"]
    api = annot.open_store(store)
    assert tags_of(api, min(photos))["beach"] == "added"
    api.close()


@pytest.mark.slow
def test_moved_renamed_and_duplicated_photos_keep_their_identity(store: Path, tmp_path: Path) -> None:
    photos = beach_photos(tmp_path / "library" / "2019", 6)
    second = sorted(photos)[1]
    shutil.copy(second, tmp_path / "library" / "2019" / "zz same as b001.jpg")  # a copy, new in the same run
    initial = annotate_photos(store, [tmp_path / "library"])
    assert initial.annotated == 6 and initial.duplicates == {
        str((tmp_path / "library" / "2019" / "zz same as b001.jpg").resolve()): str(second)}
    first = min(photos)
    result = invoke("correct", first, "--store", store, "--add", "holiday", "--reject", "sky")
    assert result.exit_code == 0, result.output
    with StoreDir.open(store) as s, s.db.connect() as conn:
        before = dict(conn.execute(select(images.c.path, images.c.id)).all())

    shutil.move(tmp_path / "library" / "2019", tmp_path / "library" / "2019 Summer ✓")  # a renamed folder
    moved_first = tmp_path / "library" / "2019 Summer ✓" / first.name
    moved_first.rename(moved_first.with_name("renamed photo.jpg"))
    moved_first = moved_first.with_name("renamed photo.jpg")
    shutil.copy(moved_first, tmp_path / "library" / "copy of it.jpg")  # an exact duplicate at another path
    report = annotate_photos(store, [tmp_path / "library"])
    assert len(report.moved) == 7 and report.missing == [] and report.annotated == 0  # 6 photos and 1 duplicate
    assert len(report.duplicates) == 1  # the new copy
    copies = {str(moved_first.resolve()), str((tmp_path / "library" / "copy of it.jpg").resolve())}
    kept_at = report.moved[str(first)]  # one of the two copies is the photo moved, the other its duplicate
    assert kept_at in copies and report.duplicates[(copies - {kept_at}).pop()] == kept_at
    with StoreDir.open(store) as s, s.db.connect() as conn:
        after = dict(conn.execute(select(images.c.path, images.c.id)).all())
        states = dict(conn.execute(select(photo_files.c.image_id, photo_files.c.state)).all())
    assert after[kept_at] == before[str(first)]  # the same photo: its id kept
    moved_ids = sorted(after[p] for p in report.moved.values())
    assert moved_ids == sorted([before[str(p)] for p in photos] + [before[next(iter(initial.duplicates))]])
    assert states[after[(copies - {kept_at}).pop()]] == "duplicate"
    api = annot.open_store(store)
    shown = tags_of(api, Path(kept_at))
    assert shown["holiday"] == "added" and "sky" not in shown  # its corrections followed it
    copy = invoke("correct", tmp_path / "library" / "copy of it.jpg", "--store", store, "--confirm", "holiday",
                  "--json")
    assert copy.exit_code == 0 and json.loads(copy.stdout)["unchanged"] == 0  # the duplicate's path is the photo's
    with StoreDir.open(store) as s, s.db.connect() as conn:
        assert set(conn.execute(select(corrections.c.image_id)).scalars()) == {before[str(first)]}
    exported = invoke("export", "--store", store, "--json")
    assert exported.exit_code == 0, exported.output
    sidecar = (tmp_path / "library" / "copy of it.jpg.xmp").read_text()
    assert "holiday" in sidecar
    found = [h.path for h in api.search(["holiday"], mode="tags", n=20)]
    assert found.count(kept_at) == 1 and (copies - {kept_at}).pop() not in found  # one photo, not two
    rerun = annotate_photos(store, [tmp_path / "library"])
    assert rerun.unchanged == 8 and not rerun.moved and not rerun.duplicates
    api.close()


@pytest.mark.slow
def test_the_review_queue_asks_the_least_sure_first_and_answers_teach(store: Path, tmp_path: Path) -> None:
    import httpx
    from tests.test_serve import Server

    from annot.serve.app import create_app

    beach_photos(tmp_path / "photos", 30, seed=8)
    annotate_photos(store, [tmp_path / "photos"])
    api = annot.open_store(store)
    plain = api.review(30, order="uncertain")
    assert len(plain) == 30 and len({q.id for q in plain}) == 30
    for item in plain:  # each tag's binary entropy, summed
        c = np.clip([t.confidence for t in item.tags], 1e-6, 1 - 1e-6)
        assert item.priority == item.uncertainty == pytest.approx(
            float(-(c * np.log(c) + (1 - c) * np.log(1 - c)).sum()), rel=1e-4)
        sureness = [abs(next(t.confidence for t in item.tags if t.tag == a) - 0.5) for a in item.ask]
        assert sureness == sorted(sureness) and set(item.ask) == {t.tag for t in item.tags}
    queue = api.review(30)  # by default: uncertainty times density
    assert [q.priority for q in queue] == sorted((q.priority for q in queue), reverse=True)
    assert all(item.priority == pytest.approx(item.uncertainty * item.density) and 0 < item.density <= 1
               for item in queue)
    assert {q.id: q.uncertainty for q in queue} == pytest.approx({q.id: q.uncertainty for q in plain})
    rare = api.review(30, order="rare")  # rare words' uncertainty counts more
    frequency = dict(zip(api.model().vocabulary, api.model().frequency.tolist(), strict=True))
    median = float(np.median(api.model().frequency))
    for item in rare:
        c = np.clip([t.confidence for t in item.tags], 1e-6, 1 - 1e-6)
        weight = np.clip(np.sqrt(median / np.maximum([frequency[t.tag] for t in item.tags], 1)), 0.25, 4)
        assert item.uncertainty == pytest.approx(float((weight * -(c * np.log(c) + (1 - c) * np.log(1 - c))).sum()),
                                                 rel=1e-4)
    assert {q.id for q in queue} == {q.id for q in plain} == {q.id for q in rare}  # every photo, in another order
    bad = invoke("review", "--store", store, "--order", "best")
    assert bad.exit_code == 2 and "--order must be one of dense, uncertain, rare" in bad.stderr
    top = queue[0]
    listed = invoke("review", "--store", store, "-n", "3", "--json")
    assert listed.exit_code == 0 and [p["id"] for p in json.loads(listed.stdout)["photos"]] == [q.id for q in queue[:3]]
    answer = invoke("correct", str(top.id), "--store", store, "--confirm", top.ask[0])
    assert answer.exit_code == 0, answer.output
    after = api.review(30)
    assert top.id not in {q.id for q in after} and len(after) == 29  # a corrected photo leaves the queue
    with Server(create_app(store)) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        got = client.get("/v1/review", params={"n": 5})
        assert got.status_code == 200 and [p["id"] for p in got.json()["photos"]] == [q.id for q in after[:5]]
        assert client.get("/v1/review", params={"n": 0}).status_code == 422
        assert client.get("/v1/review", params={"n": 10_000}).status_code == 422
    api.close()


@pytest.mark.slow
def test_a_corrected_photo_is_scored_without_its_own_vote(store: Path, tmp_path: Path) -> None:
    photos = sorted(beach_photos(tmp_path / "photos", 8))
    annotate_photos(store, [tmp_path / "photos"])
    assert invoke("correct", photos[0], "--store", store, "--add", "grandma").exit_code == 0
    annotate_photos(store, [])
    api = annot.open_store(store)
    model = api.model()
    image_id = api.photo_id(photos[0])
    X = model.feature_cache().load(np.array([image_id]))
    alone = model.predict(X, model.settings.scoring, exclude=np.array([image_id]))[0]
    with_itself = model.predict(X, model.settings.scoring)[0]
    assert image_id in {v[0] for votes in with_itself.votes for v in votes}  # it is in the training index now
    assert image_id not in {v[0] for votes in alone.votes for v in votes}
    shown = {t.tag: t.confidence for t in api.photo(image_id).tags if t.source == "predicted"}
    expected = {model.vocabulary[int(w)]: float(c) for w, c in zip(alone.words, alone.confidence, strict=True)}
    assert shown == pytest.approx({w: c for w, c in expected.items() if w in shown})
    assert set(shown) <= set(expected)
    api.close()


@pytest.mark.slow
def test_the_photo_view_shows_what_each_photo_shows(store: Path, tmp_path: Path) -> None:
    """The search's photo view, read in bulk as arrays, holds for every photo the tags the per-photo look-up shows
    (predicted, confirmed, added, rejected ones gone; training images their own tags)."""
    from annot.library.photoview import PhotoView
    from annot.library.view import photo_tags

    photos = sorted(beach_photos(tmp_path / "photos", 10))
    annotate_photos(store, [tmp_path / "photos"])
    assert invoke("correct", photos[0], "--store", store, "--add", "grandma", "--reject", "sand").exit_code == 0
    assert invoke("correct", photos[1], "--store", store, "--confirm", "sea", "--reject", "sky").exit_code == 0
    assert invoke("correct", photos[2], "--store", store, "--reject", "sand", "--add", "dog").exit_code == 0
    assert invoke("correct", photos[2], "--store", store, "--clear", "sand", "--clear", "dog").exit_code == 0
    annotate_photos(store, [])
    api = annot.open_store(store)
    model = api.model()
    view = PhotoView(model)
    each = photo_tags(model.store, view.ids.tolist())
    assert len(view) == len(model.ids) + 10 - 2  # the two corrected photos are training images and library photos
    for row, image_id in enumerate(view.ids.tolist()):
        got = {(t.tag, round(t.confidence, 4), t.source) for t in view.tags(row)}
        assert got == {(t.tag, round(t.confidence or 0.5, 4), t.source) for t in each[image_id]}, image_id
    api.close()
    # the same, as a person reads it in SQL: the photo_tags view, by path and word
    result = invoke("sql", "select path, word, confidence, source from photo_tags", "--store", store, "--json")
    assert result.exit_code == 0, result.output
    by_path: dict[str, set[tuple[str, float, str]]] = {}
    for r in json.loads(result.stdout):
        by_path.setdefault(r["path"], set()).add((r["word"], round(r["confidence"], 4), r["source"]))
    with StoreDir.open(store) as s:
        paths = dict(s.db.read_sql("SELECT id, path FROM images")[1])
    assert by_path == {paths[i]: {(t.tag, round(t.confidence or 0.5, 4), t.source) for t in tags}
                       for i, tags in each.items() if tags}
    fixes = json.loads(invoke("sql", "select path, word, action from corrections_view order by id", "--store", store,
                              "--json").stdout)
    assert [(r["path"], r["word"], r["action"]) for r in fixes] == [
        (str(photos[0]), "sand", "reject"), (str(photos[0]), "grandma", "add"),
        (str(photos[1]), "sea", "confirm"), (str(photos[1]), "sky", "reject"),
        (str(photos[2]), "sand", "reject"), (str(photos[2]), "dog", "add"),
        (str(photos[2]), "sand", "clear"), (str(photos[2]), "dog", "clear")]


@pytest.mark.slow
def test_clear_undoes_corrections_of_a_library_photo(store: Path, tmp_path: Path) -> None:
    """clear (the page's undo) brings a tag back as predicted, with its confidence; a photo left with nothing vouched
    leaves the training index; clearing what was never corrected records nothing; a training image refuses it."""
    photos = sorted(beach_photos(tmp_path / "photos", 8))
    annotate_photos(store, [tmp_path / "photos"])
    api = annot.open_store(store)
    photo = api.photo_id(photos[0])
    before = {t.tag: t for t in api.photo(photo).tags}
    tag = next(iter(before))
    indexed = api.model().index.ntotal
    fixed = api.correct([annot.Correction(photo, tag, "reject"), annot.Correction(photo, "grandma", "add")])
    assert fixed.recorded == 2 and fixed.joined_training == 1
    shown = {t.tag: t for t in api.photo(photo).tags}
    assert tag not in shown and shown["grandma"].source == "added" and api.model().index.ntotal == indexed + 1
    undone = api.correct([annot.Correction(photo, tag, "clear"), annot.Correction(photo, "grandma", "clear")])
    assert undone.recorded == 2 and undone.left_training == 1
    assert {t.tag: t for t in api.photo(photo).tags} == before  # as predicted, confidences too
    assert api.model().index.ntotal == indexed  # nothing vouched: out of the training index
    assert api.search([tag], mode="tags", n=50) and photo in {h.image_id for h in api.search([tag], mode="tags", n=50)}
    again = api.correct([annot.Correction(photo, tag, "clear")])
    assert again.recorded == 0 and again.unchanged == 1
    confirmed = api.correct([annot.Correction(photo, tag, "confirm")])
    assert confirmed.recorded == 1 and {t.tag: t.source for t in api.photo(photo).tags}[tag] == "confirmed"
    api.correct([annot.Correction(photo, tag, "clear")])
    assert {t.tag: t for t in api.photo(photo).tags} == before
    training = int(api.model().ids[0])
    with pytest.raises(annot.AnnotError, match="a training image's tags are its own"):
        api.correct([annot.Correction(training, "sky", "clear")])
    api.close()
    said = invoke("correct", str(training), "--clear", "sky", "--store", store)
    assert said.exit_code == 1 and len(said.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_words_no_photo_has_together_give_partial_matches_and_say_so(store: Path, tmp_path: Path) -> None:
    photos = sorted(beach_photos(tmp_path / "photos", 12))
    annotate_photos(store, [tmp_path / "photos"])
    assert invoke("correct", photos[0], "--add", "holiday", "--store", store).exit_code == 0
    assert invoke("correct", photos[1], "--add", "grandma", "--store", store).exit_code == 0
    api = annot.open_store(store)
    one = api.find(["holiday"], mode="tags", n=50)
    assert not one.partial and [h.path for h in one.hits] == [str(photos[0])]
    apart = api.find(["Holiday", "grandma!"], mode="tags", n=50)  # no photo has both words
    assert apart.partial and apart.words == ("holiday", "grandma")
    assert sorted(h.path for h in apart.hits) == sorted(map(str, photos[:2]))
    api.close()
    said = invoke("search", "holiday", "grandma", "--store", store, "--mode", "tags")
    assert said.exit_code == 0 and "no photo has all of 'holiday', 'grandma'" in said.stderr
    as_json = json.loads(invoke("search", "holiday", "grandma", "--store", store, "--json").stdout)
    assert as_json["partial"] is True and as_json["scope"] == "library"
