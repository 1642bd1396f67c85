"""The keywords a person already gave their photos, read where photo managers write them.

Three places, in this order, for each photo: its XMP sidecar (``photo.xmp``, as Lightroom names it, and
``photo.jpg.xmp``, as digiKam and darktable do), the XMP embedded in the file, and its IPTC Keywords. From XMP:
``dc:subject`` (flat keywords, every manager), ``lr:hierarchicalSubject`` (Lightroom's ``Animals|Dog``) and
``digiKam:TagsList`` (digiKam's ``Animals/Dog``). A hierarchical keyword is its leaf word by default (``dog``) or its
whole path (``hierarchy="path"``: ``animals/dog``). Keywords annot wrote itself are never read back as the person's:
the hierarchical ones under annot's parent keyword, and the flat ones an export of annot listed in ``annot:Added``.

XMP is parsed with ``defusedxml`` (no DTD, no entities: an external entity or a "billion laughs" sidecar is refused,
nothing outside it is read), a sidecar larger than :data:`MAX_SIDECAR_BYTES` is not read, and a sidecar that is a
link to a file outside the library is not followed. A sidecar that cannot be used is named with why, and the photo
is read without its keywords; IPTC text is decoded as its coded character set says (UTF-8, else Latin-1).
"""

from __future__ import annotations

import os
import stat
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as parse_xml

from annot.errors import CorpusError
from annot.features.images import IMAGE_SUFFIXES, image_files
from annot.indexer.corpus import Corpus, CorpusEntry, normalize_tag
from annot.inputs import LISTS, read_text
from annot.progress import NoProgress, Progress

MAX_SIDECAR_BYTES = 16 << 20
SOURCES = ("sidecar", "embedded-xmp", "iptc")
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
FIELDS = {  # XMP field: the separator of its hierarchy ("" for flat keywords)
    "{http://purl.org/dc/elements/1.1/}subject": "",
    "{http://ns.adobe.com/lightroom/1.0/}hierarchicalSubject": "|",
    "{http://www.digikam.org/ns/1.0/}TagsList": "/",
}
ADDED = "{https://ns.annot.dev/xmp/1.0/}Added"  # what an export of annot wrote (never the person's keywords)


@dataclass(frozen=True)
class PhotoKeywords:
    """A photo's keywords and where they were found; ``problems``: sidecars that could not be used, and why."""

    path: Path
    keywords: tuple[str, ...]
    sources: tuple[str, ...]
    problems: tuple[tuple[Path, str], ...] = ()


def sidecars(photo: Path) -> list[Path]:
    """The sidecar names photo managers use for ``photo`` (Lightroom's first), whether they exist or not."""
    return list(dict.fromkeys([photo.with_suffix(".xmp"), photo.with_suffix(".XMP"),
                               photo.with_name(photo.name + ".xmp"), photo.with_name(photo.name + ".XMP")]))


def parse_xmp(packet: bytes, what: str = "XMP") -> ET.Element:
    """An XMP packet's XML, parsed safely (no DTD, no entities: nothing outside it is read and nothing expands);
    ``ValueError`` saying why one cannot be used (``what`` names it in the message)."""
    try:
        root: ET.Element = parse_xml(packet, forbid_dtd=True)
    except ET.ParseError as exc:
        raise ValueError(f"not {what} ({exc})") from None
    except DefusedXmlException as exc:
        raise ValueError(f"not used: it declares a DTD or entities ({type(exc).__name__})") from None
    return root


def xmp_keywords(packet: bytes, hierarchy: str = "leaf", parent: str = "annot") -> list[str]:
    """The keywords of an XMP packet (a sidecar or an embedded one); ``ValueError`` for one that is not XMP."""
    root = parse_xmp(packet)
    ours = {li.text or "" for holder in root.iter(ADDED) for li in holder.iter(f"{{{RDF}}}li")}
    found: list[str] = []
    for name, separator in FIELDS.items():
        for holder in root.iter(name):
            for li in holder.iter(f"{{{RDF}}}li"):
                value = (li.text or "").strip()
                if not value or (not separator and value in ours):
                    continue
                parts = [p.strip() for p in value.split(separator)] if separator else [value]
                if separator and (parts[0] == parent or len(parts) == 2 and parts[1] in ours):
                    continue  # annot's own keyword tree (under the parent it was exported with)
                found.append(parts[-1] if hierarchy == "leaf" else "/".join(parts))
    return list(dict.fromkeys(found))


def iptc_keywords(values: Iterable[bytes] | bytes, utf8: bool) -> list[str]:
    """IPTC Keywords (2:25), decoded as the record's coded character set says."""
    items = [values] if isinstance(values, bytes) else list(values)
    return [v.decode("utf-8" if utf8 else "latin-1", errors="replace").strip() for v in items if v.strip()]


def read_keywords(photo: Path, root: Path, *, hierarchy: str = "leaf", parent: str = "annot") -> PhotoKeywords:
    """The keywords of ``photo`` (a file under the library folder ``root``), from every place they may be."""
    keywords: list[str] = []
    sources: list[str] = []
    problems: list[tuple[Path, str]] = []
    for sidecar in sidecars(photo):
        try:
            found = _sidecar(sidecar, root, hierarchy, parent)
        except ValueError as exc:
            problems.append((sidecar, str(exc)))
            continue
        if found is not None:
            keywords += found
            sources.append("sidecar")
    embedded, iptc = _embedded(photo, hierarchy, parent, problems)
    if embedded:
        keywords += embedded
        sources.append("embedded-xmp")
    if iptc:
        keywords += iptc
        sources.append("iptc")
    return PhotoKeywords(photo, tuple(dict.fromkeys(keywords)), tuple(dict.fromkeys(sources)), tuple(problems))


