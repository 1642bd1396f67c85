"""Commands that use a store's model: ``query`` (tags for images) and ``eval`` (P / R / F1 / N+ on a labelled set)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from annot.cli.app import (
    AlphaOpt,
    DepthOpt,
    JsonOpt,
    KOpt,
    MethodOpt,
    MinConfidenceOpt,
    NOpt,
    ScoreOpt,
    StoreOpt,
    TempOpt,
    WaitOpt,
    app,
    handle_errors,
    open_store,
)
from annot.cli.render import console, error_line, print_json, say, styled, table, warn
from annot.settings import scoring_flags

if TYPE_CHECKING:
    from annot.methods import TagScore


@app.command()
@handle_errors
def query(
    images: Annotated[list[Path], typer.Argument(help="Image files or directories of images.")],
    store: StoreOpt,
    method: MethodOpt = None,
    n: NOpt = None,
    k: KOpt = None,
    temperature: TempOpt = None,
    frequency_power: AlphaOpt = None,
    depth: DepthOpt = None,
    score: ScoreOpt = None,
    min_confidence: MinConfidenceOpt = None,
    explain: Annotated[bool, typer.Option(help="Show, per tag, the training images that voted and their weights.")] = False,
    open_vocabulary: Annotated[bool, typer.Option(
        "--open-vocabulary", help="cnn-r: answer with the nearest words of the whole word-vector file, not only the "
                                  "vocabulary.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Annotate new images with the store's model (nothing is kept; see `annot annotate` for a photo library)."""

    api = open_store(store)
    scoring = api.scoring(**scoring_flags(method=method, n=n, k=k, temperature=temperature,
                                          frequency_power=frequency_power, depth=depth, score=score,
                                          min_confidence=min_confidence))
    results: list[dict[str, object]] = []
    failed: dict[str, str] = {}
    for batch, unreadable in api.iter_query(images, scoring, explain=explain, open_vocabulary=open_vocabulary):
        failed.update(unreadable)
        if json_out:
            results.extend(a.to_dict(explain) for a in batch)
            continue
        for a in batch:
            say(styled((str(a.image), "bold"), ": " + "  ".join(_shown(t) for t in a.tags)))
            if explain:
                for t in a.tags:
                    voters = ", ".join(f"{Path(v.path).name} (D={v.distance:.3f}, w={v.weight:.3g})" for v in t.evidence[:8])
                    more = f" +{len(t.evidence) - 8} more" if len(t.evidence) > 8 else ""
                    say(f"    {t.tag}: {voters}{more}")
    api.close()
    if json_out:
        print_json({"annotations": results, "failed": failed})
    for path, why in failed.items():
        warn(error_line(f"{path}: {why}"))
    if failed:
        raise typer.Exit(1)


def _shown(tag: TagScore) -> str:
    """A tag with its confidence (a probability) where the store is calibrated for these settings, else its score."""
    if tag.confidence is not None:
        return f"{tag.tag} ({100 * tag.confidence:.0f}%)"
    return f"{tag.tag} (score {tag.score:.3g})"


@app.command("eval")
@handle_errors
def eval_(
    corpus: Annotated[Path, typer.Argument(help="Labelled images (JSON Lines or CSV) to annotate and score.")],
    store: StoreOpt,
    method: MethodOpt = None,
    n: NOpt = None,
    k: KOpt = None,
    temperature: TempOpt = None,
    frequency_power: AlphaOpt = None,
    depth: DepthOpt = None,
    score: ScoreOpt = None,
    min_confidence: MinConfidenceOpt = None,
    split: Annotated[str, typer.Option(help="Split name recorded for these images.")] = "test",
    wait: WaitOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Annotate a labelled set and report per-word P / R / F1 / N+ (recorded as a run in the store)."""

    api = open_store(store, wait)
    result = api.evaluate(corpus, split=split, **scoring_flags(
        method=method, n=n, k=k, temperature=temperature, frequency_power=frequency_power, depth=depth, score=score,
        min_confidence=min_confidence))
    if json_out:
        print_json(result.to_dict())
        return
    s = result.summary.as_percent()
    console.print(table(f"run {result.run_id}: {result.method} on {corpus.name}", ["P", "R", "F1", "N+", "words", "images"],
                        [[s["P"], s["R"], s["F1"], s["N+"], s["words"], s["images"]]]))
    if result.summary.n_words_without_truth:
        warn(f"{result.summary.n_words_without_truth} vocabulary words have no test truth and are left out of P and R")
    if result.unreadable:
        warn(f"skipped {len(result.unreadable)} unreadable images")
