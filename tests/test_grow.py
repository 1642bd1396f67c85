"""annot add / remove / refit: the statistics stay exact, the index follows, every step can be rerun."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from annot.errors import StoreError
from annot.evaluation.evaluate import evaluate
from annot.indexer import build_index
from annot.indexer.grow import add_images, refit
from annot.model import StoreModel
from annot.projection.cca import CCAStatistics
from annot.settings import BuildSettings
from annot.store import StoreDir
from conftest import fake_settings, invoke


def split(synthetic: dict[str, Path], tmp_path: Path, at: int) -> tuple[Path, Path]:
    """The synthetic training corpus in two files beside it (so image paths resolve the same)."""
    lines = synthetic["train"].read_text().splitlines()
    a = synthetic["folder"] / f"a-{tmp_path.name}.jsonl"
    b = synthetic["folder"] / f"b-{tmp_path.name}.jsonl"
    a.write_text("\n".join(lines[:at]) + "\n")
    b.write_text("\n".join(lines[at:]) + "\n")
    return a, b


def config(synthetic: dict[str, Path]) -> BuildSettings:
    return fake_settings(synthetic, k=3, temperature=0.1)


def statistics(store: Path) -> CCAStatistics:
    with StoreDir.open(store) as s:
        statistics = s.manifest().projection.statistics
        assert statistics is not None
        return CCAStatistics.from_arrays(s.read_arrays(statistics))


@pytest.mark.slow
def test_add_then_refit_equals_indexing_everything(synthetic: dict[str, Path], built_store: Path, store: Path,
                                                   tmp_path: Path) -> None:
    everything = store  # a private copy of the store indexed from all 160 images
    a, b = split(synthetic, tmp_path, 100)
    store = tmp_path / "grow.annot"
    build_index(a, store, config(synthetic))
    projection_before = json.loads((store / "manifest.json").read_text())["projection"]["file"]["path"]
    report = add_images(b, store)
    assert report.added == 60 and report.ntotal == 160
    assert json.loads((store / "manifest.json").read_text())["projection"]["file"]["path"] == projection_before  # no refit
    full, grown = statistics(built_store), statistics(store)
    assert grown.n == full.n == 160
    np.testing.assert_allclose(grown.xy, full.xy, rtol=1e-10)
    np.testing.assert_allclose(grown.xx, full.xx, rtol=1e-10)
    with StoreDir.open(store) as s:  # an added image finds itself through the old projection
        model = StoreModel(s)
        added = json.loads(b.read_text().splitlines()[0])["image"]
        image_id = s.db.read_sql(f"SELECT id FROM images WHERE path LIKE '%{Path(added).name}'")[1][0][0]
        x = model.feature_cache().load([image_id])
        votes = model.predict(x, model.settings.scoring.replace(method="nn", n_tags=1))[0].votes[0]
        assert votes[0][0] == image_id and votes[0][1] < 1e-4
    assert add_images(b, store).added == 0  # rerun: nothing twice

    assert refit(store).refitted
    with StoreDir.open(store) as s, StoreDir.open(built_store) as t:
        np.testing.assert_allclose(s.manifest().projection.canonical_correlations,
                                   t.manifest().projection.canonical_correlations, atol=2e-6)
    grown = evaluate(store, synthetic["test"], record=False).summary
    fresh = evaluate(everything, synthetic["test"], record=False).summary
    assert grown.f1 == pytest.approx(fresh.f1, abs=1e-9) and grown.n_plus == fresh.n_plus


@pytest.mark.slow
def test_remove_takes_images_out_of_index_statistics_and_votes(synthetic: dict[str, Path], tmp_path: Path) -> None:
    a, b = split(synthetic, tmp_path, 150)
    store = tmp_path / "shrink.annot"
    build_index(synthetic["train"], store, config(synthetic))
    kept = tmp_path / "kept.annot"
    build_index(a, kept, config(synthetic))
    result = invoke("remove", b, "--store", store, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {k: report[k] for k in ("added", "removed", "skipped", "indexed")} == {"added": 0, "removed": 10,
                                                                                 "skipped": 0, "indexed": 150}
    shrunk, fresh = statistics(store), statistics(kept)
    assert shrunk.n == fresh.n == 150
    np.testing.assert_allclose(shrunk.xy, fresh.xy, rtol=1e-8, atol=1e-9)
    with StoreDir.open(store) as s:
        removed = {int(i) for (i,) in s.db.read_sql("SELECT id FROM images WHERE split = 'removed'")[1]}
        model = StoreModel(s)
        assert len(removed) == 10 and not removed & set(model.ids.tolist())
        x = model.feature_cache().load(sorted(removed))
        voters = {v[0] for p in model.predict(x, model.settings.scoring.replace(n_tags=3)) for word in p.votes for v in word}
        assert not voters & removed  # their tags no longer vote
    again = json.loads(invoke("remove", b, "--store", store, "--json").stdout)
    assert again["removed"] == 0 and again["skipped"] == 10
    assert invoke("add", b, "--store", store, "--json").exit_code == 0  # and back in
    assert statistics(store).n == 160


def model_of(store: Path) -> dict[str, object]:
    """The store's manifest less what names its database files and when it changed."""
    manifest = json.loads((store / "manifest.json").read_text())
    return {k: v for k, v in manifest.items() if k not in ("database", "updated_at")}