def _sidecar(sidecar: Path, root: Path, hierarchy: str, parent: str) -> list[str] | None:
    """A sidecar's keywords; None where there is none; ``ValueError`` saying why one cannot be used."""
    try:
        status = sidecar.lstat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValueError(f"cannot read the sidecar ({exc.strerror or exc})") from None
    if stat.S_ISLNK(status.st_mode):
        target = sidecar.resolve()
        if not target.is_relative_to(root.resolve()):
            raise ValueError("a link to a file outside the library; not followed")
        status = target.stat()
    if not stat.S_ISREG(status.st_mode):
        raise ValueError("not a regular file; not read")
    if status.st_size > MAX_SIDECAR_BYTES:
        raise ValueError(f"{status.st_size:,} bytes, over the {MAX_SIDECAR_BYTES:,} a sidecar may have; not read")
    try:
        return xmp_keywords(sidecar.read_bytes(), hierarchy, parent)
    except OSError as exc:
        raise ValueError(f"cannot read the sidecar ({exc.strerror or exc})") from None


def _embedded(photo: Path, hierarchy: str, parent: str, problems: list[tuple[Path, str]]) -> tuple[list[str], list[str]]:
    """The keywords of the XMP packet embedded in a photo, and its IPTC Keywords (PIL reads both headers)."""
    from PIL import Image, IptcImagePlugin, UnidentifiedImageError

    try:
        with Image.open(photo) as image:
            packet = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp")
            iptc = IptcImagePlugin.getiptcinfo(image) or {}
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        return [], []  # an unreadable photo is reported where it is decoded
    embedded: list[str] = []
    if packet:
        try:
            embedded = xmp_keywords(packet.encode() if isinstance(packet, str) else packet, hierarchy, parent)
        except ValueError as exc:
            problems.append((photo, f"its embedded XMP: {exc}"))
    utf8 = iptc.get((1, 90), b"") in (b"\x1b%G", b"\x1b%/G")
    return embedded, iptc_keywords(iptc.get((2, 25), []), utf8)


@dataclass
class KeywordSummary:
    """What reading a folder of photos found: how many photos, how many with keywords and from which source, the
    sidecars that could not be used."""

    photos: int = 0
    with_keywords: int = 0
    by_source: dict[str, int] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {"photos": self.photos, "with_keywords": self.with_keywords, "by_source": self.by_source,
                "problems": self.problems}


def photo_folder_corpus(inputs: Sequence[Path], vocabulary: tuple[str, ...] | None = None, *,
                        hierarchy: str = "leaf", parent: str = "annot",
                        progress: Progress | None = None) -> tuple[Corpus, KeywordSummary]:
    """The photos with keywords under folders (walked recursively) or named by lists (``.txt``, a path a line), as
    a corpus of training images; photos without keywords are counted, not listed (they are the library to tag)."""
    photos, roots = _photos(inputs)
    summary = KeywordSummary(photos=len(photos))
    allowed = set(vocabulary) if vocabulary is not None else None
    entries: list[CorpusEntry] = []
    dropped: Counter[str] = Counter()
    with (progress or NoProgress()).task("reading the photos' keywords", len(photos)) as advance:
        for number, (photo, root) in enumerate(zip(photos, roots, strict=True), 1):
            advance(1)
            found = read_keywords(photo, root, hierarchy=hierarchy, parent=parent)
            summary.problems.update({str(p): why for p, why in found.problems})
            tags = [t for t in dict.fromkeys(normalize_tag(k) for k in found.keywords) if t]
            if allowed is not None:
                dropped.update(t for t in tags if t not in allowed)
                tags = [t for t in tags if t in allowed]
            if not tags:
                continue
            summary.with_keywords += 1
            for source in found.sources:
                summary.by_source[source] = summary.by_source.get(source, 0) + 1
            entries.append(CorpusEntry(number, photo, tuple(tags)))
    if not entries:
        raise CorpusError(f"{', '.join(map(str, inputs))}: none of the {len(photos):,} photos has keywords (in an "
                          "XMP sidecar, embedded XMP or IPTC) to learn from")
    words = vocabulary if vocabulary is not None else tuple(sorted({t for e in entries for t in e.tags}))
    where = Path(inputs[0]) if len(inputs) == 1 else Path(os.path.commonpath([str(Path(p).resolve()) for p in inputs]))
    return Corpus(where, tuple(entries), tuple(words), dict(dropped)), summary


def _photos(inputs: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """Each photo once (resolved), with the library folder its sidecars must stay in."""
    found: dict[Path, Path] = {}
    for item in map(Path, inputs):
        if item.is_dir():
            root = item.resolve()
            files = list(image_files(item))
            if not files:
                raise CorpusError(f"{item}: folder holds no photos ({', '.join(sorted(IMAGE_SUFFIXES))})")
            for photo in files:
                found.setdefault(_absolute(photo), root)
        elif item.suffix.lower() in LISTS:
            base = item.resolve().parent
            for line in read_text(item, "list of photos").splitlines():
                if line.strip():
                    photo = _absolute(base / line.strip())
                    found.setdefault(photo, photo.parent)
        elif item.exists():
            photo = _absolute(item)
            found.setdefault(photo, photo.parent)
        else:
            raise CorpusError(f"{item}: no such file or folder")
    return list(found), list(found.values())


def _absolute(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))


__all__ = ["MAX_SIDECAR_BYTES", "SOURCES", "KeywordSummary", "PhotoKeywords", "parse_xmp", "photo_folder_corpus",
           "read_keywords", "sidecars", "xmp_keywords"]
