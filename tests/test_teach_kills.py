"""Nothing stored is lost by a SIGKILL while the store is taught: indexing a folder of keyworded photos, a correction
that adds a new word, re-scoring the library, and the review queue. Each is killed at a chosen moment (the process
kills itself there, so the moment is exact), then rerun; the result must equal an uninterrupted run's."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tests.test_hostile import ENV, ROOT, assert_consistent, library_ids
from tests.test_keywords import keyworded_library
from tests.test_teach import beach_photos

import annot
from annot.library.collection import annotate_photos
from annot.store import StoreDir

KILL = """
import os, signal, sys
sys.path.insert(0, "tests")
import conftest
import annot.indexer.grow as grow
import annot.library.collection as collection
import annot.store.directory as directory
moment = sys.argv.pop(1)
calls = {"n": 0}

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

if moment == "at the manifest switch":
    directory.StoreDir.write_manifest = die
elif moment == "while growing the vocabulary":
    grow._Open.commit = die
elif moment == "in the second re-scored chunk":
    write = collection.Library.write
    def write_then_die(self, ids, X, stats=None):
        calls["n"] += 1
        if calls["n"] == 2 and stats is None:
            die()
        return write(self, ids, X, stats)
    collection.Library.write = write_then_die
    collection.CHUNK = 4
elif moment == "while extracting features":
    import annot.features.cache as cache
    real = cache.np.save
    def save_or_die(path, *args, **kwargs):  # the first part's features are written, its ids (its commit) not
        calls["n"] += 1
        if calls["n"] == 2:
            die()
        return real(path, *args, **kwargs)
    cache.np.save = save_or_die
elif moment == "while listing the queue":
    import annot.library.review as review
    review.photo_tags = die
from annot.cli.main import main
sys.argv[0] = "annot"
main()
"""


def killed(moment: str, *args: str | Path) -> None:
    done = subprocess.run([sys.executable, "-c", KILL, moment, *map(str, args)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == -signal.SIGKILL, done.stdout + done.stderr


def run(*args: str | Path) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", KILL, "never", *map(str, args), "--json"], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def same_tags(a: dict[int, list[object]], b: dict[int, list[object]]) -> bool:
    """The same tags and sources on every photo, confidences equal to 1e-5 (a photo scored in another batch may
    differ in the last float digits)."""
    def close(x: object, y: object) -> bool:
        return x == y or (isinstance(x, float) and isinstance(y, float) and abs(x - y) <= 1e-5)

    return a.keys() == b.keys() and all(
        len(a[i]) == len(b[i]) and all(s[0] == t[0] and s[1] == t[1] and close(s[2], t[2])  # type: ignore[index]
                                       for s, t in zip(a[i], b[i], strict=True)) for i in a)


def shown(store: Path) -> dict[int, list[object]]:
    with annot.open_store(store) as api:
        return {i: [(t.tag, t.source, None if t.confidence is None else round(t.confidence, 6)) for t in tags]
                for i, tags in api.photo_tags(library_ids(store)).items()}


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["while growing the vocabulary", "at the manifest switch"])
def test_a_killed_correction_with_a_new_word_finishes_on_rerun(store: Path, tmp_path: Path, moment: str) -> None:
    photos = sorted(p for p, beach in beach_photos(tmp_path / "photos", 12).items() if beach)
    annotate_photos(store, [tmp_path / "photos"])
    reference = tmp_path / "reference.annot"
    shutil.copytree(store, reference)
    batch = tmp_path / "batch.jsonl"
    batch.write_text("".join(json.dumps({"image": str(p), "add": ["Beach"]}) + "\n" for p in photos[:3]))
    run("correct", "--from", batch, "--store", reference)
    killed(moment, "correct", "--from", batch, "--store", store)
    again = run("correct", "--from", batch, "--store", store)
    assert again["recorded"] == 0 and again["unchanged"] == 3  # the killed run's corrections were kept
    for s in (store, reference):
        with StoreDir.open(s) as opened:
            assert opened.manifest().vocabulary.grown == ("beach",)
    run("annotate", "--store", store)
    run("annotate", "--store", reference)
    assert same_tags(shown(store), shown(reference))
    assert_consistent(store)


@pytest.mark.slow
def test_a_killed_rescoring_finishes_on_rerun(store: Path, tmp_path: Path) -> None:
    photos = sorted(p for p, beach in beach_photos(tmp_path / "photos", 24).items() if beach)
    annotate_photos(store, [tmp_path / "photos"])
    run("correct", photos[0], "--add", "beach", "--store", store)
    reference = tmp_path / "reference.annot"
    shutil.copytree(store, reference)
    killed("in the second re-scored chunk", "annotate", "--store", store)
    assert_consistent(store)  # what the killed run wrote is readable and in step
    rerun = run("annotate", "--store", store)
    assert 0 < int(rerun["rescored"]) < 24  # type: ignore[call-overload]  # only what the killed run left
    assert int(run("annotate", "--store", reference)["rescored"]) == 24  # type: ignore[call-overload]
    assert same_tags(shown(store), shown(reference))
    assert run("annotate", "--store", store)["rescored"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["while extracting features", "at the manifest switch"])
def test_a_killed_index_of_a_folder_finishes_on_rerun(tmp_path: Path, synthetic: dict[str, Path], moment: str
                                                       ) -> None:
    keyworded_library(tmp_path / "photos")
    flags = ("--encoder", "fake", "--words", synthetic["words"], "--k", "3")
    reference = run("index", tmp_path / "photos", "--store", tmp_path / "reference.annot", *flags)
    store = tmp_path / "s.annot"
    killed(moment, "index", tmp_path / "photos", "--store", store, *flags)
    report = run("index", tmp_path / "photos", "--store", store, *flags)
    assert report["keywords"] == reference["keywords"] and report["words"] == reference["words"]
    with StoreDir.open(store) as a, StoreDir.open(tmp_path / "reference.annot") as b:
        assert a.manifest().vocabulary == b.manifest().vocabulary
        assert a.manifest().index.ntotal == b.manifest().index.ntotal


@pytest.mark.slow
def test_a_killed_review_changes_nothing(store: Path, tmp_path: Path) -> None:
    beach_photos(tmp_path / "photos", 10)
    annotate_photos(store, [tmp_path / "photos"])
    before = run("review", "--store", store)
    killed("while listing the queue", "review", "--store", store)
    assert run("review", "--store", store) == before
    assert_consistent(store)
