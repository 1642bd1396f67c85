"""Bad input and faults, as a hostile new user would try them: no silent damage, no traceback, and a store left
exactly as it was (or as a fresh index would have made it) whatever is tried."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annot.evaluation.evaluate import evaluate
from annot.indexer import build_index
from annot.indexer.grow import add_images, refit
from annot.model import StoreModel
from annot.projection.cca import CCAStatistics
from annot.store import StoreDir
from conftest import fake_settings, invoke, make_corpus

ROOT = Path(__file__).parent.parent
CLI = "import sys; sys.path.insert(0, 'tests'); import conftest; from annot.cli.main import main; sys.argv[0] = 'annot'; main()"


def snapshot(store: Path) -> dict[str, str]:
    """Every file of a store (the lock file aside) and its SHA-256."""
    return {str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(store.rglob("*")) if p.is_file() and p.name != ".lock"}


def one_line_error(result, message: str, code: int | None = None) -> None:  # type: ignore[no-untyped-def]
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert result.exit_code != 0 and (code is None or result.exit_code == code), (result.exit_code, result.output)
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert message in " ".join(result.stderr.split()), result.stderr
    assert "Traceback" not in result.output


def statistics(store: Path) -> CCAStatistics:
    with StoreDir.open(store) as s:
        file = s.manifest().projection.statistics
        assert file is not None
        return CCAStatistics.from_arrays(s.read_arrays(file))


# -- 1. add of indexed images with other tags ------------------------------------------------------------------------
def retagged_corpus(synthetic: dict[str, Path], name: str, n: int = 10) -> tuple[Path, Path]:
    """The first ``n`` training images with other tags (``changed``), and the whole corpus with those changes."""
    lines = [json.loads(line) for line in synthetic["train"].read_text().splitlines()]
    for entry in lines[:n]:
        entry["tags"] = ["snow", "sun"] if entry["tags"] != ["snow", "sun"] else ["sky"]
    changed = synthetic["folder"] / f"{name}-changed.jsonl"
    changed.write_text("".join(json.dumps(e) + "\n" for e in lines[:n]))
    whole = synthetic["folder"] / f"{name}-whole.jsonl"
    whole.write_text("".join(json.dumps(e) + "\n" for e in lines))
    return changed, whole


@pytest.mark.parametrize("space", ["image", "text"])
@pytest.mark.slow
def test_adding_indexed_images_with_other_tags_changes_them_everywhere(store: Path, synthetic: dict[str, Path],
                                                                     tmp_path: Path, space: str) -> None:
    if space != "image":
        build_index(synthetic["train"], store, fake_settings(synthetic, k=3, temperature=0.1, space=space))
    changed, whole = retagged_corpus(synthetic, f"{tmp_path.name}-{space}")
    result = invoke("add", changed, "--store", store, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["added"], report["retagged"], report["indexed"]) == (0, 10, 160)
    fresh = tmp_path / "fresh.annot"
    build_index(whole, fresh, fake_settings(synthetic, k=3, temperature=0.1, space=space))
    grown, expected = statistics(store), statistics(fresh)
    assert grown.n == expected.n == 160
    np.testing.assert_allclose(grown.xy, expected.xy, rtol=1e-9, atol=1e-12)  # the old tags left, the new ones came
    np.testing.assert_allclose(grown.yy, expected.yy, rtol=1e-9, atol=1e-12)
    with StoreDir.open(store) as s, StoreDir.open(fresh) as t:  # the votes: the indexed tags are the new ones
        a, b = StoreModel(s), StoreModel(t)
        paths_a = dict(s.db.read_sql("SELECT id, path FROM images")[1])
        paths_b = dict(t.db.read_sql("SELECT id, path FROM images")[1])
        tags_a = {paths_a[int(i)]: tuple(row) for i, row in zip(a.ids, a.labels, strict=True)}
        tags_b = {paths_b[int(i)]: tuple(row) for i, row in zip(b.ids, b.labels, strict=True)}
        assert tags_a == tags_b
    if space == "text":  # the rows that depend on the tags were replaced: the projection of each image's new tags
        from test_space import stored_and_tag_rows

        rows, expected_rows = stored_and_tag_rows(store, synthetic["words"])
        np.testing.assert_allclose(rows, expected_rows, atol=1e-5)
    again = json.loads(invoke("add", changed, "--store", store, "--json").stdout)
    assert (again["added"], again["retagged"]) == (0, 0)  # a rerun changes nothing twice
    assert refit(store).refitted  # what failed before: 'projected 4494 rows, expected 4498'
    assert refit(fresh).refitted
    grown_eval = evaluate(store, synthetic["test"], record=False).summary
    fresh_eval = evaluate(fresh, synthetic["test"], record=False).summary
    assert grown_eval.f1 == pytest.approx(fresh_eval.f1, abs=1e-9) and grown_eval.n_plus == fresh_eval.n_plus


def test_an_image_left_without_a_usable_tag_leaves_the_index(store: Path, synthetic: dict[str, Path]) -> None:
    first = json.loads(synthetic["train"].read_text().splitlines()[0])
    corpus = synthetic["folder"] / "untagged-one.jsonl"
    corpus.write_text(json.dumps({"image": first["image"], "tags": ["volcano"]}) + "\n")  # outside the vocabulary
    report = add_images(corpus, store)
    assert report.retagged == 1 and report.ntotal == 159
    assert statistics(store).n == 159
    assert refit(store).ntotal == 159


# -- 2 and 7. missing and damaged files -----------------------------------------------------------------------------
COMMANDS = [
    ("info",), ("runs",), ("sql", "SELECT count(*) FROM images"), ("query", "{image}"), ("eval", "{test}"),
    ("add", "{test}"), ("remove", "{image}"), ("refit",), ("tune", "--folds", "2"), ("fit", "jec"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_a_store_without_its_database_is_refused_by_every_command(store: Path, synthetic: dict[str, Path],
                                                                  command: tuple[str, ...]) -> None:
    base = store / json.loads((store / "manifest.json").read_text())["database"]["base"]["path"]
    base.unlink()
    before = snapshot(store)
    image = synthetic["folder"] / json.loads(synthetic["test"].read_text().splitlines()[0])["image"]
    args = [a.format(image=image, test=synthetic["test"]) for a in command]
    one_line_error(invoke(*args, "--store", store), f"{base.name}: missing")
    assert snapshot(store) == before and not base.exists()  # no new, empty database


@pytest.mark.parametrize("what", ["projection", "statistics", "image index", "image ids", "indexed tags",
                                  "word index"])
def test_a_store_missing_a_model_file_is_refused_naming_it(store: Path, synthetic: dict[str, Path], what: str) -> None:
    with StoreDir.open(store) as s:
        file = dict(s.manifest().files())[what]
    (store / file.path).unlink()
    image = synthetic["folder"] / json.loads(synthetic["test"].read_text().splitlines()[0])["image"]
    for args in (("info",), ("query", image), ("add", synthetic["test"]), ("eval", synthetic["test"])):
        one_line_error(invoke(*args, "--store", store), f"{file.path}: missing ({what} named by the manifest)")


def test_damaged_files_are_refused_by_name(store: Path, synthetic: dict[str, Path]) -> None:
    image = synthetic["folder"] / json.loads(synthetic["test"].read_text().splitlines()[0])["image"]
    manifest = json.loads((store / "manifest.json").read_text())
    projection = store / manifest["projection"]["file"]["path"]
    data = projection.read_bytes()
    projection.write_bytes(data[: len(data) // 2])  # truncated
    one_line_error(invoke("query", image, "--store", store), "damaged projection")
    projection.write_bytes(data[:-8] + b"\0" * 8)  # the same size, other bytes
    one_line_error(invoke("query", image, "--store", store), "damaged projection (its checksum differs")
    projection.write_bytes(data)
    # a store that records no checksums (format 1) is checked by what its files hold: ids against the index
    ids = store / manifest["index"]["ids"]["path"]
    np.save(ids, np.load(ids)[:-3])
    for key in ("ids", "labels"):
        manifest["index"][key] = {"path": manifest["index"][key]["path"], "size": None, "sha256": None}
    (store / "manifest.json").write_text(json.dumps(manifest))
    one_line_error(invoke("query", image, "--store", store), "damaged image ids (157 ids for an index of 160 images")
    del manifest["index"]
    (store / "manifest.json").write_text(json.dumps(manifest))
    one_line_error(invoke("info", "--store", store), "incomplete manifest (no 'index')")
    manifest["format_version"] = "1"
    (store / "manifest.json").write_text(json.dumps(manifest))
    one_line_error(invoke("info", "--store", store), "store format version '1' is not a whole number")


# -- 3. a sandboxed annot sql ---------------------------------------------------------------------------------------
REFUSED = [
    "COPY images TO '{store}/manifest.json'", "EXPORT DATABASE '{store}/indexes'",
    "SELECT * FROM read_csv('/etc/passwd')", "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/passwd')", "SELECT * FROM glob('/etc/*')", "INSTALL httpfs", "LOAD httpfs",
    "SET enable_external_access = true", "ATTACH '{store}/other.duckdb'", "DELETE FROM runs",
    "CREATE TABLE t AS SELECT 1", "DROP TABLE images",
]


@pytest.mark.slow
def test_sql_touches_no_file_and_changes_nothing(store: Path) -> None:
    before = snapshot(store)
    for statement in REFUSED:
        result = invoke("sql", statement.format(store=store), "--store", store)
        one_line_error(result, "refused")
    assert snapshot(store) == before and not (store / "other.duckdb").exists()
    result = invoke("sql", "SELECT word FROM tags JOIN image_tags ON tags.id = image_tags.tag_id GROUP BY word "
                           "ORDER BY count(*) DESC LIMIT 2", "--store", store, "--json")
    assert result.exit_code == 0 and len(json.loads(result.stdout)) == 2
    slow = "SELECT count(*) FROM range(100000000) a, range(100000000) b"
    started = time.perf_counter()
    one_line_error(invoke("sql", slow, "--store", store, "--timeout", "1"), "ran over its --timeout of 1 s")
    assert time.perf_counter() - started < 20
    one_line_error(invoke("sql", "SELECT 1", "--store", store, "--timeout", "0"), "--timeout must be", code=2)


# annot sql, saying on stdout when its statement has started (so that Ctrl-C comes while it runs, not before)
SQL_STARTED = """
import sys, threading
sys.path.insert(0, "tests")
import conftest
import annot.store.sql as sql
start = threading.Thread.start
def started(self):
    start(self)
    print("started", flush=True)
