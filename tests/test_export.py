"""annot export: XMP sidecars read back with exiftool (merged into one exiftool wrote), CSV and JSON Lines."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from tests.conftest import invoke
from tests.test_library import make_photos

import annot
from annot.library.collection import annotate_photos


def exiftool(path: Path) -> dict[str, object]:
    out = subprocess.run(["exiftool", "-j", "-G1", "-struct", str(path)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)[0]  # type: ignore[no-any-return]


def as_list(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [] if value is None else [str(value)]


@pytest.fixture()
def library(store: Path, tmp_path: Path) -> dict[Path, list[str]]:
    photos = make_photos(tmp_path / "photos" / "2024" / "june", 4, seed=31)
    photos |= make_photos(tmp_path / "photos" / "2025", 2, seed=32, prefix="q")
    annotate_photos(store, [tmp_path / "photos"])
    return photos


def shown_tags(store: Path, path: Path) -> list[dict[str, object]]:
    with annot.open_store(store) as api:
        return api.photo(api.search(like=path, n=1)[0].image_id).to_dict()["tags"]  # type: ignore[no-any-return]


@pytest.mark.slow
def test_xmp_beside_photos_merges_an_exiftool_sidecar(store: Path, library: dict[Path, list[str]]) -> None:
    first = min(library)
    sidecar = first.with_name(first.name + ".xmp")
    subprocess.run(["exiftool", "-q", "-XMP-dc:Title=Holiday", "-XMP-dc:Subject=family", "-XMP-dc:Subject=beach trip",
                    "-XMP-xmp:Rating=4", "-XMP-lr:HierarchicalSubject=people|family", str(sidecar)], check=True)
    result = invoke("export", "--store", store, "--format", "xmp", "--min-confidence", "0")
    assert result.exit_code == 0, result.output
    assert "6 photos" in result.stdout and "1 existing sidecars merged" in result.stdout
    assert "2 keywords you added recorded as additions" in result.stdout  # the person's keywords teach the store
    for photo in library:
        shown = shown_tags(store, photo)
        tags = [str(t["tag"]) for t in shown]
        ours = [t for t in tags if photo != first or t not in ("family", "beach trip")]
        meta = exiftool(photo.with_name(photo.name + ".xmp"))
        subject = as_list(meta.get("XMP-dc:Subject"))
        assert set(tags) <= set(subject) and set(ours) == set(as_list(meta.get("XMP-annot:Added")))
        assert [f"annot/{t}" for t in ours] == [v for v in as_list(meta.get("XMP-digiKam:TagsList"))
                                                if v.startswith("annot/")]
        assert {f"annot|{t}" for t in ours} <= set(as_list(meta.get("XMP-lr:HierarchicalSubject")))
        confidences = {t["Tag"]: float(t["Confidence"]) for t in meta["XMP-annot:Tags"]}  # type: ignore[attr-defined]
        assert confidences == pytest.approx({str(t["tag"]): float(t["confidence"])  # type: ignore[arg-type]
                                             for t in shown}, abs=1e-4)
    merged = exiftool(sidecar)
    assert merged["XMP-dc:Title"] == "Holiday" and merged["XMP-xmp:Rating"] == 4
    assert {"family", "beach trip"} <= set(as_list(merged["XMP-dc:Subject"]))
    hierarchy = as_list(merged["XMP-lr:HierarchicalSubject"])
    assert "people|family" in hierarchy and "annot|family" not in hierarchy  # the person's keyword stays theirs

    # a rejected tag leaves the sidecar at the next export; the keywords exiftool wrote stay
    rejected = str(shown_tags(store, first)[2]["tag"])
    assert invoke("correct", first, "--reject", rejected, "--store", store).exit_code == 0
    assert invoke("export", "--store", store, "--min-confidence", "0").exit_code == 0
    again = exiftool(sidecar)
    assert rejected not in as_list(again["XMP-dc:Subject"])
    assert {"family", "beach trip"} <= set(as_list(again["XMP-dc:Subject"])) and again["XMP-dc:Title"] == "Holiday"


@pytest.mark.slow
def test_xmp_round_trips_what_the_person_did_in_their_photo_manager(store: Path, library: dict[Path, list[str]]
                                                                    ) -> None:
    """Removed in the photo manager: a rejection, never written again. Added there: an addition (a new word too).
    The default export writes only the tags that reach the calibrated cut; --parent "" writes them flat."""
    from sqlalchemy import select

    from annot.schema import corrections
    from annot.store import StoreDir

    photo = sorted(library)[1]
    sidecar = photo.with_name(photo.name + ".xmp")
    assert invoke("export", "--store", store, "--min-confidence", "0").exit_code == 0
    word = as_list(exiftool(sidecar)["XMP-annot:Added"])[0]
    subprocess.run(["exiftool", "-q", "-overwrite_original", f"-XMP-dc:Subject-={word}",  # as digiKam removes one
                    f"-XMP-digiKam:TagsList-=annot/{word}", f"-XMP-lr:HierarchicalSubject-=annot|{word}",
                    "-XMP-dc:Subject+=Grandma", "-XMP-lr:HierarchicalSubject+=Family|Grandma",
                    "-XMP-digiKam:TagsList+=Family/Grandma", str(sidecar)], check=True)
    result = invoke("export", "--store", store, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["from_sidecars"] == {"rejected": 1, "added": 1}
    with StoreDir.open(store) as s, s.db.connect() as conn:
        recorded = conn.execute(select(corrections.c.action, corrections.c.source)).all()
    assert sorted(recorded) == [("add", "xmp"), ("reject", "xmp")]
    shown = {str(t["tag"]): t for t in shown_tags(store, photo)}
    assert word not in shown and shown["grandma"]["source"] == "added"
    meta = exiftool(sidecar)
    assert word not in as_list(meta["XMP-dc:Subject"]) and "Grandma" in as_list(meta["XMP-dc:Subject"])
    assert "Family|Grandma" in as_list(meta["XMP-lr:HierarchicalSubject"])
    with annot.open_store(store) as api:  # the default cut: every written predicted tag reaches it
        model = api.model()
        cut = model.confidence_cut(model.settings.scoring.replace(min_confidence="auto"))
    assert cut is not None
    for tag in meta["XMP-annot:Tags"]:  # type: ignore[attr-defined]
        assert tag["Source"] != "predicted" or float(tag["Confidence"]) >= cut
    again = invoke("export", "--store", store, "--json")
    assert json.loads(again.stdout)["from_sidecars"] == {"rejected": 0, "added": 0}  # nothing new: nothing recorded
    assert word not in as_list(exiftool(sidecar)["XMP-dc:Subject"])
    flat = invoke("export", "--store", store, "--parent", "", "--min-confidence", "0")
    assert flat.exit_code == 0
    tree = as_list(exiftool(sidecar)["XMP-digiKam:TagsList"])
    assert not any(v.startswith("annot/") for v in tree) and "Family/Grandma" in tree


def test_xmp_under_out_mirrors_folders_with_either_name(store: Path, library: dict[Path, list[str]],
                                                        tmp_path: Path) -> None:
    out = tmp_path / "sidecars"
    assert invoke("export", "--store", store, "--out", out, "--naming", "stem").exit_code == 0
    root = tmp_path / "photos"
    expected = {(p.parent.relative_to(root.resolve()) / (p.stem + ".xmp")).as_posix() for p in library}
    assert {p.relative_to(out).as_posix() for p in out.rglob("*.xmp")} == expected
    assert not any(p.with_suffix(".xmp").exists() for p in library)  # nothing beside the photos


@pytest.mark.slow
def test_min_confidence_cuts_predicted_tags_only(store: Path, library: dict[Path, list[str]], tmp_path: Path) -> None:
    api = annot.open_store(store)
    full = io.StringIO()
    api.export("jsonl", stream=full)
    everything = [json.loads(line) for line in full.getvalue().splitlines()]
    assert len(everything) == len(library) and all(len(r["tags"]) == 5 for r in everything)
    photo = sorted(library)[1]
    weakest = min(shown_tags(store, photo), key=lambda t: float(t["confidence"]))  # type: ignore[arg-type]
    api.correct([annot.Correction(str(photo), str(weakest["tag"]), "confirm")])
    cut = io.StringIO()
    api.export("csv", stream=cut, min_confidence=0.5)
    rows = list(csv.DictReader(io.StringIO(cut.getvalue())))
    assert rows and all(float(r["confidence"]) >= 0.5 or r["source"] != "predicted" for r in rows)
    assert any(r["image"] == str(photo) and r["tag"] == weakest["tag"] and r["source"] == "confirmed" for r in rows)
    assert len(rows) < sum(len(r["tags"]) for r in everything)


def test_export_errors_are_one_line(store: Path, library: dict[Path, list[str]], tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = invoke("export", "--store", store, "--out", blocker / "sidecars")
    assert result.exit_code == 1 and "cannot write there" in result.stderr and "Traceback" not in result.output
    broken = min(library).with_name(min(library).name + ".xmp")
    broken.write_text("<x:xmpmeta this is not xml")
    bad = invoke("export", "--store", store)
    assert bad.exit_code == 1 and "not an XMP sidecar annot can merge" in bad.stderr
    assert broken.read_text() == "<x:xmpmeta this is not xml"  # left as it was
    fmt = invoke("export", "--store", store, "--format", "pdf")
    assert fmt.exit_code == 2 and "--format must be one of" in fmt.stderr
    assert shutil.which("exiftool")


@pytest.mark.slow
def test_a_sidecar_another_program_writes_during_export_is_left_as_it_wrote_it(
        store: Path, library: dict[Path, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    """exiftool writes a sidecar after the export read it and before it is replaced: the export leaves that one as
    exiftool wrote it (named, exit 1), writes the others, and the next export merges it, the person's keyword kept."""
    from annot.library import export as exporting

    first = min(library)
    sidecar = first.with_name(first.name + ".xmp")
    subprocess.run(["exiftool", "-q", "-XMP-dc:Subject=family", str(sidecar)], check=True)
    merged_xmp = exporting.merged_xmp

    def meanwhile(existing: bytes | None, *args: object, **kwargs: object) -> bytes:
        payload = merged_xmp(existing, *args, **kwargs)  # type: ignore[arg-type]
        if existing is not None and b"family" in existing and b"holiday" not in existing:
            subprocess.run(["exiftool", "-q", "-overwrite_original", "-XMP-dc:Subject+=holiday", str(sidecar)],
                           check=True)
        return payload

    monkeypatch.setattr(exporting, "merged_xmp", meanwhile)
    result = invoke("export", "--store", store, "--min-confidence", "0")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{sidecar}: changed by another program while annot exported" in result.stderr
    assert as_list(exiftool(sidecar)["XMP-dc:Subject"]) == ["family", "holiday"]  # as exiftool left it
    assert all(p.with_name(p.name + ".xmp").is_file() for p in library)  # the others written
    assert not list(sidecar.parent.glob(".*.tmp"))
    monkeypatch.setattr(exporting, "merged_xmp", merged_xmp)
    again = invoke("export", "--store", store, "--min-confidence", "0")
    assert again.exit_code == 0, again.output
    subject = as_list(exiftool(sidecar)["XMP-dc:Subject"])
    assert {"family", "holiday"} <= set(subject) and len(subject) > 2
