"""The photo library: annotate (incremental, resumable), confidence, search, corrections (the CLI and the API)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select
from tests.conftest import WORDS, invoke, paint

import annot
from annot.library.collection import annotate_photos
from annot.library.vectors import read_library
from annot.schema import corrections, image_tags, images, photo_annotations, photo_files
from annot.store import StoreDir


def make_photos(folder: Path, n: int, seed: int = 5, prefix: str = "p") -> dict[Path, list[str]]:
    """n painted photos (as the synthetic corpus paints them) in ``folder``, with the tags their pixels show."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i in range(n):
        tags = list(rng.choice(WORDS, size=int(rng.integers(1, 4)), replace=False))
        path = folder / f"{prefix}{i:03d}.jpg"
        Image.fromarray(paint(tags, rng)).save(path, quality=92)
        out[path.resolve()] = tags
    return out


def library_state(store: Path) -> dict[str, object]:
    """What the store holds of its library: photo rows by path, their states, annotation rows, index ids."""
    with StoreDir.open(store) as s:
        with s.db.connect() as conn:
            rows = conn.execute(select(images.c.id, images.c.path, photo_files.c.state)
                                .join(photo_files, photo_files.c.image_id == images.c.id)).all()
            ranks = conn.execute(select(photo_annotations.c.image_id, photo_annotations.c.rank, photo_annotations.c.confidence)).all()
        record = s.manifest().collection
        vectors = read_library(s, record, s.manifest().projection.n_components) if record else None
        ids = vectors.ids().tolist() if vectors else []
        ntotal = vectors.ntotal if vectors else 0
    return {"paths": [r.path for r in rows], "state": {r.path: r.state for r in rows},
            "annotated": {r.id for r in rows if r.state == "annotated"}, "ranks": ranks, "ids": ids, "ntotal": ntotal}


@pytest.mark.slow
def test_annotate_keeps_tags_then_only_changes(store: Path, tmp_path: Path) -> None:
    photos = make_photos(tmp_path / "photos", 24)
    first = annotate_photos(store, [tmp_path / "photos"])
    assert (first.annotated, first.reannotated, first.unchanged) == (24, 0, 0)
    state = library_state(store)
    assert sorted(state["paths"]) == sorted(map(str, photos))  # type: ignore[arg-type]
    assert sorted(state["ids"]) == sorted(state["annotated"]) and state["ntotal"] == 24  # type: ignore[arg-type]
    per_photo: dict[int, list[int]] = {}
    for image_id, rank, confidence in state["ranks"]:  # type: ignore[attr-defined]
        per_photo.setdefault(image_id, []).append(rank)
        assert 0.0 < confidence < 1.0
    assert all(sorted(r) == [1, 2, 3, 4, 5] for r in per_photo.values()) and len(per_photo) == 24

    again = annotate_photos(store, [tmp_path / "photos"])
    assert (again.annotated, again.reannotated, again.unchanged) == (0, 0, 24)

    changed, gone = sorted(photos)[:2]
    Image.fromarray(paint(["snow"], np.random.default_rng(9))).save(changed, quality=92)
    gone.unlink()
    touched = sorted(photos)[2]
    os.utime(touched, ns=(time.time_ns(), time.time_ns()))  # new mtime, same content: not read again
    (tmp_path / "photos" / "broken.jpg").write_bytes(b"not a jpeg at all")
    third = annotate_photos(store, [tmp_path / "photos"])
    assert (third.annotated, third.reannotated, third.unchanged) == (0, 1, 22)
    assert third.missing == [str(gone)]
    assert list(third.unreadable) == [str((tmp_path / "photos" / "broken.jpg").resolve())]
    state = library_state(store)
    assert state["state"][str(gone)] == "missing" and len(state["ids"]) == 23  # type: ignore[index, arg-type]
    assert state["state"][str((tmp_path / "photos" / "broken.jpg").resolve())] == "unreadable"  # type: ignore[index]
    assert len(state["paths"]) == len(set(state["paths"])) == 25  # type: ignore[arg-type]
    fourth = annotate_photos(store, [tmp_path / "photos"])  # the broken file is listed again, not retried
    assert fourth.annotated + fourth.reannotated == 0 and len(fourth.unreadable) == 1