sql.threading.Thread.start = started
from annot.cli.main import main
sys.argv[0] = "annot"
main()
"""


@pytest.mark.slow
def test_ctrl_c_in_sql_is_a_clean_exit_130(store: Path) -> None:
    slow = "SELECT count(*) FROM range(100000000) a, range(100000000) b"
    process = subprocess.Popen([sys.executable, "-c", SQL_STARTED, "sql", slow, "--store", str(store)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "started"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()  # never left running, whatever failed
    assert process.returncode == 130, err
    assert "Traceback" not in err and err.strip().startswith("error: interrupted; nothing stored was lost")


# -- 4. malformed CSV ------------------------------------------------------------------------------------------------
def test_a_quote_left_open_in_a_csv_corpus_is_an_error_naming_its_line(synthetic: dict[str, Path], tmp_path: Path) -> None:
    rows = [json.loads(line) for line in synthetic["train"].read_text().splitlines()[:40]]
    lines = ["image,tags"] + [f"{r['image']},{';'.join(r['tags'])}" for r in rows]
    lines[8] = lines[8].replace(",", ',"', 1)  # image 8's tags open a quote that never closes
    corpus = synthetic["folder"] / f"{tmp_path.name}.csv"
    corpus.write_text("\n".join(lines) + "\n")
    result = invoke("index", corpus, "--store", tmp_path / "s.annot", "--encoder", "fake", "--words", synthetic["words"])
    one_line_error(result, f"{corpus.name}:9: malformed CSV")
    assert not (tmp_path / "s.annot").exists()


# -- 5. content duplicates -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_copy_of_a_test_image_among_the_training_images_is_refused_by_eval(store: Path, synthetic: dict[str, Path],
                                                                              tmp_path: Path) -> None:
    test = json.loads(synthetic["test"].read_text().splitlines()[3])
    copy = tmp_path / "holiday.jpeg"
    shutil.copy(synthetic["folder"] / test["image"], copy)
    corpus = tmp_path / "more.jsonl"
    corpus.write_text(json.dumps({"image": copy.name, "tags": test["tags"]}) + "\n")
    assert invoke("add", corpus, "--store", store).exit_code == 0
    result = invoke("eval", synthetic["test"], "--store", store)
    one_line_error(result, f"has the same content as the training image {copy}")
    assert json.loads(invoke("runs", "--store", store, "--json").stdout) == []  # nothing recorded
    twin = tmp_path / "twin.jsonl"  # the same bytes under another path again: reported
    shutil.copy(copy, tmp_path / "again.jpeg")
    twin.write_text(json.dumps({"image": "again.jpeg", "tags": ["sky"]}) + "\n")
    result = invoke("add", twin, "--store", store, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["content_duplicates"] == {
        str(tmp_path / "again.jpeg"): f"{copy} (train)"}


# -- 6. symlink loops and decompression bombs -------------------------------------------------------------------------
@pytest.mark.slow
def test_symlink_loops_and_images_over_the_pixel_limit_are_counted_or_fatal_when_strict(
        synthetic: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "corpus"
    corpus = make_corpus(folder, 30, seed=4)
    os.symlink(folder / "images" / "loop.jpeg", folder / "images" / "loop.jpeg")  # a link to itself
    big = folder / "images" / "big.png"
    Image.new("L", (300, 300)).save(big)  # 90,000 pixels: over the limit set below
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)
    with corpus.open("a") as fh:
        fh.write(json.dumps({"image": "images/loop.jpeg", "tags": ["sky"]}) + "\n")
        fh.write(json.dumps({"image": "images/big.png", "tags": ["sky"]}) + "\n")
    result = invoke("index", corpus, "--store", tmp_path / "s.annot", "--encoder", "fake", "--words",
                    synthetic["words"], "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["indexed"] == 30 and set(report["unreadable"]) == {str(folder / "images" / "loop.jpeg"), str(big)}
    assert "pixel limit" in report["unreadable"][str(big)] and "DecompressionBomb" not in result.stderr
    assert "symbolic links" in report["unreadable"][str(folder / "images" / "loop.jpeg")]
    strict = invoke("index", corpus, "--store", tmp_path / "strict.annot", "--encoder", "fake", "--words",
                    synthetic["words"], "--strict")
    one_line_error(strict, "loop.jpeg")
    result = invoke("query", big, folder / "images" / "loop.jpeg", "--store", tmp_path / "s.annot")
    assert result.exit_code == 1 and "Traceback" not in result.output and "pixel limit" in result.stderr


# -- 8. settings ------------------------------------------------------------------------------------------------------
BAD_INDEX = [
    (("--reg", "nan"), "--reg must be a finite number, got nan"), (("--reg", "-1"), "--reg must be >= 0"),
    (("--batch-size", "0"), "--batch-size must be a whole number >= 1, got 0"),
    (("--temperature", "nan"), "--temperature must be a finite number"), (("--temperature", "0"), "--temperature must be > 0"),
    (("--frequency-power", "nan"), "--frequency-power must be a finite number"),
    (("--frequency-power", "inf"), "--frequency-power must be a finite number"), (("--k", "0"), "--k must be a whole number >= 1"),
    (("--components", "999"), "--components must be <= 14"), (("--index", "IVF-x"), "--index must be auto or a FAISS"),
    (("--landmarks", "-3"), "--landmarks must be auto, all or a whole number >= 2"),
    (("--projection", "kcca", "--gamma-scale", "0"), "--gamma-scale must be > 0"),
    (("--tag-agreement", "2"), "--tag-agreement must be <= 1"), (("--memory-budget", "lots"), "--memory-budget cannot read"),
    (("--depth", "-1"), "--depth must be a whole number >= 0"), (("--score", "z"), "--score must be one of"),
    (("--normalize", "l3"), "--normalize must be one of"),
]


@pytest.mark.parametrize(("flags", "message"), BAD_INDEX, ids=[" ".join(f) for f, _ in BAD_INDEX])
def test_bad_settings_are_refused_before_any_work(synthetic: dict[str, Path], tmp_path: Path,
                                                  flags: tuple[str, ...], message: str) -> None:
    store = tmp_path / "s.annot"
    result = invoke("index", synthetic["train"], "--store", store, "--encoder", "fake", "--words", synthetic["words"],
                    *flags)
    one_line_error(result, message, code=2)
    assert not store.exists()  # refused before the store, its database or a feature was written


BAD_QUERY = [(("-n", "0"), "-n must be a whole number >= 1, got 0"), (("--k", "0"), "--k must be a whole number >= 1"),
             (("--temperature", "0"), "--temperature must be > 0"), (("--temperature", "nan"), "finite number"),
             (("--frequency-power", "inf"), "finite number"), (("--method", "magic"), "--method must be one of")]


@pytest.mark.parametrize(("flags", "message"), BAD_QUERY, ids=[" ".join(f) for f, _ in BAD_QUERY])
def test_bad_query_and_eval_settings_are_refused_not_replaced(store: Path, synthetic: dict[str, Path],
                                                              flags: tuple[str, ...], message: str) -> None:
    image = synthetic["folder"] / json.loads(synthetic["test"].read_text().splitlines()[0])["image"]
    before = snapshot(store)
    one_line_error(invoke("query", image, "--store", store, *flags), message, code=2)
    one_line_error(invoke("eval", synthetic["test"], "--store", store, *flags), message, code=2)
    assert snapshot(store) == before  # no run with NaN in its settings, no test images imported


# -- 9. readers beside a writer -----------------------------------------------------------------------------------
HOLD = ("import sys; sys.path.insert(0, 'src'); from annot.store import StoreDir; "
        "s = StoreDir.open(sys.argv[1], write=True); s.db; print('held', flush=True); sys.stdin.readline(); "
        "s.close()")  # holds the writer lock until a line arrives on its stdin


@pytest.mark.slow
def test_readers_keep_working_while_a_writer_runs_and_a_second_writer_is_told_who(store: Path,
                                                                                  synthetic: dict[str, Path]) -> None:
    image = synthetic["folder"] / json.loads(synthetic["test"].read_text().splitlines()[0])["image"]
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(store)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdin is not None and holder.stdout.readline().strip() == "held"
    try:
        assert invoke("query", image, "--store", store).exit_code == 0
        assert invoke("info", "--store", store).exit_code == 0
        assert invoke("sql", "SELECT count(*) FROM images", "--store", store).exit_code == 0
        one_line_error(invoke("eval", synthetic["test"], "--store", store),
                       f"the store is being changed by process {holder.pid}")
        waiting = subprocess.Popen([sys.executable, "-c", CLI, "eval", str(synthetic["test"]), "--store", str(store),
                                    "--wait", "--json"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        assert waiting.stderr is not None
        assert any("waiting for process" in waiting.stderr.readline() for _ in range(20))
        holder.stdin.write("release\n")
        holder.stdin.flush()
        out, err = waiting.communicate(timeout=120)  # it goes on once the holder lets go
        assert waiting.returncode == 0 and json.loads(out)["summary"]["images"] == 40, err
    finally:
        holder.kill()
        holder.wait(timeout=60)


@pytest.mark.slow
def test_a_long_add_never_locks_readers_out(synthetic: dict[str, Path], tmp_path: Path) -> None:
    lines = synthetic["train"].read_text().splitlines()
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("".join(line.replace('"images/', f'"{synthetic["folder"]}/images/') + "\n" for line in lines[:100]))
    b.write_text("".join(line.replace('"images/', f'"{synthetic["folder"]}/images/') + "\n" for line in lines[100:]))
    store = tmp_path / "s.annot"
    build_index(a, store, fake_settings(synthetic, k=3))
    image = synthetic["folder"] / json.loads(lines[150])["image"]
    writer = subprocess.Popen([sys.executable, "-c", PAUSED, "add", str(b), "--store", str(store)], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert writer.stdout is not None and writer.stdin is not None
    assert writer.stdout.readline().strip() == "paused"  # it has imported and extracted; it has not published
    for _ in range(3):
        with StoreDir.open(store) as s:  # readers are not locked out, and see the store as it was
            model = StoreModel(s)
            assert len(model.ids) == model.index.ntotal == model.manifest.index.ntotal == 100
        assert invoke("query", image, "--store", store).exit_code == 0
    writer.stdin.write("go\n")
    writer.stdin.flush()
    seen = set()
    while writer.poll() is None:
        with StoreDir.open(store) as s:  # every read sees a whole store, before or after the add
            model = StoreModel(s)
            assert len(model.ids) == model.index.ntotal == model.manifest.index.ntotal
            seen.add(model.index.ntotal)
    assert writer.wait(timeout=120) == 0, writer.stderr.read() if writer.stderr else ""
    assert seen <= {100, 160}
    with StoreDir.open(store) as s:
        assert StoreModel(s).index.ntotal == 160


# annot, pausing its writer before it first publishes, until a line arrives on its stdin
PAUSED = """
import sys
sys.path.insert(0, "tests")
import conftest
import annot.store.directory as d
publish = d.StoreDir._publish_database
paused = []
def pause_then_publish(self, named=False):
    if not paused:
        paused.append(1)
        print("paused", flush=True)
        sys.stdin.readline()
    return publish(self, named)
