"""Exporting the library's tags (``annot export``): XMP sidecars a photo manager reads, CSV or JSON Lines.

An XMP sidecar holds the tags in the fields photo managers read keywords from: ``dc:subject`` (an ``rdf:Bag``; every
manager), ``lr:hierarchicalSubject`` (Lightroom) and ``digiKam:TagsList`` (digiKam) under annot's parent keyword
(``annot|beach``, ``annot/beach``: a person removes them all by removing the parent; ``parent=""`` writes them flat),
and each tag's confidence in annot's own namespace (``annot:Tags``, a bag of ``annot:Tag`` / ``annot:Confidence`` /
``annot:Source``); ``annot:Added`` records which keywords annot wrote. A sidecar that exists is merged, never
overwritten: its other fields stay, and so do keywords someone else wrote (a tag the person already has as their own
keyword is not written again under annot's parent); the keywords an earlier export of annot wrote are replaced by
this one's. What the person changed since is read back first (:mod:`annot.library.sync`). Sidecars go beside each
photo, or under ``out`` mirroring the photos' folders, named ``photo.jpg.xmp`` (``full``, as digiKam and darktable
name them) or ``photo.xmp`` (``stem``, as Lightroom does). Only tags at or above a confidence cut are written; a
confirmed or added tag always is.

The person's files stay theirs: a write-protected sidecar (no write permission, or in a folder annot may not write
to) is left alone and reported; a rewritten one keeps its permissions; a sidecar over :data:`MAX_SIDECAR_BYTES`, one
that is not a regular file, or one that is not XMP is left as it is and reported (the export goes on with the other
photos, and the command exits non-zero). Sidecars are parsed with ``defusedxml`` (no DTD, no entities: nothing
outside the file is read and nothing expands). Temporary files a killed export left beside sidecars are removed by
the next export that writes into that folder.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from sqlalchemy import ColumnElement, func, select

from annot.errors import AnnotError
from annot.indexer.corpus import normalize_tag
from annot.indexer.keywords import parse_xmp
from annot.inputs import file_kind
from annot.library.photoview import PhotoTag
from annot.library.view import photo_tags
from annot.model import StoreModel
from annot.schema import images, photo_files
from annot.settings import SettingsError
from annot.store import TEMPORARY, ChangedMeanwhile, atomic_write

FORMATS = ("xmp", "csv", "jsonl")
PARENT = "annot"  # the keyword annot's hierarchical keywords go under (annot|beach), so a person can remove them all
MAX_SIDECAR_BYTES = 16 << 20  # an XMP sidecar over 16 MiB is not merged (real ones hold kilobytes)
NAMINGS = ("full", "stem")
NS = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "lr": "http://ns.adobe.com/lightroom/1.0/",
    "digiKam": "http://www.digikam.org/ns/1.0/",
    "annot": "https://ns.annot.dev/xmp/1.0/",
}
KNOWN = {  # namespaces a sidecar from another tool may hold: their usual prefixes survive a merge
    "xmp": "http://ns.adobe.com/xap/1.0/", "xmpMM": "http://ns.adobe.com/xap/1.0/mm/",
    "xmpRights": "http://ns.adobe.com/xap/1.0/rights/", "stEvt": "http://ns.adobe.com/xap/1.0/sType/ResourceEvent#",
    "stRef": "http://ns.adobe.com/xap/1.0/sType/ResourceRef#", "stDim": "http://ns.adobe.com/xap/1.0/sType/Dimensions#",
    "stArea": "http://ns.adobe.com/xmp/sType/Area#", "exif": "http://ns.adobe.com/exif/1.0/",
    "exifEX": "http://cipa.jp/exif/1.0/", "tiff": "http://ns.adobe.com/tiff/1.0/",
    "photoshop": "http://ns.adobe.com/photoshop/1.0/", "crs": "http://ns.adobe.com/camera-raw-settings/1.0/",
    "Iptc4xmpCore": "http://iptc.org/std/Iptc4xmpCore/1.0/xmlns/",
    "Iptc4xmpExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
    "mwg-rs": "http://www.metadataworkinggroup.com/schemas/regions/", "darktable": "http://darktable.sf.net/",
    "xmpDM": "http://ns.adobe.com/xmp/1.0/DynamicMedia/", "aux": "http://ns.adobe.com/exif/1.0/aux/",
}
for _prefix, _uri in {**KNOWN, **NS}.items():
    ET.register_namespace(_prefix, _uri)


def q(prefix: str, name: str) -> str:
    return f"{{{NS[prefix]}}}{name}"


@dataclass
class ExportReport:
    photos: int
    tags: int
    written: list[str]
    merged: int  # sidecars that existed and were merged
    protected: list[str] = field(default_factory=list)  # write-protected sidecars, left alone
    failed: dict[str, str] = field(default_factory=dict)  # sidecars that could not be merged, and why
    synced: dict[str, int] = field(default_factory=dict)  # corrections read back from the sidecars (library.sync)

    def to_dict(self) -> dict[str, object]:
        return {"photos": self.photos, "tags": self.tags, "files": len(self.written), "merged": self.merged,
                "protected": self.protected, "failed": self.failed, "from_sidecars": self.synced}


def exported_tags(model: StoreModel, min_confidence: float | None, training: bool = False,
                  ) -> Iterator[tuple[str, list[PhotoTag]]]:
    """Each present library photo (and with ``training`` each training image) with the tags that pass the cut."""
    with model.store.db.connect() as conn:
        if model.store.db.has_table("photo_files"):  # a duplicate is exported with the tags of the photo it repeats
            query = (select(func.coalesce(photo_files.c.same_as, images.c.id), images.c.path)
                     .select_from(images.outerjoin(photo_files, photo_files.c.image_id == images.c.id)))
            library: ColumnElement[bool] = photo_files.c.state.in_(("annotated", "duplicate"))
        else:
            query, library = select(images.c.id, images.c.path), images.c.split == "none"
        query = query.order_by(images.c.path)
        rows = conn.execute(query.where(library | (images.c.split == "train") if training else library)).all()
    for lo in range(0, len(rows), 2000):
        part = rows[lo : lo + 2000]
        shown = photo_tags(model.store, [i for i, _ in part])
        for image_id, path in part:
            kept = [t for t in shown.get(int(image_id), [])
                    if t.source != "predicted" or min_confidence is None
                    or (t.confidence is not None and t.confidence >= min_confidence)]
            yield path, kept


def sidecar_path(photo: Path, naming: str, out: Path | None, root: Path | None) -> Path:
    name = photo.name + ".xmp" if naming == "full" else photo.stem + ".xmp"
    if out is None:
        return photo.with_name(name)
    relative = photo.parent.relative_to(root) if root is not None else Path()
    return out / relative / name


def _bag(parent: ET.Element, prefix: str, name: str, values: Sequence[str], kind: str = "Bag") -> None:
    holder = ET.SubElement(parent, q(prefix, name))
    container = ET.SubElement(holder, q("rdf", kind))
    for value in values:
        ET.SubElement(container, q("rdf", "li")).text = value


def _values(description: ET.Element, prefix: str, name: str) -> list[str]:
    found = description.find(q(prefix, name))
    if found is None:
        return []
    return [li.text or "" for li in found.iter(q("rdf", "li"))]


def _annots(value: str, separator: str, parent: str, ours: set[str]) -> bool:
    """Whether a keyword is one an earlier export of annot wrote: one it listed, or under its parent keyword (this
    export's, or the one an earlier export used for a keyword it listed)."""
    parts = [p.strip() for p in value.split(separator)]
    return value in ours or bool(parent) and parts[0] == parent or len(parts) == 2 and parts[1] in ours


def merged_xmp(existing: bytes | None, tags: Sequence[PhotoTag], parent: str = PARENT) -> bytes:
    """The sidecar with ``tags``: a new one, or ``existing`` with its keywords merged and everything else kept.
    annot's hierarchical keywords go under ``parent`` (``annot|beach``, ``annot/beach``; none when empty)."""
    if existing:
        root = parse_xmp(existing, "an XMP sidecar annot can merge")
        if root.tag == q("rdf", "RDF"):  # a bare RDF packet: wrap it
            meta = ET.Element(q("x", "xmpmeta"))
            meta.append(root)
            root = meta
        rdf = root.find(q("rdf", "RDF"))
        if rdf is None:
            raise ValueError("not an XMP sidecar annot can merge (no rdf:RDF)")
    else:
        root = ET.Element(q("x", "xmpmeta"))
        rdf = ET.SubElement(root, q("rdf", "RDF"))
    descriptions = rdf.findall(q("rdf", "Description"))
    if not descriptions:
        descriptions = [ET.SubElement(rdf, q("rdf", "Description"), {q("rdf", "about"): ""})]
    ours = {tag for d in descriptions for tag in _values(d, "annot", "Added")}  # what an earlier export added
    keywords: dict[str, list[str]] = {"subject": [], "hierarchicalSubject": [], "TagsList": []}
    for d in descriptions:
        for prefix, name, separator in (("dc", "subject", ""), ("lr", "hierarchicalSubject", "|"),
                                        ("digiKam", "TagsList", "/")):
            keywords[name] += [v for v in _values(d, prefix, name)
                               if not (_annots(v, separator, parent, ours) if separator else v in ours)]
            for old in d.findall(q(prefix, name)):
                d.remove(old)
        for old in [*d.findall(q("annot", "Tags")), *d.findall(q("annot", "Added"))]:
            d.remove(old)
    target = descriptions[0]
    for d in descriptions[1:]:  # a description that held only keywords is left empty: it goes
        if not len(d) and set(d.attrib) <= {q("rdf", "about")}:
            rdf.remove(d)
    theirs = {normalize_tag(k) for k in keywords["subject"]}
    names = [t.tag for t in tags if t.tag not in theirs]  # a keyword the person has already stays theirs alone
    for prefix, name, kind, separator in (("dc", "subject", "Bag", ""), ("lr", "hierarchicalSubject", "Bag", "|"),
                                          ("digiKam", "TagsList", "Seq", "/")):
        mine = [f"{parent}{separator}{n}" if separator and parent else n for n in names]
        values = list(dict.fromkeys([*keywords[name], *mine]))
        if values:
            _bag(target, prefix, name, values, kind)
    if names:
        _bag(target, "annot", "Added", names)
    if tags:
        holder = ET.SubElement(target, q("annot", "Tags"))
        bag = ET.SubElement(holder, q("rdf", "Bag"))
        for t in tags:
            item = ET.SubElement(bag, q("rdf", "li"), {q("rdf", "parseType"): "Resource"})
            ET.SubElement(item, q("annot", "Tag")).text = t.tag
            if t.confidence is not None:
                ET.SubElement(item, q("annot", "Confidence")).text = f"{t.confidence:.4f}"
            ET.SubElement(item, q("annot", "Source")).text = t.source
    ET.indent(root, space=" ")
    body = ET.tostring(root, encoding="unicode")
    return ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n' + body + '\n<?xpacket end="w"?>\n').encode()


def export(model: StoreModel, fmt: str, *, out: Path | None = None, naming: str = "full",
           min_confidence: float | None = None, training: bool = False, stream: IO[str] | None = None,
           parent: str = PARENT) -> ExportReport:
    """Write the library's tags as ``fmt``: XMP sidecars (beside the photos, or under ``out``), or one CSV or
    JSON Lines file (``out``, else ``stream``)."""
    if fmt not in FORMATS:
        raise SettingsError("export.format", f"must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if naming not in NAMINGS:
        raise SettingsError("export.naming", f"must be one of {', '.join(NAMINGS)}, got {naming!r}")
    photos = list(exported_tags(model, min_confidence, training))
    n_tags = sum(len(t) for _, t in photos)
    if fmt != "xmp":
        buffer = io.StringIO()
        if fmt == "csv":
            writer = csv.writer(buffer)
            writer.writerow(["image", "tag", "confidence", "source"])
            writer.writerows([path, t.tag, "" if t.confidence is None else f"{t.confidence:.4f}", t.source]
                             for path, found in photos for t in found)
        else:
            buffer.writelines(json.dumps({"image": path, "tags": [t.to_dict() for t in found]}) + "\n"
                              for path, found in photos)
        if out is None:
            (stream or io.StringIO()).write(buffer.getvalue())
            return ExportReport(len(photos), n_tags, [], 0)
        _write(out, buffer.getvalue().encode())
        return ExportReport(len(photos), n_tags, [str(out)], 0)
    root = Path(os.path.commonpath([str(Path(p).parent) for p, _ in photos])) if photos and out is not None else None
    report = ExportReport(len(photos), n_tags, [], 0)
    cleaned: set[Path] = set()
    for path, found in photos:
        target = sidecar_path(Path(path), naming, out, root)
        if target.parent not in cleaned:
            cleaned.add(target.parent)
            remove_temporaries(target.parent)
        _export_sidecar(target, found, report, parent)
    return report


def _export_sidecar(target: Path, tags: Sequence[PhotoTag], report: ExportReport, parent: str) -> None:
    """Write or merge one sidecar; a protected or unusable one is recorded in ``report`` and left as it is."""
    try:
        status = target.stat()
    except (FileNotFoundError, NotADirectoryError):  # a new sidecar (its folder may not be writable: said below)
        status = None
    except OSError as exc:
        report.failed[str(target)] = f"cannot read the sidecar ({exc.strerror or exc})"
        return
    if status is not None:
        why = _unmergeable(status)
        if why is not None:
            report.failed[str(target)] = why
            return
    if protected(target, status):
        report.protected.append(str(target))
        return
    existing = None
    if status is not None:
        try:
            existing = target.read_bytes()
        except OSError as exc:
            report.failed[str(target)] = f"cannot read the sidecar ({exc.strerror or exc})"
            return
    try:
        payload = merged_xmp(existing, tags, parent)
    except ValueError as exc:
        report.failed[str(target)] = str(exc)
        return
    try:
        _write(target, payload, None if status is None else stat.S_IMODE(status.st_mode),
               unchanged=lambda: _same(target, status, existing))
    except ChangedMeanwhile:
        report.failed[str(target)] = "changed by another program while annot exported; left as it is (export again)"
        return
    report.written.append(str(target))
    report.merged += existing is not None


def _unmergeable(status: os.stat_result) -> str | None:
    if not stat.S_ISREG(status.st_mode):
        return f"{file_kind(status.st_mode)}, not a sidecar; left as it is"
    if status.st_size > MAX_SIDECAR_BYTES:
        return f"{status.st_size:,} bytes, over the {MAX_SIDECAR_BYTES:,} annot merges; left as it is"
    return None


def protected(target: Path, status: os.stat_result | None) -> bool:
    """Whether the person protected a sidecar from changes: no write permission on it for anyone (as a file
    manager's "read-only"; root is not exempt), or a folder annot cannot write into."""
    if status is not None and not status.st_mode & 0o222:
        return True
    folder = target.parent
    while not folder.exists() and folder != folder.parent:  # a folder --out will create: its first existing parent
        folder = folder.parent
    return folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK)


def remove_temporaries(folder: Path) -> None:
    """Remove the temporary files a killed export left beside its sidecars (``.NAME.xmp.XXXX.tmp``)."""
    try:
        for stale in folder.glob(TEMPORARY.format(name="*.xmp")):
            stale.unlink(missing_ok=True)
    except OSError:  # a folder that cannot be listed: nothing to clean there
        return


def _same(target: Path, status: os.stat_result | None, existing: bytes | None) -> bool:
    """Whether the sidecar is still as the export read it (absent, or the same bytes)."""
    try:
        now = target.stat()
    except FileNotFoundError:
        return status is None
    if status is None or now.st_size != status.st_size or now.st_mtime_ns != status.st_mtime_ns:
        return False
    return existing is None or target.read_bytes() == existing


def _write(path: Path, payload: bytes, mode: int | None = None, unchanged: Callable[[], bool] | None = None) -> None:
    try:
        atomic_write(path, lambda fh: fh.write(payload), mode, unchanged)
    except ChangedMeanwhile:
        raise
    except OSError as exc:
        raise AnnotError(f"{path}: cannot write there ({exc.strerror or exc})") from exc
