"""Commands for a photo library: ``annotate`` (tag photos and keep the tags), ``search``, ``export``, ``correct``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from annot.cli.app import (
    JsonOpt,
    MinConfidenceOpt,
    NOpt,
    StoreOpt,
    WaitOpt,
    app,
    handle_errors,
    open_store,
)
from annot.cli.render import console, error_line, print_json, say, styled, table, warn
from annot.errors import AnnotError
from annot.settings import scoring_flags

if TYPE_CHECKING:  # the commands import what they run when they run: `annot --help` and a search stay quick
    from annot.library.collection import AnnotateReport
    from annot.library.photoview import PhotoTag
    from annot.library.search import Found, Hit


@app.command()
@handle_errors
def annotate(
    store: StoreOpt,
    paths: Annotated[list[Path] | None, typer.Argument(
        help="Photos, folders of photos (walked recursively), or .txt files listing photo paths, one a line. None: "
             "only re-score the library's photos that the model has changed for.")] = None,
    n: NOpt = None,
    min_confidence: MinConfidenceOpt = None,
    ray: Annotated[str | None, typer.Option(help="Encode on a Ray cluster at this address (as annot index).")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Images per encoder batch (default: the "
                                                                        "store's).")] = None,
    retag: Annotated[bool, typer.Option("--retag", help="Score every photo of the library again (from its cached "
                                                         "features), not only those the model changed for.")] = False,
    wait: WaitOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Tag photos with the store's model and keep them in its library, to search, correct and export.

    A rerun annotates only what is new or changed: unchanged photos (same size and modification time) are skipped,
    changed ones annotated again, vanished ones marked missing; a moved or renamed photo keeps its tags and
    corrections, and an exact duplicate is linked to the photo it repeats. After corrections, annot add or annot
    refit, every photo already tagged is scored again from its stored features (nothing decoded), and the run says
    how many photos' tags changed. Ctrl-C or a crash loses at most the last minute of work; run the same command
    again to finish. Unreadable files are listed and skipped."""

    report = open_store(store, wait).annotate(paths or [], ray=ray, batch_size=batch_size, retag=retag,
                                              **scoring_flags(n=n, min_confidence=min_confidence))
    if json_out:
        print_json(report.to_dict())
    else:
        _say_annotated(report, given=bool(paths))
    for path, why in list(report.unreadable.items())[:20]:
        warn(styled(("skipped", "yellow"), f" {path}: {why}"))
    if len(report.unreadable) > 20:
        warn(f"... and {len(report.unreadable) - 20:,} more unreadable files "
             "(annot sql \"select path, error from images join photo_files on id = image_id where "
             "state = 'unreadable'\")")


def _say_annotated(report: AnnotateReport, given: bool) -> None:
    if given:
        done = report.annotated + report.reannotated
        rate = f", {done / report.seconds:.1f} photos/s" if report.seconds and done else ""
        say(f"annotated {report.annotated:,} new and {report.reannotated:,} changed photos, "
            f"{report.unchanged:,} unchanged, in {report.seconds:.1f}s{rate}; the library holds {report.total:,} photos")
    elif not report.rescored:
        say(f"the library's {report.total:,} photos are scored by the model as it is: nothing to re-score")
    if report.rescored:
        say(f"re-scored {report.rescored:,} photos from their stored features "
            f"({report.rescored / max(report.rescore_seconds, 1e-9):,.0f} photos/s): {report.retagged:,} photos' "
            "tags changed")
    for old, new in list(report.moved.items())[:5]:
        say(f"moved: {old} -> {new} (same photo: tags and corrections kept)")
    if len(report.moved) > 5:
        say(f"... and {len(report.moved) - 5:,} more moved photos")
    for new, old in list(report.duplicates.items())[:5]:
        say(f"duplicate: {new} is {old} (linked: tagged, searched and corrected as that photo)")
    if len(report.duplicates) > 5:
        say(f"... and {len(report.duplicates) - 5:,} more duplicates")
    if report.training:
        say(f"{report.training:,} of the files are training images of the store (they keep their tags)")
    if report.missing:
        warn(f"{len(report.missing):,} photos are gone from their folders and were marked missing "
             f"(e.g. {report.missing[0]})")


