"""Writes that cost what they change: the database in layers (a base and small segments, merged and folded), the
library's vectors in layers, and writers that take turns (a long annotate and the server's corrections)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from annot.library import vectors
from annot.library.collection import annotate_photos
from annot.library.corrections import Correction, record_corrections
from annot.schema import predictions
from annot.schema.writes import insert_rows
from annot.store import StoreDir, dbfiles
from test_library import make_photos

ROOT = Path(__file__).resolve().parents[1]
TABLES = ("images", "tags", "image_tags", "photo_files", "annotations", "corrections", "runs", "predictions",
          "word_metrics")


def contents(store: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, sorted: what a reader sees."""
    with StoreDir.open(store) as s:
        out = {}
        for table in TABLES:
            _, rows = s.db.read_sql(f"SELECT * FROM {table}")
            out[table] = sorted(rows, key=repr)
        return out


def database_files(store: Path) -> dict[str, object]:
    return json.loads((store / "manifest.json").read_text())["database"]


def training_image(store: Path, n: int = 0) -> int:
    with StoreDir.open(store) as s:
        return int(s.db.read_sql(f"SELECT id FROM images WHERE split = 'train' ORDER BY id LIMIT 1 OFFSET {n}")[1][0][0])


# -- the database in layers -----------------------------------------------------------------------------------------
def test_a_correction_writes_a_segment_and_leaves_the_base_alone(store: Path) -> None:
    base = store / database_files(store)["base"]["path"]  # type: ignore[index]
    stat = base.stat()
    before = contents(store)
    image = training_image(store)
    report = record_corrections(store, [Correction(image, "sky", "add"), Correction(image, "sun", "reject")])
    assert report.recorded == 2
    files = database_files(store)
    assert files["base"]["path"] == str(base.relative_to(store))  # type: ignore[index]
    assert (base.stat().st_ino, base.stat().st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)  # not copied, not touched
    assert len(files["segments"]) == 1  # type: ignore[arg-type]
    after = contents(store)
    assert len(after["corrections"]) == len(before["corrections"]) + 2
    assert {t for t in after if after[t] != before[t]} == {"corrections", "image_tags"}  # a training image
    segment = store / files["segments"][0]["path"]  # type: ignore[index]
    assert segment.stat().st_size < base.stat().st_size


@pytest.mark.slow
def test_segments_merge_and_fold_and_read_the_same(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dbfiles, "MAX_SEGMENTS", 3)
    image = training_image(store)
    seen = []
    for word in ["sky", "sun", "sea", "tree", "grass"]:  # five publishes: merged at the fourth
        assert record_corrections(store, [Correction(image, word, "add")]).recorded == 1
        seen.append(len(database_files(store)["segments"]))  # type: ignore[arg-type]
    assert seen == [1, 2, 3, 1, 2]
    merged = contents(store)
    monkeypatch.setattr(dbfiles, "wants_fold", lambda segments, base: True)  # the next publish folds
    monkeypatch.setattr(dbfiles, "MAX_SEGMENTS", 8)
    before_fold = database_files(store)["base"]["path"]  # type: ignore[index]
    record_corrections(store, [Correction(image, "sea", "reject")])
    files = database_files(store)
    assert files["segments"] == [] and files["base"]["path"] != before_fold  # type: ignore[index]
    folded = contents(store)
    assert len(folded["corrections"]) == len(merged["corrections"]) + 1
    assert {t: v for t, v in folded.items() if t not in ("corrections", "image_tags")} == \
        {t: v for t, v in merged.items() if t not in ("corrections", "image_tags")}
    assert not (store / before_fold).exists() or before_fold in json.dumps(
        json.loads((store / "manifest.previous.json").read_text()))  # kept one generation, no longer


def test_merging_takes_the_newest_segments_as_large_together_as_the_next_older_one() -> None:
    assert dbfiles.to_merge([1, 1, 1, 1, 1]) == 5  # alike: all of them
    assert dbfiles.to_merge([500, 1, 1, 1, 1]) == 4  # the large one an earlier merge made stays
    assert dbfiles.to_merge([500, 40, 1, 1]) == 2
    assert dbfiles.to_merge([500, 40, 8, 4, 3]) == 2  # 8 is larger than 4 + 3
    assert dbfiles.to_merge([500, 40, 6, 4, 3]) == 3  # 6 is not; 40 is larger than 6 + 4 + 3
    assert dbfiles.to_merge([9, 3]) == 2


