"""Keywords a person already gave their photos (#32): read from sidecars, embedded XMP and IPTC as exiftool writes
them the way Lightroom, digiKam and darktable do; hostile sidecars; `annot index FOLDER` learning those keywords."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from tests.conftest import invoke
from tests.test_library import make_photos

from annot.indexer import keywords as keywords_module
from annot.indexer.keywords import photo_folder_corpus, read_keywords
from annot.schema import images
from annot.store import StoreDir


def exiftool(*args: str | Path) -> None:
    subprocess.run(["exiftool", "-q", "-overwrite_original", *map(str, args)], check=True, capture_output=True)


def sidecar_of(photo: Path, name: str, *tags: str) -> Path:
    """A sidecar exiftool writes for ``photo`` under ``name``, with the given tag assignments."""
    target = photo.parent / name
    subprocess.run(["exiftool", "-q", "-o", str(target), *tags, str(photo)], check=True, capture_output=True)
    return target


@pytest.mark.slow
def test_keywords_from_every_place_photo_managers_write_them(tmp_path: Path) -> None:
    photos = sorted(make_photos(tmp_path / "lib", 5, seed=31))
    lightroom, digikam, embedded, iptc, ours = photos
    sidecar_of(lightroom, lightroom.stem + ".xmp", "-XMP-dc:Subject=Dog", "-XMP-dc:Subject=Grandma",
               "-XMP-lr:HierarchicalSubject=Animals|Dog", "-XMP-lr:HierarchicalSubject=People|Family|Grandma")
    sidecar_of(digikam, digikam.name + ".xmp", "-XMP-digiKam:TagsList=Places/Beach", "-XMP-dc:Subject=Beach")
    exiftool("-XMP-dc:Subject=Sunset", "-XMP-dc:Subject=Café", embedded)
    exiftool("-IPTC:CodedCharacterSet=UTF8", "-IPTC:Keywords=Æble", "-IPTC:Keywords=Tree", iptc)
    sidecar_of(ours, ours.name + ".xmp", "-XMP-dc:Subject=Mine", "-XMP-lr:HierarchicalSubject=annot|sky")
    root = (tmp_path / "lib").resolve()
    assert read_keywords(lightroom, root).keywords == ("Dog", "Grandma")
    assert read_keywords(lightroom, root, hierarchy="path").keywords == (
        "Dog", "Grandma", "Animals/Dog", "People/Family/Grandma")
    found = read_keywords(digikam, root)
    assert found.keywords == ("Beach",) and found.sources == ("sidecar",)
    assert read_keywords(embedded, root).keywords == ("Sunset", "Café")
    assert read_keywords(embedded, root).sources == ("embedded-xmp",)
    assert read_keywords(iptc, root).keywords == ("Æble", "Tree") and read_keywords(iptc, root).sources == ("iptc",)
    assert read_keywords(ours, root).keywords == ("Mine",)  # annot's own keyword tree is never read back


BAD_SIDECARS = {
    "malformed": (b"<x:xmpmeta this is not xml", "not XMP"),
    "not UTF-8": ('<?xml version="1.0" encoding="utf-8"?><x:xmpmeta xmlns:x="adobe:ns:meta/">caf\xe9</x:xmpmeta>'
                  .encode("latin-1"), "not XMP"),
    "an external entity": ((b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                           b'<x:xmpmeta xmlns:x="adobe:ns:meta/">&e;</x:xmpmeta>'), "DTD"),
    "billion laughs": ((b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;'
                       b'&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><x:xmpmeta '
                       b'xmlns:x="adobe:ns:meta/">&c;</x:xmpmeta>'), "DTD"),
}


@pytest.mark.parametrize("kind", sorted(BAD_SIDECARS))
def test_a_bad_sidecar_is_named_and_the_photo_read_without_it(tmp_path: Path, kind: str) -> None:
    photo = min(make_photos(tmp_path / "lib", 1, seed=32))
    exiftool("-IPTC:Keywords=Tree", photo)
    data, why = BAD_SIDECARS[kind]
    (photo.parent / (photo.name + ".xmp")).write_bytes(data)
    found = read_keywords(photo, (tmp_path / "lib").resolve())
    assert found.keywords == ("Tree",)  # the photo's other keywords are still read
    assert len(found.problems) == 1 and found.problems[0][0].name == photo.name + ".xmp"
    assert why in found.problems[0][1] and "root:" not in found.problems[0][1]


def test_huge_and_outside_sidecars_are_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    photos = sorted(make_photos(tmp_path / "lib", 2, seed=33))
    outside = tmp_path / "secret.xmp"
    sidecar_of(photos[0], "../secret.xmp", "-XMP-dc:Subject=Secret")
    os.symlink(outside, photos[0].with_suffix(".xmp"))
    sidecar_of(photos[1], photos[1].name + ".xmp", "-XMP-dc:Subject=Big")
    monkeypatch.setattr(keywords_module, "MAX_SIDECAR_BYTES", 100)
    root = (tmp_path / "lib").resolve()
    linked, big = read_keywords(photos[0], root), read_keywords(photos[1], root)
    assert linked.keywords == () and "outside the library" in linked.problems[0][1]
    assert big.keywords == () and "over the 100" in big.problems[0][1]


def keyworded_library(folder: Path) -> dict[Path, list[str]]:
    """Painted photos in nested folders with odd names; two thirds keyworded (as the painting shows) in sidecars,
    embedded XMP or IPTC, a third without keywords."""
    made = {**make_photos(folder / "2023" / "trip [one]", 12, seed=34),
            **make_photos(folder / "2024" / "Émile's", 12, seed=35, prefix="q")}
    for n, (photo, tags) in enumerate(sorted(made.items())):
        if n % 3 == 0:
            sidecar_of(photo, photo.name + ".xmp", *[f"-XMP-digiKam:TagsList=Scene/{t}" for t in tags])
        elif n % 3 == 1:
            exiftool(*[f"-IPTC:Keywords={t}" for t in tags], photo)
    return made


@pytest.mark.slow
def test_index_learns_the_keywords_of_a_folder(tmp_path: Path, synthetic: dict[str, Path]) -> None:
    made = keyworded_library(tmp_path / "photos")
    keyworded = {p: t for n, (p, t) in enumerate(sorted(made.items())) if n % 3 != 2}
    store = tmp_path / "s.annot"
    result = invoke("index", tmp_path / "photos", "--store", store, "--encoder", "fake", "--words",
                    synthetic["words"], "--k", "3", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["keywords"]["photos"] == 24 and report["keywords"]["with_keywords"] == 16
    assert report["keywords"]["by_source"] == {"sidecar": 8, "iptc": 8}
    with StoreDir.open(store) as s:
        vocabulary = s.manifest().vocabulary.words
        with s.db.connect() as conn:
            paths = {r.path for r in conn.execute(images.select())}
    assert set(vocabulary) == {t for tags in keyworded.values() for t in tags}
    assert paths == {str(p) for p in keyworded}  # the photos without keywords are the library, not training
    rare = invoke("index", tmp_path / "photos", "--store", tmp_path / "r.annot", "--encoder", "fake", "--words",
                  synthetic["words"], "--k", "3", "--min-photos", "5", "--json")
    counts = {w: sum(w in t for t in keyworded.values()) for w in vocabulary}
    assert rare.exit_code == 0, rare.output
    assert json.loads(rare.stdout)["words_left_out"] == {w: n for w, n in counts.items() if n < 5}


def test_a_folder_without_keywords_is_one_line(tmp_path: Path) -> None:
    make_photos(tmp_path / "photos", 3, seed=36)
    result = invoke("index", tmp_path / "photos", "--store", tmp_path / "s.annot", "--encoder", "fake")
    assert result.exit_code == 1 and "none of the 3 photos has keywords" in result.stderr
    assert not (tmp_path / "s.annot" / "manifest.json").exists()


@pytest.mark.slow
def test_photo_folder_corpus_counts_sources(tmp_path: Path) -> None:
    made = keyworded_library(tmp_path / "photos")
    corpus, summary = photo_folder_corpus([tmp_path / "photos"])
    assert summary.photos == len(made) and summary.with_keywords == len(corpus.entries) == 16
    assert all(e.tags == tuple(sorted(made[e.path], key=made[e.path].index)) for e in corpus.entries)


@pytest.mark.slow
def test_add_takes_a_folder_of_newly_keyworded_photos(tmp_path: Path, synthetic: dict[str, Path]) -> None:
    made = keyworded_library(tmp_path / "photos")
    store = tmp_path / "s.annot"
    first = invoke("index", tmp_path / "photos", "--store", store, "--encoder", "fake", "--words", synthetic["words"],
                   "--k", "3")
    assert first.exit_code == 0, first.output
    untagged = [p for n, p in enumerate(sorted(made)) if n % 3 == 2]
    for photo in untagged[:2]:  # keyworded since, with words the store knows
        sidecar_of(photo, photo.name + ".xmp", *[f"-XMP-dc:Subject={t}" for t in made[photo]])
    sidecar_of(untagged[2], untagged[2].name + ".xmp", "-XMP-dc:Subject=Zebra")  # a word it does not know
    added = invoke("add", tmp_path / "photos", "--store", store, "--json")
    assert added.exit_code == 0, added.output
    report = json.loads(added.stdout)
    assert report["added"] == 2 and report["keywords"]["with_keywords"] == 18
    assert report["tags_outside_vocabulary"] == {"zebra": 1} and report["indexed"] == 18
    shown = invoke("add", tmp_path / "photos", "--store", store)
    assert shown.exit_code == 0 and "zebra (1)" in shown.stderr and "added 0 images" in shown.stdout
