"""Reading back what a person did to annot's keywords in their photo manager (``annot export`` does it first).

An XMP export records in each sidecar which keywords annot wrote (``annot:Added``) and writes its hierarchical
keywords under its parent keyword (``annot|beach``, ``annot/beach``). Before the next export, each library photo's
sidecar is read again:

- a keyword annot wrote that is no longer among the sidecar's ``dc:subject`` (the field every photo manager
  writes) was removed by the person: it becomes a rejection, and is not written again;
- a keyword the person wrote (outside annot's parent keyword, not annot's own) becomes a correction that adds it:
  the photo joins the training corpus with it, and a word the store has never seen becomes one of its words.

Corrections are recorded as ``annot correct`` records them (source ``xmp``); recording one again changes nothing.
A sidecar that cannot be read is left to the export, which reports it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from annot.indexer.corpus import normalize_tag
from annot.indexer.keywords import parse_xmp, xmp_keywords
from annot.library.corrections import Correction
from annot.library.export import MAX_SIDECAR_BYTES, q, sidecar_path
from annot.library.view import photo_tags
from annot.model import StoreModel
from annot.schema import images, photo_files


@dataclass
class SidecarChanges:
    """What the sidecars say the person did: keywords they removed (rejections) and added (additions)."""

    corrections: list[Correction] = field(default_factory=list)
    rejected: int = 0
    added: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"rejected": self.rejected, "added": self.added}


def _read(sidecar: Path) -> bytes | None:
    try:
        if not sidecar.is_file() or sidecar.stat().st_size > MAX_SIDECAR_BYTES:
            return None
        return sidecar.read_bytes()
    except OSError:
        return None


def sidecar_changes(model: StoreModel, *, naming: str = "full", out: Path | None = None, parent: str = "annot",
                    hierarchy: str = "leaf") -> SidecarChanges:
    """The corrections the library photos' sidecars (as ``annot export`` names them) say the person made."""
    with model.store.db.connect() as conn:
        rows = conn.execute(select(images.c.id, images.c.path).join(photo_files, photo_files.c.image_id == images.c.id)
                            .where(photo_files.c.state == "annotated").order_by(images.c.path)).all()
    if not rows:
        return SidecarChanges()
    root = Path(os.path.commonpath([str(Path(p).parent) for _, p in rows])) if out is not None else None
    shown = photo_tags(model.store, [int(i) for i, _ in rows])
    found = SidecarChanges()
    for image_id, path in rows:
        packet = _read(sidecar_path(Path(path), naming, out, root))
        if packet is None:
            continue
        try:
            xmp = parse_xmp(packet)
            theirs = xmp_keywords(packet, hierarchy, parent)
        except ValueError:
            continue
        ours = {normalize_tag(li.text or "") for holder in xmp.iter(q("annot", "Added"))
                for li in holder.iter(q("rdf", "li"))}
        subjects = {normalize_tag(li.text or "") for holder in xmp.iter(q("dc", "subject"))
                    for li in holder.iter(q("rdf", "li"))}
        current = {t.tag: t.source for t in shown.get(int(image_id), [])}
        for word in sorted(ours - subjects - {""}):
            if word in current:  # written by annot, removed by the person
                found.corrections.append(Correction(str(path), word, "reject"))
                found.rejected += 1
        for keyword in theirs:
            word = normalize_tag(keyword)
            if word and current.get(word) not in ("added", "confirmed"):
                found.corrections.append(Correction(str(path), word, "add"))
                found.added += 1
    return found


__all__ = ["SidecarChanges", "sidecar_changes"]