d.StoreDir._publish_database = pause_then_publish
from annot.cli.main import main
sys.argv[0] = "annot"
main()
"""


# -- 10. EXIF orientation -------------------------------------------------------------------------------------------
def test_photos_are_turned_upright_by_their_exif_orientation(tmp_path: Path) -> None:
    from annot.features.cache import encode_paths
    from annot.features.images import probe_image
    from conftest import FakeEncoder

    upright = np.zeros((48, 64, 3), np.uint8)  # as shown: sky above, grass below, a sun in the top right
    upright[:24] = (30, 90, 230)
    upright[24:] = (90, 200, 60)
    upright[4:12, 50:60] = (250, 200, 0)
    shown = tmp_path / "shown.png"
    Image.fromarray(upright).save(shown)
    # as a phone stores it: the sensor's pixels, turned a quarter, with Orientation 6 ("rotate 90° clockwise to show")
    sideways = tmp_path / "phone.jpg"
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(sideways, quality=100, exif=exif)
    encoder = FakeEncoder()
    X_shown = encode_paths(encoder, [shown], upright=True)[0]
    X_phone = encode_paths(encoder, [sideways], upright=True)[0]
    X_raw = encode_paths(encoder, [sideways], upright=False)[0]
    np.testing.assert_allclose(X_phone, X_shown, atol=0.03)  # seen as shown (JPEG noise aside)
    assert np.abs(X_raw - X_shown).max() > 0.3  # sideways it is another picture
    info = probe_image(sideways)
    assert (info.width, info.height) == (64, 48)  # the size as shown


def test_a_store_keeps_features_decoded_upright_apart_from_version_1_ones(built_store: Path) -> None:
    with StoreDir.open(built_store) as s:
        encoder = s.manifest().encoder
    assert encoder.orientation == "exif" and encoder.key == "fake-exif"
    assert (built_store / "features" / "fake-exif").is_dir() and not (built_store / "features" / "fake").exists()


# -- smaller, found on the way ------------------------------------------------------------------------------------
def test_corpus_files_folders_bom_and_unicode_tags(synthetic: dict[str, Path], tmp_path: Path) -> None:
    from annot.indexer.corpus import normalize_tag, read_corpus

    # a folder is a photo library whose keywords train the store; one whose photos have none is one line
    one_line_error(invoke("index", synthetic["folder"], "--store", tmp_path / "s.annot", "--encoder", "fake"),
                   "none of the 200 photos has keywords")
    assert not (tmp_path / "s.annot").exists()
    one_line_error(invoke("index", synthetic["folder"] / "nothing-here.jsonl", "--store", tmp_path / "s.annot"),
                   "no such file")
    rows = synthetic["train"].read_text().splitlines()[:3]
    bom = synthetic["folder"] / f"{tmp_path.name}-bom.jsonl"
    bom.write_bytes("\ufeff".encode() + "\n".join(rows).encode() + b"\n")
    assert len(read_corpus(bom).entries) == 3
    forms = ["caf\u00e9", "cafe\u0301", "s\u200bky", "\uff53\uff4b\uff59", "  Sky ", "SKY"]
    assert [normalize_tag(t) for t in forms] == ["café", "café", "sky", "sky", "sky", "sky"]


@pytest.mark.slow
def test_remove_of_a_test_image_is_refused_and_changes_nothing(store: Path, synthetic: dict[str, Path]) -> None:
    assert invoke("eval", synthetic["test"], "--store", store).exit_code == 0
    image = synthetic["folder"] / json.loads(synthetic["test"].read_text().splitlines()[0])["image"]
    before = invoke("sql", "SELECT split, count(*) AS n FROM images GROUP BY split ORDER BY split", "--store", store,
                    "--json").stdout
    one_line_error(invoke("remove", image, "--store", store), "a test image of")
    assert invoke("sql", "SELECT split, count(*) AS n FROM images GROUP BY split ORDER BY split", "--store", store,
                  "--json").stdout == before


def test_add_of_only_unreadable_images_is_an_error(store: Path, tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_text("not a picture")
    corpus = tmp_path / "bad.jsonl"
    corpus.write_text(json.dumps({"image": "a.jpg", "tags": ["sky"]}) + "\n"
                      + json.dumps({"image": "gone.jpg", "tags": ["sky"]}) + "\n")
    before = statistics(store).n
    one_line_error(invoke("add", corpus, "--store", store), "none of its 2 images could be read")
    assert statistics(store).n == before


class Payload:
    """An object a pickle would rebuild by running this module's code."""


def test_weights_holding_code_are_refused_without_suggesting_to_run_it(synthetic: dict[str, Path], tmp_path: Path) -> None:
    import torch

    pickled = tmp_path / "evil.pth"
    torch.save({"state": Payload()}, pickled)  # not a plain tensor dict
    result = invoke("index", synthetic["train"], "--store", tmp_path / "s.annot", "--encoder", "efficientnet-lite0",
                    "--weights", pickled)
    one_line_error(result, "holds more than plain tensors")
    assert "weights_only" not in result.output
