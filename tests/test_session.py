"""Corrections by a writer kept open between them (the server's review loop): written and answered at once,
published whole a moment after the last, nothing answered lost to a SIGKILL, other writers served in turn."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import annot
from annot.library.corrections import Correction, record_corrections
from annot.library.session import CorrectionSession
from annot.model import StoreModel
from annot.store import StoreBusy, StoreDir
from test_writes import ROOT, contents, tag_id, training_image


def indexed_tags(store: Path, image: int) -> set[str]:
    """The tags the training index holds for an image (what votes for its neighbours)."""
    with StoreDir.open(store) as s:
        model = StoreModel(s)
        try:
            row = int(np.flatnonzero(np.asarray(model.ids) == image)[0])
            return {model.vocabulary[j] for j in np.flatnonzero(model.labels[row])}
        finally:
            model.close()


def recorded(store: Path, image: int) -> list[tuple[int, str]]:
    """An image's corrections as published, in the order they were made."""
    rows = sorted(contents(store)["corrections"], key=lambda r: int(r[0]))  # type: ignore[call-overload]
    return [(int(r[2]), str(r[3])) for r in rows if r[1] == image]  # type: ignore[call-overload]


def test_a_burst_is_written_at_once_and_published_whole(store: Path) -> None:
    image = training_image(store)
    before = contents(store)
    session = CorrectionSession(store, linger=600, longest=600)  # published when asked only
    try:
        first = session.correct([Correction(image, "sky", "add")])
        second = session.correct([Correction(image, "sun", "reject"), Correction(image, "sky", "add")])
        assert (first.recorded, second.recorded, second.unchanged) == (1, 1, 1)
        shown = {t.tag for t in session.shown()[image]}
        assert "sky" in shown and "sun" not in shown  # the session's own answers show them at once
        assert contents(store) == before  # other readers: nothing yet, not half of it
        assert session.pending() and session.published == 0
        session.flush()
        assert not session.pending() and session.published == 1 and not session.shown()
    finally:
        session.close()
    assert recorded(store, image) == [(tag_id(store, "sky"), "add"), (tag_id(store, "sun"), "reject")]
    tags = indexed_tags(store, image)
    assert "sky" in tags and "sun" not in tags  # the training index followed
    with StoreDir.open(store, write=True):  # the lock was released
        pass


def test_a_burst_is_published_a_moment_after_its_last_correction(store: Path) -> None:
    image = training_image(store)
    session = CorrectionSession(store, linger=0.2, longest=5.0)
    try:
        session.correct([Correction(image, "sea", "add")])
        assert session.wait_published(1, timeout=60)
        assert recorded(store, image) == [(tag_id(store, "sea"), "add")]
    finally:
        session.close()


@pytest.mark.slow
def test_another_writer_gets_its_turn_when_the_burst_ends(store: Path) -> None:
    image, other = training_image(store), training_image(store, 1)
    session = CorrectionSession(store, linger=0.3, longest=1.0)
    try:
        session.correct([Correction(image, "sky", "add")])
        report = record_corrections(store, [Correction(other, "sky", "add")])  # it would not wait: but for a burst
        assert report.recorded == 1 and session.published == 1
    finally:
        session.close()
    assert recorded(store, image) == recorded(store, other) == [(tag_id(store, "sky"), "add")]
    with StoreDir.open(store, write=True), pytest.raises(StoreBusy, match="by process"):  # a whole run: at once
        record_corrections(store, [Correction(other, "sun", "add")])