@pytest.mark.slow
def test_a_small_change_does_not_rewrite_the_large_segment_before_it(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dbfiles, "MAX_SEGMENTS", 3)
    with StoreDir.open(store, write=True) as s, s.db.begin() as conn:  # one large segment: an evaluation's rows
        insert_rows(conn, predictions, [{"run_id": 999, "image_id": i, "rank": r, "tag_id": 1, "score": 0.5,
                                         "confidence": 0.5} for i in range(40_000) for r in range(5)])
        conn.commit()
        s.publish()
    large = database_files(store)["segments"][0]  # type: ignore[index]
    before = contents(store)
    image = training_image(store)
    for word in ["sun", "sea", "tree"]:  # the third makes four segments: the three small ones merge
        record_corrections(store, [Correction(image, word, "add")])
    segments = database_files(store)["segments"]
    assert len(segments) == 2 and segments[0] == large  # type: ignore[arg-type,index]
    after = contents(store)
    assert len(after["corrections"]) == len(before["corrections"]) + 3
    assert {t: v for t, v in after.items() if t not in ("corrections", "image_tags")} == \
        {t: v for t, v in before.items() if t not in ("corrections", "image_tags")}


@pytest.mark.slow
def test_a_reader_keeps_reading_what_it_opened_while_a_fold_replaces_it(store: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    image = training_image(store)
    record_corrections(store, [Correction(image, "sky", "add")])
    reader = StoreDir.open(store)
    old = sorted(reader.db.read_sql("SELECT image_id, tag_id, action FROM corrections")[1])
    monkeypatch.setattr(dbfiles, "wants_fold", lambda segments, base: True)
    for word in ("sun", "sea", "tree"):  # folds, then the files the reader opened are no longer named
        record_corrections(store, [Correction(image, word, "add")])
    assert sorted(reader.db.read_sql("SELECT image_id, tag_id, action FROM corrections")[1]) == old
    reader.close()
    assert len(contents(store)["corrections"]) == len(old) + 3


FOLD_KILLER = """
import os, signal, sys
sys.path.insert(0, "tests")
import conftest
import annot.store.dbfiles as dbfiles
import annot.schema.layered as layered
from annot.library.corrections import Correction, record_corrections
where = sys.argv[2]
dbfiles.wants_fold = lambda segments, base: True
if where == "folding":  # the new base half written
    real = layered.copy_base
    def copy_then_die(src, dst):
        real(src, dst)
        os.kill(os.getpid(), signal.SIGKILL)
    layered.copy_base = copy_then_die
elif where == "before the switch":  # the new base in place, the manifest not yet switched to it
    real_place = dbfiles.WriterFiles._place
    def place_then_die(self, scratch, kind, *rest):
        placed = real_place(self, scratch, kind, *rest)
        if kind == "base":
            os.kill(os.getpid(), signal.SIGKILL)
        return placed
    dbfiles.WriterFiles._place = place_then_die
elif where == "writing the photo view":  # the new base written, its view half written
    real_view = dbfiles.write_view
    def view_then_die(base, tags, files):
        real_view(base, tags, files)
        with open(files, "r+b") as fh:
            fh.truncate(os.path.getsize(files) // 2)
        os.kill(os.getpid(), signal.SIGKILL)
    dbfiles.write_view = view_then_die
record_corrections(sys.argv[1], [Correction(int(sys.argv[3]), "sea", "add"), Correction(int(sys.argv[3]), "sky", "add")])
"""


@pytest.mark.slow
@pytest.mark.parametrize("where", ["folding", "writing the photo view", "before the switch"])
def test_a_fold_killed_loses_nothing(store: Path, where: str) -> None:
    image = training_image(store)
    proc = subprocess.run([sys.executable, "-c", FOLD_KILLER, str(store), where, str(image)], check=False, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    contents(store)  # the store opens, as it was or with the corrections
    record_corrections(store, [Correction(image, "sea", "add"), Correction(image, "sky", "add")])
    after = contents(store)
    actions = [(r[1], r[2], r[3]) for r in after["corrections"]]
    assert len(actions) == len(set(actions)) == 2  # each correction once, whatever the kill left
    assert not list((store / "db").glob("*.tmp")) and not (store / "db" / "WORKING").exists()


# -- the library's vectors in layers --------------------------------------------------------------------------------
def brute(rows: dict[int, np.ndarray], q: np.ndarray, k: int) -> list[int]:
    ids = np.array(sorted(rows), np.int64)
    scores = np.stack([rows[i] for i in ids.tolist()]) @ q
    return ids[np.argsort(-scores, kind="stable")[:k]].tolist()


def test_layers_of_vectors_search_as_one_exact_index() -> None:
    rng = np.random.default_rng(0)
    d = 8
    truth = {i: rng.normal(size=d).astype(np.float32) for i in range(100)}
    ids = np.array(sorted(truth), np.int64)
    main, info = vectors.build_library_index(np.stack([truth[i] for i in ids.tolist()]), ids)
    layers = []
    for step in range(5):  # each layer replaces some photos, adds some, removes some
        replaced = rng.choice(sorted(truth), 5, replace=False)
        added = np.arange(100 + 10 * step, 110 + 10 * step)
        changed = np.concatenate([replaced, added]).astype(np.int64)
        rows = rng.normal(size=(len(changed), d)).astype(np.float32)
        gone = np.array([i for i in rng.choice(sorted(truth), 3, replace=False) if i not in changed], np.int64)
        for i, row in zip(changed.tolist(), rows, strict=True):
            truth[i] = row
        for i in gone.tolist():
            truth.pop(i)
        layers.append(vectors.Layer(changed, rows, gone))
    live = vectors.LibraryVectors(d, main, ids, layers, info)
    assert live.ntotal == len(truth) and sorted(live.ids().tolist()) == sorted(truth)
    queries = rng.normal(size=(20, d)).astype(np.float32)
    _, found = live.search(queries, 10)
    for q, f in zip(queries, found, strict=True):
        assert f.tolist() == brute(truth, q, 10)
    some = np.array(sorted(truth)[:7], np.int64)
    assert np.allclose(live.vectors_of(some), np.stack([truth[i] for i in some.tolist()]))
    merged = vectors.merge_layers(layers, d)
    again = vectors.LibraryVectors(d, main, ids, [merged], info)
    assert sorted(again.ids().tolist()) == sorted(truth)
    rows, all_ids = again.all_vectors()
    assert np.allclose(rows[np.argsort(all_ids)], np.stack([truth[i] for i in sorted(truth)]))


@pytest.mark.slow
def test_annotate_commits_write_layers_not_the_whole_index(store: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from annot.library import collection

    monkeypatch.setattr(collection, "COMMIT_SECONDS", 0.0)
    make_photos(tmp_path / "photos", 12, seed=5)
    annotate_photos(store, [tmp_path / "photos"], chunk=4)
    record = json.loads((store / "manifest.json").read_text())["collection"]
    assert record["ntotal"] == 12
    main = store / record["file"]["path"]
    stat = main.stat()
    make_photos(tmp_path / "more", 8, seed=6)
    annotate_photos(store, [tmp_path / "more"], chunk=4)
    record = json.loads((store / "manifest.json").read_text())["collection"]
    assert record["file"]["path"] == str(main.relative_to(store)) and main.stat().st_mtime_ns == stat.st_mtime_ns
    assert record["ntotal"] == 20 and len(record["layers"]) >= 2  # one per commit
    api_ids = set()
    import annot

    with annot.open_store(store) as api:
        for photo in sorted((tmp_path / "more").iterdir()):
            hits = api.search(like=photo, n=1, scope="library")
            api_ids.add(hits[0].path)
    assert api_ids == {str(p) for p in (tmp_path / "more").iterdir()}  # each new photo finds itself first


# -- writers taking turns -------------------------------------------------------------------------------------------
SLOW_ANNOTATE = """
import sys, time
sys.path.insert(0, "tests")
import conftest
import annot.library.collection as c
c.COMMIT_SECONDS = 0.0
real = c.Library.write
def slow(self, *args, **kwargs):
    out = real(self, *args, **kwargs)
    print("chunk", flush=True)
    time.sleep(0.4)
    return out
c.Library.write = slow
print(c.annotate_photos(sys.argv[1], [sys.argv[2]], chunk=2).annotated, flush=True)
"""


@pytest.mark.slow
def test_corrections_go_on_while_annotate_runs(store: Path, tmp_path: Path) -> None:
    make_photos(tmp_path / "photos", 16, seed=7)
    image = training_image(store)
    proc = subprocess.Popen([sys.executable, "-c", SLOW_ANNOTATE, str(store), str(tmp_path / "photos")], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "chunk"  # annotate is under way
    words = ["sky", "sun", "sea", "tree"]
    reports = []
    for n, word in enumerate(words):  # each waits for at most one change of annotate's, never fails
        reports.append(record_corrections(store, [Correction(image, word, "add" if n % 2 == 0 else "reject")],
                                          wait=30.0))
    running = proc.poll() is None
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert running  # the corrections were made while annotate ran
    assert out.strip().splitlines()[-1] == "16"
    assert [r.recorded for r in reports] == [1, 1, 1, 1]
    after = contents(store)
    assert len([r for r in after["photo_files"] if r[3] == "annotated"]) == 16
    assert [(r[2], r[3]) for r in after["corrections"] if r[1] == image][-4:] == \
        [(t, a) for t, a in zip([tag_id(store, w) for w in words], ["add", "reject", "add", "reject"], strict=True)]


def tag_id(store: Path, word: str) -> int:
    with StoreDir.open(store) as s:
        return int(s.db.read_sql(f"SELECT id FROM tags WHERE word = '{word}'")[1][0][0])


@pytest.mark.slow
def test_two_writers_of_a_whole_run_wait_or_say_who(store: Path) -> None:
    holder = StoreDir.open(store, write=True)
    try:
        with pytest.raises(Exception, match=f"process {os.getpid()}"):
            record_corrections(store, [Correction(training_image(store), "sky", "add")], wait=0.3)
        done = threading.Event()

        def correct() -> None:
            record_corrections(store, [Correction(training_image(store), "sky", "add")], wait=30.0)
            done.set()

        worker = threading.Thread(target=correct)
        worker.start()
        assert not done.wait(0.5)  # waiting for the holder
    finally:
        holder.close()
    worker.join(timeout=60)
    assert done.is_set()


@pytest.mark.slow
def test_a_corrected_photo_without_features_is_recorded_and_the_index_stays_whole(store: Path, tmp_path: Path) -> None:
    make_photos(tmp_path / "photos", 3, seed=9)
    annotate_photos(store, [tmp_path / "photos"])
    with StoreDir.open(store) as s:
        photo = int(s.db.read_sql("SELECT max(image_id) FROM photo_files")[1][0][0])
        ntotal = s.manifest().index.ntotal
        key = s.manifest().encoder.key
    for part in (store / "features" / key).glob("part-*"):  # its features gone (another encoder's, say)
        part.unlink()
    report = record_corrections(store, [Correction(photo, "sky", "add")])
    assert report.recorded == 1
    with StoreDir.open(store) as s:
        m = s.manifest()
        ids = s.read_array(m.index.ids)
        assert m.index.ntotal == ntotal == len(ids) == s.read_index(m.index.file).ntotal  # it could not enter


FULL_DISK = """
import resource, signal, sys
sys.path.insert(0, "tests")
import conftest
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG), as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv.pop(1)), resource.RLIM_INFINITY))
from annot.cli.main import main
sys.argv[0] = "annot"
main()
"""


@pytest.mark.slow
@pytest.mark.parametrize("limit", [16_384, 200_000])
def test_a_full_disk_during_a_change_is_one_line_and_loses_nothing(store: Path, limit: int) -> None:
    image = training_image(store)
    before = contents(store)
    manifest = (store / "manifest.json").read_text()
    done = subprocess.run([sys.executable, "-c", FULL_DISK, str(limit), "correct", str(image), "--add", "sea",
                           "--store", str(store)], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:  # refused with one line, the store as it was
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "large" in done.stderr, done.stderr
        assert (store / "manifest.json").read_text() == manifest and contents(store) == before
    report = record_corrections(store, [Correction(image, "sea", "add")])  # the rerun finishes the job
    after = contents(store)
    assert len(after["corrections"]) == len(before["corrections"]) + 1
    assert report.recorded + report.unchanged == 1


def test_a_segment_an_older_annot_began_gets_the_columns_added_since(tmp_path: Path) -> None:
    """A killed writer's working segment, begun before photo_files had taken_at, is continued with the column added
    (its rows kept, the new column empty)."""
    import duckdb

    from annot.schema.layered import create_segment_tables

    path = tmp_path / "seg.duckdb"
    raw = duckdb.connect()
    raw.execute(f"ATTACH '{path}' AS w")
    raw.execute("CREATE TABLE w.photo_files (image_id BIGINT, size BIGINT, mtime_ns BIGINT, state VARCHAR)")
    raw.execute("INSERT INTO w.photo_files VALUES (7, 10, 20, 'annotated')")
    create_segment_tables(raw, "w")
    rows = raw.execute("SELECT image_id, state, taken_at, same_as FROM w.photo_files").fetchall()
    assert rows == [(7, "annotated", None, None)]
    tables = {t for (t,) in raw.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = 'w'").fetchall()}
    assert {"images", "annotations", "corrections"} <= tables
    raw.close()


def test_a_base_an_older_annot_wrote_reads_its_missing_columns_as_typed_nulls(tmp_path: Path) -> None:
    """Layers without a column the schema has since (a base written before photo_files.taken_at) read it as a NULL
    of the column's type, so expressions over it bind (DuckDB cannot type a bare NULL for epoch())."""
    import duckdb

    from annot.schema.layered import Layers, attach

    base = tmp_path / "base.duckdb"
    raw = duckdb.connect()
    raw.execute(f"ATTACH '{base}' AS old")
    raw.execute("CREATE TABLE old.photo_files (image_id BIGINT, size BIGINT, mtime_ns BIGINT, state VARCHAR)")
    raw.execute("INSERT INTO old.photo_files VALUES (7, 10, 1563129000000000000, 'annotated')")
    raw.execute("CREATE TABLE old.images (id BIGINT, path VARCHAR)")
    raw.execute("INSERT INTO old.images VALUES (7, '/photos/a.jpg')")
    raw.close()
    reader = duckdb.connect()
    attach(reader, Layers(base))
    found = reader.execute("SELECT image_id, coalesce(epoch(taken_at)::BIGINT, mtime_ns // 1000000000), "
                           "typeof(taken_at) FROM photo_files").fetchall()
    assert found == [(7, 1563129000, "TIMESTAMP")]
    reader.close()



def test_the_schema_a_reader_knows_without_sqlalchemy_is_the_declared_one() -> None:
    """annot.schema.version names the tables' columns and the migrations' count as annot.schema.tables declares
    them (a reader builds its views from the former)."""
    from annot.schema.tables import MIGRATIONS, metadata
    from annot.schema.version import COLUMNS, SCHEMA_VERSION

    assert SCHEMA_VERSION == len(MIGRATIONS)
    assert COLUMNS == {t.name: tuple(c.name for c in t.columns) for t in metadata.sorted_tables}


def test_a_readers_views_over_layers_are_the_declared_schemas(store: Path) -> None:
    """The views a reader makes from the layers' own column types (no SQLAlchemy) have the columns, order and types
    of the ones made from the declared schema, and read the same rows."""
    import duckdb

    from annot.schema.layered import Layers, _columns, attach, declared_schema, view_sql
    from annot.store.dbfiles import reader_layers

    image = training_image(store)
    record_corrections(store, [Correction(image, "sky", "add")])
    with StoreDir.open(store) as s:
        layers = reader_layers(s.root, s.database_record())
    assert layers.segments and isinstance(layers, Layers)
    fast, declared = duckdb.connect(), duckdb.connect()
    attach(fast, layers)
    for name, path, _ in layers.named():
        declared.execute(f"ATTACH '{path}' AS {name} (READ_ONLY)")
    columns = _columns(declared)
    for table in declared_schema():
        select = view_sql(table, [name for name, _, _ in layers.named()], columns, declared_schema())
        assert select is not None
        declared.execute(f'CREATE VIEW main."{table}" AS {select}')
    described = "SELECT table_name, column_name, data_type FROM duckdb_columns() WHERE database_name = 'memory' " \
                "ORDER BY table_name, column_index"
    assert fast.execute(described).fetchall() == declared.execute(described).fetchall()
    for table in TABLES:
        assert sorted(fast.execute(f"SELECT * FROM {table}").fetchall(), key=repr) == \
            sorted(declared.execute(f"SELECT * FROM {table}").fetchall(), key=repr)


SEARCH_ALONE = """
import sys
from annot.cli.main import main
sys.argv = ["annot", "search", "sky", "--store", sys.argv[1], "--json", "--all", "-n", "1000"]
try:
    main()
except SystemExit as stop:
    print("exit", stop.code, file=sys.stderr)
print("imported:", sorted(m for m in ("sqlalchemy", "duckdb_engine", "torch", "onnxruntime") if m in sys.modules),
      file=sys.stderr)
"""


@pytest.mark.slow
def test_a_search_by_words_reads_the_store_without_sqlalchemy_or_the_encoders(store: Path) -> None:
    """``annot search WORD`` on a store with a segment above its base answers without importing SQLAlchemy, the
    DuckDB dialect or an image encoder's runtime (what a fresh command pays for them is most of its time)."""
    image = training_image(store)
    record_corrections(store, [Correction(image, "sky", "add")])
    done = subprocess.run([sys.executable, "-c", SEARCH_ALONE, str(store)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, check=False)
    assert "exit 0" in done.stderr, done.stderr
    assert "imported: []" in done.stderr, done.stderr
    hits = json.loads(done.stdout)
    assert any(hit["id"] == image for hit in hits["results"])  # the correction's photo, found by its added tag


SLOW_ADD = """
import sys, time
sys.path.insert(0, "tests")
import conftest
import annot.features.cache as cache
from annot.indexer.grow import add_images
real = cache.FeatureCache.extract
def slow(self, *args, **kwargs):
    print("extracting", flush=True)
    time.sleep(3.0)
    return real(self, *args, **kwargs)
cache.FeatureCache.extract = slow
print(add_images(sys.argv[1], sys.argv[2]).added, flush=True)
"""


@pytest.mark.slow
def test_corrections_go_on_while_add_extracts_features(store: Path, tmp_path: Path) -> None:
    """`annot add` holds the store only while it writes: a correction made while it extracts features is not kept
    waiting, and both land (the corrected image's new tag and the added images in the index)."""
    photos = make_photos(tmp_path / "more", 8, seed=91)
    corpus = tmp_path / "more" / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"image": p.name, "tags": tags}) + "\n" for p, tags in photos.items()))
    with StoreDir.open(store) as s:
        before = s.manifest().index.ntotal
    image = training_image(store)
    proc = subprocess.Popen([sys.executable, "-c", SLOW_ADD, str(corpus), str(store)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "extracting"  # add is under way, its images' rows written
    report = record_corrections(store, [Correction(image, "unseen", "add")], wait=0.5)  # refused if add held it
    running = proc.poll() is None
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert running and report.recorded == 1
    assert out.strip().splitlines()[-1] == "8"
    with StoreDir.open(store) as s:
        m = s.manifest()
        assert m.index.ntotal == before + 8 and "unseen" in m.vocabulary.words  # both changes kept
    assert (image, tag_id(store, "unseen"), "add") in [(r[1], r[2], r[3]) for r in contents(store)["corrections"]]


# -- the photo view written at a fold ---------------------------------------------------------------------------------
def view_arrays(store: Path) -> dict[str, list[object]]:
    """The photo view a reader loads, and the same read whole from the database, per photo as comparable lists."""
    from annot.library.photoview import PhotoView
    from annot.model import StoreModel

    model = StoreModel.open(store)
    try:
        view = PhotoView(model)
        fast = {int(i): sorted((t.tag, round(float(t.confidence or 0), 5), t.source) for t in view.tags(r))
                for r, i in enumerate(view.ids)}
        fast_library = {int(i) for i, lib in zip(view.ids, view.library, strict=True) if lib}
        whole = shown_whole(model)
    finally:
        model.close()
    return {"view": [fast, fast_library], "whole": whole}


def shown_whole(model: object) -> list[object]:
    """What the photo view holds, computed from the database alone (every layer read through)."""
    from annot.schema.shown import SOURCES, read_shown

    store = model.store  # type: ignore[attr-defined]
    with store.db.raw() as raw:
        shown = read_shown(raw, library=store.db.has_table("photo_files"))
    vocabulary = dict(zip(model.tag_ids, model.vocabulary, strict=True))  # type: ignore[attr-defined]
    photos = {int(i) for i in shown.files["image_id"]}
    library = {int(i) for i, a in zip(shown.files["image_id"], shown.files["annotated"], strict=True) if a}
    ids = {int(i) for i in model.ids if int(i) not in photos} | library  # type: ignore[attr-defined]
    out: dict[int, list[tuple[str, float, str]]] = {i: [] for i in ids}
    for i, t, c, s in zip(shown.tags["image_id"], shown.tags["tag_id"], shown.tags["confidence"], shown.tags["source"],
                          strict=True):
        if int(i) in ids and int(t) in vocabulary:
            out[int(i)].append((vocabulary[int(t)], round(float(c), 5), SOURCES[int(s)]))
    return [{i: sorted(v) for i, v in out.items()}, library]


@pytest.mark.slow
def test_the_photo_view_a_fold_wrote_with_the_segments_above_it_reads_as_the_database(
        store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = database_files(store)
    assert files["view"] and all((store / f["path"]).is_file() for f in files["view"])  # type: ignore[index]
    make_photos(tmp_path / "photos", 10, seed=5)
    annotate_photos(store, [tmp_path / "photos"], chunk=4)
    seen = view_arrays(store)
    assert seen["view"] == seen["whole"] and len(seen["view"][1]) == 10  # type: ignore[arg-type]
    with StoreDir.open(store) as s:
        photos = [int(i) for (i,) in s.db.read_sql("SELECT image_id FROM photo_files ORDER BY image_id")[1]]
    record_corrections(store, [Correction(photos[0], "snow", "add"), Correction(photos[1], "sky", "reject"),
                               Correction(photos[2], "sea", "confirm"), Correction(training_image(store), "city", "add")])
    record_corrections(store, [Correction(photos[1], "sky", "clear")])  # undo: the prediction is back
    seen = view_arrays(store)
    assert seen["view"] == seen["whole"]
    tags_of = seen["view"][0]  # type: ignore[index]
    assert ("snow", 1.0, "added") in tags_of[photos[0]]  # type: ignore[index]
    monkeypatch.setattr(dbfiles, "wants_fold", lambda segments, base: True)  # the next publish folds: a new view
    before = database_files(store)["view"]
    record_corrections(store, [Correction(photos[3], "tree", "add")])
    after = database_files(store)
    assert after["segments"] == [] and after["view"] != before  # type: ignore[index]
    assert not any((store / f["path"]).exists() for f in before  # type: ignore[union-attr]
                   if f["path"] not in json.dumps(json.loads((store / "manifest.previous.json").read_text())))
    monkeypatch.undo()
    make_photos(tmp_path / "more", 4, seed=6, prefix="q")
    annotate_photos(store, [tmp_path / "more"], chunk=2)
    seen = view_arrays(store)
    assert seen["view"] == seen["whole"] and len(seen["view"][1]) == 14  # type: ignore[arg-type]


@pytest.mark.slow
def test_corrections_go_on_while_eval_annotates(store: Path, synthetic: dict[str, Path]) -> None:
    from contextlib import contextmanager

    from annot.evaluation.evaluate import evaluate

    image = training_image(store)

    class Meanwhile:  # while the test images are annotated: a correction
        corrected = 0

        @contextmanager
        def task(self, description: str, total: int | None):  # type: ignore[no-untyped-def]
            if description == "annotating":
                self.corrected = record_corrections(store, [Correction(image, "snow", "add")]).recorded
            yield lambda n: None

    seen = Meanwhile()
    result = evaluate(store, synthetic["test"], progress=seen)
    assert seen.corrected == 1 and result.run_id is not None
    after = contents(store)
    assert len(after["runs"]) == 1 and len(after["corrections"]) == 1  # both kept
    with StoreDir.open(store) as s:
        recorded, now = s.db.read_sql("SELECT store_manifest_sha FROM runs")[1][0][0], s.manifest_sha()
    assert recorded != now  # the run names the model it was made with, not the one the correction made


def test_a_mapped_file_damaged_after_it_was_checked_is_found_damaged(store: Path, tmp_path: Path) -> None:
    from annot.errors import StoreError
    from annot.library.photoview import PhotoView
    from annot.model import StoreModel

    make_photos(tmp_path / "photos", 6, seed=5)
    annotate_photos(store, [tmp_path / "photos"], chunk=6)
    model = StoreModel.open(store)
    try:
        assert len(PhotoView(model)) > 6  # checked once (a marker in the user's cache says so)
        view = store / database_files(store)["view"][0]["path"]  # type: ignore[index]
    finally:
        model.close()
    data = bytearray(view.read_bytes())
    data[-1] ^= 0xFF  # the same size, other bytes: a new modification time
    view.write_bytes(bytes(data))
    model = StoreModel.open(store)
    try:
        with pytest.raises(StoreError, match="damaged photo view .its checksum differs"):
            PhotoView(model)
    finally:
        model.close()



def test_checking_a_mapped_file_removes_the_markers_of_files_long_replaced(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A new checksum marker removes the markers made more than MARKER_DAYS ago (those of files since replaced),
    keeps the recent ones and the cache's other files; a file whose marker went is checked again and mapped."""
    import hashlib
    import time

    from annot.store.files import MARKER_DAYS, StoredFile, map_array

    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("ANNOT_CACHE", str(cache))
    old = time.time() - (MARKER_DAYS + 1) * 86400
    for name in ("verified-old", "segment-old.duckdb"):
        (cache / name).write_bytes(b"")
        os.utime(cache / name, (old, old))
    (cache / "verified-recent").write_bytes(b"")
    root = tmp_path / "store"
    root.mkdir()
    np.save(root / "view.npy", np.arange(5))
    data = (root / "view.npy").read_bytes()
    stored = StoredFile("view.npy", len(data), hashlib.sha256(data).hexdigest())
    assert map_array(root, stored).tolist() == [0, 1, 2, 3, 4]
    left = {p.name for p in cache.iterdir()}
    assert "verified-old" not in left and {"verified-recent", "segment-old.duckdb"} <= left
    assert len([n for n in left if n.startswith("verified-")]) == 2  # the recent one and the new one

def test_a_rolled_back_write_leaves_its_groups_to_be_copied_again(store: Path) -> None:
    from annot.schema import image_tags
    from annot.schema.writes import delete_rows

    image = training_image(store)
    before = sorted(r for r in contents(store)["image_tags"] if r[0] == image)
    first = before[0][1]
    with StoreDir.open(store, write=True) as s:
        with pytest.raises(RuntimeError), s.db.begin() as conn:  # copies the image's tags, then is rolled back
            delete_rows(conn, image_tags, image_tags.c.image_id == image, keys=[image])
            raise RuntimeError("undone")
        with s.db.begin() as conn:  # the same group again: copied again, not taken as held
            delete_rows(conn, image_tags, image_tags.c.image_id == image, image_tags.c.tag_id == first, keys=[image])
    after = sorted(r for r in contents(store)["image_tags"] if r[0] == image)
    assert after == [r for r in before if r[1] != first] and len(after) == len(before) - 1