@app.command()
@handle_errors
def search(
    store: StoreOpt,
    words: Annotated[list[str] | None, typer.Argument(help="Words to search for (all of them).")] = None,
    like: Annotated[Path | None, typer.Option("--like", help="Find photos that look like this one.")] = None,
    mode: Annotated[str, typer.Option(
        help="tags (the photos' tags, by confidence), space (the words' text view in the shared CCA space: finds "
             "photos for words outside the vocabulary too) or combined (both, by reciprocal-rank fusion).")
    ] = "combined",
    require: Annotated[list[str] | None, typer.Option("--require", help="A tag every result must have "
                                                                         "(repeatable).")] = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="A tag no result may have "
                                                                         "(repeatable).")] = None,
    folder: Annotated[Path | None, typer.Option(help="Only photos under this folder.")] = None,
    scope: Annotated[str, typer.Option(help="auto (your annotated photos; the training images when there are none "
                                            "yet), library, training, or all (both).")] = "auto",
    n: Annotated[int, typer.Option("-n", help="How many results.")] = 20,
    all_results: Annotated[bool, typer.Option("--all", help="Also the photos whose only evidence is weaker than the "
                                                            "store's calibrated cut.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Find photos by words or by an example photo: your annotated photos (the library), or the training images.
    A search by words ends where the evidence ends: photos whose tags for the words reach the store's calibrated cut
    (--all for the weaker matches too)."""

    api = open_store(store)
    searched = api.search_scope(scope)
    if scope == "auto" and searched == "training":
        warn(f"the store has no photo library yet (annot annotate adds one); searching its "
             f"{api.manifest.index.ntotal:,} training images")
    found = api.find(words or [], like=like, mode=mode, require=require or [], exclude=exclude or [],
                     folder=folder, n=n, scope=scope, all_results=all_results)
    api.close()
    hits = found.hits
    if json_out:
        print_json({"scope": searched, "partial": found.partial, "left_out": found.left_out,
                    "read_as": found.read_as, "unknown": list(found.unknown), "results": [h.to_dict() for h in hits]})
        return
    _readings(found)
    if found.partial:
        warn(f"no photo has all of {_words(found.words)}; the photos with some of them, those with more first")
    if not hits:
        weaker = f"; {found.left_out:,} weaker matches left out (--all shows them)" if found.left_out else ""
        warn(f"no photos found{weaker}")
        return
    console.print(table(None, ["#", "score", "photo", "tags"], [
        [rank, f"{h.score:.4g}", h.path + ("" if h.kind == "library" else " (training)"), _tags(h)]
        for rank, h in enumerate(hits, 1)]))
    if found.left_out:
        say(f"{found.left_out:,} weaker matches left out (--all shows them)")


def _readings(found: Found) -> None:
    """Say how words outside the vocabulary were read, and which could not be."""
    if found.read_as:
        say("read " + "; ".join(f"{_words([word])} as {', '.join(means)}" for word, means in found.read_as.items()))
    if found.unknown:
        from annot.features import multilingual

        hint = "" if multilingual.available() else " (words in other languages: pip install 'annot[multilingual]')"
        warn(f"no word of the store's vocabulary means {_words(found.unknown)}{hint}")


def _words(words: Sequence[str], width: int = 40) -> str:
    """Query words for a message: quoted, each cut to ``width`` characters."""
    return ", ".join(repr(w if len(w) <= width else w[: width - 1] + "…") for w in words)


def _tags(hit: Hit) -> str:
    return ", ".join(_shown(t) for t in hit.tags[:8])


@app.command("export")
@handle_errors
def export_(
    store: StoreOpt,
    fmt: Annotated[str, typer.Option("--format", "-f", help="xmp (a sidecar per photo, merged into an existing one), "
                                                            "csv or jsonl.")] = "xmp",
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="xmp: a folder to write the sidecars under, mirroring the photos' folders (default: "
                            "beside each photo); csv, jsonl: the file (default: stdout).")] = None,
    naming: Annotated[str, typer.Option(help="Sidecar names: full (photo.jpg.xmp: digiKam, darktable) or stem "
                                             "(photo.xmp: Lightroom).")] = "full",
    min_confidence: MinConfidenceOpt = None,
    training: Annotated[bool, typer.Option("--training", help="Also the training images, with their own "
                                                              "tags.")] = False,
    parent: Annotated[str, typer.Option(help="xmp: the keyword annot's hierarchical keywords go under (annot|beach "
                                             "in Lightroom, annot/beach in digiKam); \"\" for none.")] = "annot",
    sync: Annotated[bool, typer.Option("--sync/--no-sync", help="xmp: first record what you did to annot's keywords "
                                                                 "in the sidecars (removed ones as rejections, "
                                                                 "your own as additions).")] = True,
    json_out: JsonOpt = False,
) -> None:
    """Write the library's tags where photo managers read them (XMP keywords), or as CSV or JSON Lines.

    XMP: by default only the tags that reach the store's calibrated cut (--min-confidence auto; 0 for every tag),
    confirmed and added ones always. An existing sidecar keeps its other fields and the keywords others wrote; the
    keywords an earlier export wrote are replaced. Before writing, a keyword annot wrote that you removed in your
    photo manager is recorded as a rejection (and not written again), and keywords you added as additions. A
    write-protected sidecar is left alone (and listed); one that cannot be merged (not XMP, over 16 MiB) is left as
    it is, listed, and the command exits 1 after writing the others."""

    with open_store(store) as api:
        report = api.export(fmt, out=out, naming=naming, training=training, stream=sys.stdout, parent=parent,
                            sync=sync, min_confidence="default" if min_confidence is None else min_confidence)
    if json_out and (fmt == "xmp" or out is not None):
        print_json(report.to_dict())
    elif fmt == "xmp" or out is not None:
        where = f"under {out}" if out is not None and fmt == "xmp" else str(out) if out else "beside the photos"
        if report.synced.get("rejected") or report.synced.get("added"):
            rejected, added = report.synced["rejected"], report.synced["added"]
            say(f"from the sidecars: {rejected:,} keyword{'s' * (rejected != 1)} you removed recorded as "
                f"rejections, {added:,} keyword{'s' * (added != 1)} you added recorded as additions")
        say(f"wrote {report.tags:,} tags of {report.photos:,} photos ({len(report.written):,} files "
            f"{where}; {report.merged:,} existing sidecars merged)")
        for path in report.protected[:20]:
            warn(styled(("left alone", "yellow"), f" {path}: write-protected"))
        if len(report.protected) > 20:
            warn(f"... and {len(report.protected) - 20:,} more write-protected sidecars left alone")
    for path, why in list(report.failed.items())[:20]:
        warn(error_line(f"{path}: {why}"))
    if report.failed:
        if len(report.failed) > 20:
            warn(error_line(f"... and {len(report.failed) - 20:,} more sidecars left as they were"))
        raise typer.Exit(1)


@app.command()
@handle_errors
def correct(
    store: StoreOpt,
    photo: Annotated[str | None, typer.Argument(help="The photo: its path, or its id (annot search --json).")] = None,
    confirm: Annotated[list[str] | None, typer.Option("--confirm", help="A tag that is right (repeatable).")] = None,
    reject: Annotated[list[str] | None, typer.Option("--reject", help="A tag that is wrong (repeatable).")] = None,
    add: Annotated[list[str] | None, typer.Option("--add", help="A tag the photo lacks (repeatable).")] = None,
    clear: Annotated[list[str] | None, typer.Option("--clear", help="Forget your corrections of this tag: its "
                                                                    "prediction shows again (repeatable).")] = None,
    from_file: Annotated[Path | None, typer.Option(
        "--from", help='A JSON Lines file of corrections: {"image": PATH, "confirm": [...], "reject": [...], '
                       '"add": [...]} (or "id": N) per line.')] = None,
    wait: WaitOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Confirm or reject a photo's tag, or add a missing one. Corrections win over every later annotate, and a
    corrected photo joins the training corpus with the tags you vouched for (as annot add: no refit)."""

    from annot.library.corrections import Correction, read_corrections

    items: list[Correction] = []
    if from_file is not None:
        items += read_corrections(from_file)
    if confirm or reject or add or clear:
        if photo is None:
            raise AnnotError("name the photo to correct (its path or id), or give --from FILE")
        target: int | str = int(photo) if photo.isdigit() and not Path(photo).exists() else str(Path(photo).resolve())
        items += [Correction(target, t, a) for a, found in (("confirm", confirm), ("reject", reject), ("add", add),
                                                            ("clear", clear)) for t in found or []]
    elif photo is not None:
        raise AnnotError(f"{photo}: say what to correct: --confirm, --reject, --add or --clear a tag")
    report = open_store(store, wait).correct(items, source="cli")
    if json_out:
        print_json(report.to_dict())
        return
    line = f"recorded {report.recorded} corrections of {report.photos} photos"
    if report.unchanged:
        line += f" ({report.unchanged} repeated what was already recorded and were not recorded again)"
    if report.kept_only:
        line += "; the store's kernel-CCA model cannot take new training images (they join at the next annot index)"
    else:
        line += f"; {report.joined_training} photos entered or changed in the training index ({report.indexed:,} images)"
    say(line)
    if report.new_words:
        say(f"new words: {', '.join(report.new_words)} (look-alike photos get them at the next annot annotate; the "
            "projection learns them at annot refit)")


@app.command()
@handle_errors
def review(
    store: StoreOpt,
    n: Annotated[int, typer.Option("-n", help="How many photos to list.", min=1, max=10_000)] = 20,
    order: Annotated[str, typer.Option(help="dense (unsure tags of photos with many look-alikes), uncertain (unsure "
                                            "tags) or rare (unsure tags, rare words counting more).")] = "dense",
    json_out: JsonOpt = False,
) -> None:
    """The library photos to look at first: those whose tags the store is least sure of, so that each correction
    teaches it the most. Answer with annot correct (a corrected photo leaves the queue, and its look-alikes are
    re-scored at the next annot annotate)."""
    api = open_store(store)
    items = api.review(n, order=order)
    api.close()
    if json_out:
        print_json({"photos": [item.to_dict() for item in items]})
        return
    if not items:
        warn("nothing to review: every annotated photo of the library has been corrected, or none is annotated yet")
        return
    console.print(table(None, ["#", "priority", "photo", "tags", "least sure"], [
        [rank, f"{item.priority:.3f}", item.path, ", ".join(_shown(t) for t in item.tags[:8]), ", ".join(item.ask[:3])]
        for rank, item in enumerate(items, 1)]))
    say(f"answer with: annot correct PHOTO --store {store} --confirm TAG --reject TAG --add WORD")


def _shown(tag: PhotoTag) -> str:
    return tag.tag if tag.confidence is None or tag.source != "predicted" else f"{tag.tag} {100 * tag.confidence:.0f}%"