@pytest.mark.slow
def test_annotated_tags_match_what_the_photos_show(store: Path, tmp_path: Path) -> None:
    photos = make_photos(tmp_path / "photos", 30, seed=11)
    annotate_photos(store, [tmp_path / "photos"], scoring=annot.ScoringSettings(k=3, temperature=0.1, n_tags=3,
                                                                                 frequency_power=0.375))
    api = annot.open_store(store)
    hits = 0
    for path, tags in photos.items():
        shown = api.photo(int(api.search(like=path, n=1)[0].image_id)).to_dict()
        assert shown["path"] == str(path) and shown["kind"] == "library"
        hits += bool(set(tags) & {t["tag"] for t in shown["tags"]})
    assert hits >= 27  # the fake encoder sees the painted regions: nearly every photo gets one of its own tags


def test_annotate_cli_errors_are_one_line(store: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    empty = invoke("annotate", tmp_path / "empty", "--store", store)
    assert empty.exit_code == 1 and "folder holds no photos" in empty.stderr and "Traceback" not in empty.output
    missing = invoke("annotate", tmp_path / "nope.jpg", "--store", store)
    assert missing.exit_code == 1 and "no such file or folder" in missing.stderr
    make_photos(tmp_path / "ok", 3)
    listing = tmp_path / "list.txt"
    listing.write_text("ok/p000.jpg\nok/p001.jpg\n")
    result = invoke("annotate", listing, "--store", store, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["annotated"] == 2


KILLER = """
import sys
import tests.conftest  # the fake encoder
import annot.library.collection as c
c.COMMIT_SECONDS = 0.0
c.annotate_photos(sys.argv[1], [sys.argv[2]], chunk=4)
"""


@pytest.mark.parametrize("when", ["after the first commit", "early"])
@pytest.mark.slow
def test_a_killed_annotate_completes_on_rerun(store: Path, tmp_path: Path, when: str) -> None:
    """SIGKILL while photos are being written; the rerun finishes with every photo once, index and database agreeing,
    and with the tags an uninterrupted run gives."""
    make_photos(tmp_path / "photos", 40, seed=3)
    manifest = store / "manifest.json"
    before = manifest.stat().st_mtime_ns
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", KILLER, str(store), str(tmp_path / "photos")], env=env,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    if when == "early":
        while time.monotonic() < deadline and not (store / "db" / "WORKING").exists():
            time.sleep(0.02)
        time.sleep(0.3)
    else:
        while time.monotonic() < deadline and manifest.stat().st_mtime_ns == before and proc.poll() is None:
            time.sleep(0.02)
    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    report = annotate_photos(store, [tmp_path / "photos"])
    assert report.annotated + report.reannotated + report.unchanged == 40
    state = library_state(store)
    assert len(state["paths"]) == len(set(state["paths"])) == 40  # type: ignore[arg-type]
    assert sorted(state["ids"]) == sorted(state["annotated"]) and state["ntotal"] == 40  # type: ignore[arg-type]
    ranks = state["ranks"]
    assert len(ranks) == len({(i, r) for i, r, _ in ranks}) == 200  # type: ignore[attr-defined]


def test_heic_photos_are_read(store: Path, tmp_path: Path) -> None:
    from pillow_heif import register_heif_opener

    register_heif_opener()
    rng = np.random.default_rng(2)
    (tmp_path / "heic").mkdir()
    Image.fromarray(paint(["sun", "sky"], rng)).save(tmp_path / "heic" / "a.heic", quality=90)
    report = annotate_photos(store, [tmp_path / "heic"])
    assert report.annotated == 1 and not report.unreadable


# -- confidence ---------------------------------------------------------------------------------------------------
def test_calibration_recovers_known_probabilities() -> None:
    """Predictions whose rightness follows a known logistic law: the fitted confidence matches it on fresh ones."""
    from annot.fitting.calibration import fit_curve, reliability

    rng = np.random.default_rng(0)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        x = rng.uniform(0.2, 1.0, n)
        rank = rng.integers(1, 11, n).astype(float)
        words = rng.integers(0, 20, n)
        true_logit = -1.0 + 3.0 * x - 0.8 * np.log(rank) + np.where(words < 3, 1.5, 0.0)  # three easy words
        right = rng.random(n) < 1 / (1 + np.exp(-true_logit))
        return np.column_stack([x, np.log(rank)]), words, right, 1 / (1 + np.exp(-true_logit))

    features, words, right, _ = sample(20_000)
    intercept, slopes, offsets = fit_curve(features, words, right, 20)
    assert slopes[0] > 2.0 and slopes[1] < -0.4
    assert offsets[:3].min() > 0.8 and np.abs(offsets[3:]).max() < 0.5  # the easy words got their own offset
    fresh, fresh_words, fresh_right, truth = sample(5_000)
    predicted = 1 / (1 + np.exp(-(intercept + offsets[fresh_words] + fresh @ np.asarray(slopes))))
    assert np.abs(predicted - truth).mean() < 0.04
    assert reliability(predicted, fresh_right)["ece"] < 0.03
    assert reliability(np.full(5_000, 0.99), fresh_right)["ece"] > 0.3  # an overconfident one is caught


def test_min_confidence_gives_a_variable_number_of_tags(built_store: Path, tmp_path: Path) -> None:
    photos = make_photos(tmp_path / "photos", 12, seed=8)
    api = annot.open_store(built_store)
    model = api.model()
    assert model.calibration(model.settings.scoring) is not None
    counts = {}
    for cut in (0.0, 0.3, 0.6, 1.0):
        found = api.query(list(photos), min_confidence=cut)
        assert all(t.confidence is not None and t.confidence >= cut for a in found for t in a.tags)
        counts[cut] = [len(a.tags) for a in found]
    assert all(c == min(10, len(WORDS)) for c in counts[0.0]) and sum(counts[1.0]) == 0
    assert sum(counts[0.0]) >= sum(counts[0.3]) >= sum(counts[0.6])
    assert len(set(counts[0.3])) > 1  # variable: not the same number for every photo
    auto = api.query(list(photos), min_confidence="auto")
    cut = model.calibration(model.settings.scoring).cut  # type: ignore[union-attr]
    assert all(t.confidence >= cut for a in auto for t in a.tags)  # type: ignore[operator]
    bad = invoke("query", next(iter(photos)), "--store", built_store, "--min-confidence", "sure")
    assert bad.exit_code == 2 and "--min-confidence must be a probability" in bad.stderr
    shown = invoke("query", next(iter(photos)), "--store", built_store)
    assert shown.exit_code == 0 and "%)" in shown.stdout  # confidences shown as percentages


# -- corrections ---------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_corrections_survive_annotate_and_join_training(store: Path, tmp_path: Path) -> None:
    photos = make_photos(tmp_path / "photos", 10, seed=4)
    annotate_photos(store, [tmp_path / "photos"])
    api = annot.open_store(store)
    target = min(photos)
    before = {t["tag"]: t for t in api.photo(api.search(like=target, n=1)[0].image_id).to_dict()["tags"]}
    wrong = next(t for t in before if t not in photos[target])
    right = next(t for t in before if t in photos[target])
    missing = next(w for w in WORDS if w not in before)
    ntotal = api.manifest.index.ntotal
    query_before = {t.tag: t.score for t in api.query([target], n_tags=8)[0].tags}

    result = invoke("correct", target, "--store", store, "--reject", wrong, "--confirm", right, "--add", missing)
    assert result.exit_code == 0, result.output
    image_id = api.search(like=target, n=1)[0].image_id
    shown = {t["tag"]: t for t in api.photo(image_id).to_dict()["tags"]}
    assert wrong not in shown and shown[right]["source"] == "confirmed" and shown[missing]["source"] == "added"
    assert api.manifest.index.ntotal == ntotal + 1  # joined the training index
    with StoreDir.open(store) as s, s.db.connect() as conn:
        vouched = set(conn.execute(select(image_tags.c.tag_id).where(image_tags.c.image_id == image_id)).scalars())
        split = conn.execute(select(images.c.split).where(images.c.id == image_id)).scalar()
    assert len(vouched) == 2 and split == "train"
    # its own tags now vote for images that look like it: the added tag scores higher for the same picture
    query_after = {t.tag: t.score for t in api.query([target], n_tags=8)[0].tags}
    assert query_after.get(missing, 0.0) > query_before.get(missing, 0.0)

    Image.fromarray(paint(photos[target], np.random.default_rng(77))).save(target, quality=80)  # edited
    rerun = annotate_photos(store, [tmp_path / "photos"])
    assert rerun.reannotated == 1
    shown = {t["tag"]: t for t in api.photo(image_id).to_dict()["tags"]}
    assert wrong not in shown and shown[right]["source"] == "confirmed" and missing in shown
    api.close()
    sql = invoke("sql", "select action, count(*) as n from corrections group by action order by action", "--store",
                 store, "--json")
    assert sql.exit_code == 0, sql.output
    assert json.loads(sql.stdout) == [{"action": "add", "n": 1}, {"action": "confirm", "n": 1},
                                      {"action": "reject", "n": 1}]


@pytest.mark.slow
def test_bad_corrections_change_nothing(store: Path, tmp_path: Path) -> None:
    photos = make_photos(tmp_path / "photos", 3, seed=6)
    annotate_photos(store, [tmp_path / "photos"])
    first = min(photos)
    lines = tmp_path / "fix.jsonl"
    lines.write_text(json.dumps({"image": str(first), "confirm": ["sky"]}) + "\n"
                     + json.dumps({"image": "photos/none.jpg", "reject": ["sea"]}) + "\n")
    unknown_photo = invoke("correct", "--from", lines, "--store", store)
    assert unknown_photo.exit_code == 1 and "none.jpg: not a photo of" in unknown_photo.stderr
    unknown_tag = invoke("correct", first, "--reject", "zebra", "--store", store)
    assert unknown_tag.exit_code == 1 and "'zebra': not a word of the store's vocabulary" in unknown_tag.stderr
    too_long = invoke("correct", first, "--add", "z" * 101, "--store", store)
    assert too_long.exit_code == 1 and "a tag of 101 characters (at most 100)" in too_long.stderr
    control = invoke("correct", first, "--add", "ze\x07bra", "--store", store)
    assert control.exit_code == 1 and "control characters" in control.stderr
    empty = invoke("correct", first, "--add", " \u200b ", "--store", store)
    assert empty.exit_code == 1 and "an empty tag" in empty.stderr
    lines.write_text("{not json\n")
    broken = invoke("correct", "--from", lines, "--store", store)
    assert broken.exit_code == 1 and "fix.jsonl:1: not JSON" in broken.stderr
    with StoreDir.open(store) as s, s.db.connect() as conn:
        assert conn.execute(select(corrections.c.id)).first() is None
    nothing = invoke("correct", first, "--store", store)
    assert nothing.exit_code == 1 and "say what to correct" in nothing.stderr


def test_search_without_a_library_searches_the_training_images(built_store: Path) -> None:
    result = invoke("search", "sky", "--store", built_store, "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)["results"]
    assert found and all(r["kind"] == "training" for r in found)
    assert "no photo library" in result.stderr


def test_the_scan_is_a_plan_made_without_a_database(tmp_path: Path) -> None:
    """New, unchanged, touched (same content, new time), changed (another content: hashed once, the hash kept for
    the chunk), unreadable, training and vanished photos, from file facts and what was recorded alone."""
    import hashlib
    import os

    from annot.library.scan import FileFacts, Known, scan_photos
    from annot.progress import NoProgress

    made = sorted(make_photos(tmp_path / "photos", 6, seed=21))
    new, same, touched, changed, training, broken = made
    facts = {p: FileFacts.of(p.stat()) for p in made}
    digest = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in made}
    known = {
        str(same): Known(1, "collection", digest[same], facts[same], "annotated", "m1"),
        str(touched): Known(2, "collection", digest[touched], facts[touched], "annotated", "m1"),
        str(changed): Known(3, "collection", "0" * 64, facts[changed], "annotated", "m1"),
        str(training): Known(4, "train", digest[training], None, None, None),
        str(broken): Known(5, "collection", "", facts[broken], "unreadable", None),
        str(tmp_path / "photos" / "gone.jpg"): Known(6, "collection", "1" * 64, facts[same], "annotated", "m1"),
    }
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    changed.write_bytes(changed.read_bytes())  # the same bytes under a new change time: hashed, found different
    known[str(changed)] = Known(3, "collection", "0" * 64, FileFacts(facts[changed].size, facts[changed].mtime_ns,
                                                                     facts[changed].inode, 0), "annotated", "m1")
    plan = scan_photos(made, known, NoProgress(), folders=[tmp_path / "photos"])
    assert [t.path for t in plan.todo] == [new, changed]
    assert plan.todo[0].digest is None and not plan.todo[0].changed  # a new photo: nothing read yet
    assert plan.todo[1].digest == digest[changed] and plan.todo[1].changed  # hashed here, not again later
    assert plan.unchanged == 2 and [i for i, _ in plan.touched] == [2]
    assert plan.training == 1 and list(plan.errors) == [str(broken)]
    assert [p for p, _ in plan.vanished] == [str(tmp_path / "photos" / "gone.jpg")]


def test_the_calibration_made_from_memory_is_the_one_the_files_give(store: Path) -> None:
    """`annot index` calibrates from the training set it holds in memory; reading the same set back from the store's
    files (as add and remove do) gives the same calibration, array for array."""
    from annot.indexer.standards import save_calibration

    with StoreDir.open(store, write=True) as s:
        record = s.manifest().calibration
        assert record is not None
        made = s.read_arrays(record.file)
        again = save_calibration(s, "from-files")
        assert again is not None and again.calibration is not None
        read = s.read_arrays(again.calibration.file)
    assert sorted(made) == sorted(read)
    for key in made:
        np.testing.assert_array_equal(made[key], read[key])


@pytest.mark.slow
def test_a_photo_is_dated_by_its_exif_and_browsed_by_it(store: Path, tmp_path: Path) -> None:
    """A photo whose EXIF (written by exiftool, as a camera would) says when it was taken is dated by it; one without
    by its file's time; the viewer's details name the camera."""
    from annot.library.browse import file_details

    photos = sorted(make_photos(tmp_path / "photos", 3, seed=71))
    subprocess.run(["exiftool", "-q", "-overwrite_original", "-DateTimeOriginal=2019:07:14 18:30:00", "-Make=Canon",
                    "-Model=Canon EOS 5D", str(photos[0])], check=True)
    annotate_photos(store, [tmp_path / "photos"])
    with annot.open_store(store) as api:
        page = api.browse(order="oldest", limit=10)
        assert page.photos[0].path == str(photos[0]) and page.photos[0].date == "2019-07-14T18:30:00"
        assert all(p.date[:4] != "2019" for p in page.photos[1:])  # the others: their file's time
        months = {m["month"]: m["count"] for m in api.facets()["months"]}
        assert months["2019-07"] == 1 and sum(months.values()) == 3
        assert [p.path for p in api.browse(date="2019-07").photos] == [str(photos[0])]
        assert api.browse(date="2019").total == 1
        bounded = api._browser().facets(folders=0)  # the counts name at most the fullest folders, and say how many
        assert bounded["folders"] == [] and bounded["folders_total"] == 1
    details = file_details(photos[0])
    assert details["taken"] == "2019-07-14T18:30:00" and details["camera"] == "Canon EOS 5D"
    assert file_details(photos[1])["taken"] is None and file_details(photos[1])["camera"] is None