def test_bad_corrections_write_nothing_and_keep_the_session_going(store: Path) -> None:
    image = training_image(store)
    session = CorrectionSession(store, linger=600, longest=600)
    try:
        with pytest.raises(annot.NotFound):
            session.correct([Correction(image, "sky", "add"), Correction(99999999, "sky", "add")])
        with pytest.raises(annot.AnnotError, match="not a word"):
            session.correct([Correction(image, "sky", "add"), Correction(image, "no such word", "reject")])
        assert session.correct([Correction(image, "tree", "add")]).recorded == 1
    finally:
        session.close()
    refused = CorrectionSession(store, linger=0.1, longest=600)
    try:  # a burst that only refused: published (nothing) and the lock released a moment later
        with pytest.raises(annot.NotFound):
            refused.correct([Correction(99999999, "sky", "add")])
        assert refused.wait_published(1, timeout=60)
        with StoreDir.open(store, write=True):
            pass
    finally:
        refused.close()
    assert recorded(store, image) == [(tag_id(store, "tree"), "add")]


KILLED = """
import sys
from annot.library.corrections import Correction
from annot.library.session import CorrectionSession
session = CorrectionSession(sys.argv[1], linger=600, longest=600)
session.correct([Correction(int(sys.argv[2]), "sky", "add"), Correction(int(sys.argv[2]), "sun", "reject")])
print("answered", flush=True)
sys.stdin.read()
"""


@pytest.mark.slow
def test_a_killed_session_loses_nothing_it_answered(store: Path) -> None:
    image = training_image(store)
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(store), str(image)], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "answered", proc.stderr.read() if proc.stderr else ""
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert recorded(store, image) == []  # committed in the working segment, not published
    with annot.Store(store) as api:  # as the server starts: what the killed one left is published and in step
        api.keep_corrections_open()
        assert not api.corrections_session.pending()  # type: ignore[union-attr]
    assert recorded(store, image) == [(tag_id(store, "sky"), "add"), (tag_id(store, "sun"), "reject")]
    tags = indexed_tags(store, image)
    assert "sky" in tags and "sun" not in tags


def test_a_store_shows_its_open_corrections_at_once(store: Path) -> None:
    image = training_image(store)
    with annot.Store(store) as api:
        api.keep_corrections_open(linger=600, longest=600)
        before = {t.tag for t in api.photo(image).tags}
        rejected = min(before - {"sky"})
        api.correct([Correction(image, "sky", "add"), Correction(image, rejected, "reject")])
        now = {t.tag for t in api.photo(image).tags}
        assert now == {t.tag for t in api.photo_tags([image])[image]} == (before | {"sky"}) - {rejected}
        published = api.corrections_session.published  # type: ignore[union-attr]
        api.publish_corrections()
        assert api.corrections_session.published == published + 1  # type: ignore[union-attr]
        api.load()
        assert {t.tag for t in api.photo(image).tags} == now  # the same, now from the published store


@pytest.mark.slow
def test_writes_of_many_threads_are_each_recorded_once(store: Path) -> None:
    ids = [training_image(store, n) for n in range(4)]
    session = CorrectionSession(store, linger=0.05, longest=0.2)  # bursts published while others write
    errors: list[BaseException] = []

    def write(image: int) -> None:
        try:
            for n, word in enumerate(["sky", "sun", "sea", "tree"]):
                session.correct([Correction(image, word, "add" if n % 2 == 0 else "reject")])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    session.close()
    assert not errors
    words = [tag_id(store, w) for w in ["sky", "sun", "sea", "tree"]]
    for image in ids:
        assert recorded(store, image) == list(zip(words, ["add", "reject", "add", "reject"], strict=True))


def test_a_server_started_beside_a_writer_leaves_the_catching_up_to_it(store: Path) -> None:
    image = training_image(store)
    api = annot.Store(store)
    try:
        with StoreDir.open(store, write=True):  # a whole run (annot index) holds the store as the server starts
            api.keep_corrections_open(linger=600, longest=600)
            session = api.corrections_session
            assert session is not None and not session.pending() and session.published == 0
        assert api.correct([Correction(image, "sky", "add")]).recorded == 1  # once it ended, corrections go on
    finally:
        api.close()
    assert recorded(store, image) == [(tag_id(store, "sky"), "add")]