@pytest.mark.slow
def test_a_crash_before_the_switch_leaves_the_previous_store(synthetic: dict[str, Path], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = split(synthetic, tmp_path, 120)
    store = tmp_path / "crash.annot"
    build_index(a, store, config(synthetic))
    before = model_of(store)

    def crash(self, manifest):  # type: ignore[no-untyped-def]
        raise OSError("disk full")

    monkeypatch.setattr(StoreDir, "write_manifest", crash)
    with pytest.raises(OSError):
        add_images(b, store)
    monkeypatch.undo()
    assert model_of(store) == before  # the database's new rows are published, the model is the one before
    with StoreDir.open(store) as s:
        assert StoreModel(s).index.ntotal == 120  # readable, as it was
    assert add_images(b, store).added == 40  # the rerun finishes the job
    assert statistics(store).n == 160


@pytest.mark.slow
def test_kcca_stores_cannot_grow(synthetic: dict[str, Path], tmp_path: Path) -> None:
    store = tmp_path / "k.annot"
    build_index(synthetic["train"], store, fake_settings(synthetic, projection="kcca"))
    with pytest.raises(StoreError, match="linear-cca"):
        refit(store)


CLI = "import sys; sys.path.insert(0, 'tests'); import conftest; from annot.cli.main import main; sys.argv[0] = 'annot'; main()"


@pytest.mark.parametrize("delay", [0.4, 1.2, 2.5])
@pytest.mark.slow
def test_sigkill_at_any_point_leaves_a_readable_store_and_a_rerun_completes(
    synthetic: dict[str, Path], tmp_path: Path, delay: float
) -> None:
    import signal
    import subprocess
    import sys
    import time

    a, b = split(synthetic, tmp_path, 100)
    store = tmp_path / "killed.annot"
    build_index(a, store, config(synthetic))
    root = Path(__file__).parent.parent
    for command in (["add", str(b), "--store", str(store)],
                    ["index", str(synthetic["train"]), "--store", str(store), "--encoder", "fake",
                     "--words", str(synthetic["words"]), "--k", "3", "--text", "bv"]):
        process = subprocess.Popen([sys.executable, "-c", CLI, *command], cwd=root,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        with StoreDir.open(store) as s:  # whatever the moment: a whole store, old or new
            model = StoreModel(s)
            assert model.index.ntotal in (100, 160) and len(model.ids) == model.index.ntotal
        done = subprocess.run([sys.executable, "-c", CLI, *command], cwd=root, capture_output=True, text=True, check=False)
        assert done.returncode == 0, (command[0], done.stderr)
        assert statistics(store).n == 160
        with StoreDir.open(store) as s:
            assert StoreModel(s).index.ntotal == 160
            assert not list(s.indexes_dir.glob(".projected-*"))  # a killed pass's scratch file is gone after the rerun


def test_add_remove_refit_errors_are_one_line(store: Path, synthetic: dict[str, Path], tmp_path: Path) -> None:
    stranger = tmp_path / "stranger.png"
    stranger.write_bytes(b"not really")
    cases = [
        (("add", tmp_path / "missing.jsonl", "--store", store), "missing.jsonl: no such file"),
        (("remove", stranger, "--store", store), f"{stranger.resolve()}: not an image of"),
        (("refit", "--store", tmp_path / "nowhere.annot"), "nowhere.annot"),
    ]
    for args, message in cases:
        result = invoke(*args)
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        assert result.exit_code != 0 and len(lines) == 1, result.stderr
        assert message in " ".join(result.stderr.split()), result.stderr


@pytest.mark.slow
def test_corrections_leave_the_statistics_file_and_their_changes_pending_add_up(store: Path, tmp_path: Path) -> None:
    """A correction writes what it changed (pending), not the statistics; read with the pending changes added in,
    the statistics are those of the indexed images with their tags, through every kind of correction; refit writes
    them whole and clears the pending changes."""
    from annot.indexer.grow import _Open
    from annot.library.collection import annotate_photos
    from annot.library.corrections import Correction, record_corrections
    from test_library import make_photos

    photos = sorted(make_photos(tmp_path / "photos", 6, seed=81))
    annotate_photos(store, [tmp_path / "photos"])
    with StoreDir.open(store) as s:
        written = s.manifest().projection.statistics
    steps = [[Correction(str(photos[0]), "sky", "add"), Correction(str(photos[1]), "sea", "add")],
             [Correction(str(photos[0]), "sky", "reject"), Correction(str(photos[0]), "snow", "add")],
             [Correction(str(photos[1]), "sea", "clear"), Correction(str(photos[2]), "holiday", "add")],
             [Correction(str(photos[0]), "snow", "clear")]]
    for corrections in steps:
        record_corrections(store, corrections)
        with StoreDir.open(store, write=True) as s:
            m = s.manifest()
            assert m.projection.statistics == written and m.projection.pending is not None  # the big file as it was
            state = _Open(s)
            fresh, _ = state.statistics_of(state.ids, state.indexed_labels)
            assert fresh is not None
            for key, value in state.stats.to_arrays().items():
                np.testing.assert_allclose(value, fresh.to_arrays()[key], rtol=1e-9, atol=1e-6, err_msg=key)
    refit(store)
    with StoreDir.open(store, write=True) as s:
        m = s.manifest()
        assert m.projection.pending is None and m.projection.statistics != written
        state = _Open(s)
        fresh, _ = state.statistics_of(state.ids, state.indexed_labels)
        assert fresh is not None
        for key, value in statistics(store).to_arrays().items():
            np.testing.assert_allclose(value, fresh.to_arrays()[key], rtol=1e-9, atol=1e-6, err_msg=key)
