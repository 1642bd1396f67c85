"""Commands that build and change a store's model: ``index``, ``add``, ``remove``, ``refit``, ``tune``, ``fit``,
``train-cnnr``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from annot.cli.app import (
    DEFAULT,
    KCCA_SCORING,
    AlphaOpt,
    DepthOpt,
    JsonOpt,
    KOpt,
    ScoreOpt,
    StoreOpt,
    TempOpt,
    WaitOpt,
    app,
    handle_errors,
    open_store,
)
from annot.cli.render import console, print_json, say, styled, table, warn
from annot.settings import build_settings

if TYPE_CHECKING:
    from annot.indexer import IndexReport

P = DEFAULT.projection


@app.command()
@handle_errors
def index(
    corpus: Annotated[Path, typer.Argument(
        help="Tagged images: a corpus (JSON Lines or CSV; image paths relative to it), or a folder of photos (or a "
             ".txt list of them) whose keywords are read from their XMP sidecars, embedded XMP and IPTC (the photos "
             "with keywords train the store).")],
    store: StoreOpt,
    encoder: Annotated[str | None, typer.Option(
        help=f"Image encoder (default {DEFAULT.encoder.name}: EfficientNet-Lite0 with 5 pooled stages): "
             "efficientnet-lite0, efficientnet-lite1(-stages), efficientnet-lite2(-stages), vgg16, alexnet, "
             "cnnr:STORE, or several joined by +; NAME@SIZE feeds a network SIZE-pixel images.")] = None,
    weights: Annotated[Path | None, typer.Option(help="Weights file for the encoder (vgg16/alexnet state dict).")] = None,
    words: Annotated[str | None, typer.Option(
        "--words", help=f"Word vectors (default {DEFAULT.text.words}): glove-50, minilm (a sentence encoder: every tag "
                        "gets a vector) or a word2vec/GloVe/fastText file.")] = None,
    text: Annotated[str | None, typer.Option(
        help=f"Text view (default {DEFAULT.text.view}): w2v (mean tag vector), bv (0/1 tags) or w2v+bv (both).")] = None,
    vocabulary: Annotated[Path | None, typer.Option(help="Word list that restricts and orders the tags.")] = None,
    keywords: Annotated[str | None, typer.Option(
        help="A folder's hierarchical keywords (Lightroom's Animals|Dog, digiKam's Animals/Dog) as their leaf word "
             "(leaf, the default) or as the whole path (path).")] = None,
    min_photos: Annotated[int | None, typer.Option(
        "--min-photos", help="Leave out words on fewer training images than this (they are listed).")] = None,
    projection: Annotated[str | None, typer.Option(
        help=f"linear-cca (default) or kcca (χ² kernel on the image view; its own scoring defaults: K {KCCA_SCORING.k}, "
             f"τ {KCCA_SCORING.temperature}, α {KCCA_SCORING.frequency_power}, power normalisation).")] = None,
    normalize: Annotated[str | None, typer.Option(
        help="Image feature normalisation before CCA: none, l2, power (default: none; power with kcca).")] = None,
    reg: Annotated[float | None, typer.Option(help=f"CCA ridge, relative to each view's mean variance (default {P.reg}).")] = None,
    components: Annotated[int | None, typer.Option("--components", help="CCA dimensions (default min(p, q)).")] = None,
    landmarks: Annotated[str | None, typer.Option(
        help="KCCA: all (exact), a number (Nyström), or auto (default: exact up to 5,000 images).")] = None,
    gamma_scale: Annotated[float | None, typer.Option(
        help=f"KCCA: χ² kernel width γ as a multiple of 1 / mean χ² distance (default {P.gamma_scale}).")] = None,
    text_kernel: Annotated[str | None, typer.Option(
        help="KCCA: kernel on the text view, linear (default) or rbf (Gaussian; lifts the cap of q dimensions).")] = None,
    text_gamma_scale: Annotated[float | None, typer.Option(
        help="KCCA with --text-kernel rbf: γ_y as a multiple of 1 / mean squared distance between training texts.")] = None,
    space: Annotated[str | None, typer.Option(
        help="What a query is compared with: the training images' image projections U (image, default), their tags' "
             "projections V (text, the paper's wording) or both.")] = None,
    k: KOpt = None,
    temperature: TempOpt = None,
    frequency_power: AlphaOpt = None,
    depth: DepthOpt = None,
    score: ScoreOpt = None,
    index_kind: Annotated[str | None, typer.Option(
        "--index", help="Image index: auto (default: exact Flat up to 50,000 images, else IVF sized to "
                        "--memory-budget) or a FAISS index_factory string (IVF1024,Flat, HNSW32, IVF1024,PQ32).")] = None,
    memory_budget: Annotated[str | None, typer.Option(
        help=f"Memory the image index may use, for --index auto (default {DEFAULT.index.memory_budget}).")] = None,
    tag_agreement: Annotated[float | None, typer.Option(
        help="Approximate index: widen its search until CCA-KNN's tags from it match exact search on this share of "
             f"words (default {DEFAULT.index.tag_agreement}; 0: speed first, recall@10 >= 0.95).")] = None,
    feature_dtype: Annotated[str | None, typer.Option(
        help="Cached feature precision: float32 (default) or float16 (half the disk).")] = None,
    batch_size: Annotated[int | None, typer.Option(help=f"Images per encoder batch (default {DEFAULT.batch_size}).")] = None,
    strict: Annotated[bool, typer.Option(help="Make unreadable images and tags without word vectors errors.")] = False,
    ray: Annotated[str | None, typer.Option(
        help="Run extraction and the statistics pass as tasks on this Ray cluster (ADDRESS of `ray start --head`, or "
             "auto).")] = None,
    wait: WaitOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Import a tagged corpus, extract features (resumable), fit CCA and write the indexes."""

    settings = build_settings(
        encoder=encoder, weights=weights, words=words, text=text, vocabulary=vocabulary, keywords=keywords,
        min_photos=min_photos, projection=projection,
        components=components, reg=reg, normalize=normalize, landmarks=landmarks, gamma_scale=gamma_scale,
        text_kernel=text_kernel, text_gamma_scale=text_gamma_scale, space=space, index=index_kind,
        memory_budget=memory_budget, tag_agreement=tag_agreement, k=k, temperature=temperature,
        frequency_power=frequency_power, depth=depth, score=score, feature_dtype=feature_dtype, batch_size=batch_size,
        strict=strict or None, ray=ray)
    report = open_store(store, wait).build(corpus, settings)
    if json_out:
        print_json(report.to_dict())
        return
    _say_indexed(report)


def _say_indexed(report: IndexReport) -> None:
    """What an index run read, learnt and left out, in lines a person reads."""
    if report.keywords is not None:
        found = report.keywords
        sources = ", ".join(f"{n:,} from {s}" for s, n in found.by_source.items())
        say(f"read {found.photos:,} photos: {found.with_keywords:,} have keywords ({sources}); the others are left "
            "for annot annotate")
        shown = ", ".join(report.words[:30]) + (f", ... ({len(report.words):,} in all)" if len(report.words) > 30 else "")
        say(f"learning {len(report.words):,} words: {shown}")
        for path, why in list(found.problems.items())[:20]:
            warn(styled(("skipped", "yellow"), f" {path}: {why}"))
    if report.words_left_out:
        warn(f"left out {len(report.words_left_out)} words on fewer than the --min-photos images: "
             + ", ".join(f"{w} ({n})" for w, n in list(report.words_left_out.items())[:20]))
    console.print(f"indexed {report.n_indexed} of {report.n_images} images, {report.n_words} words into "
                  f"{report.store} ({report.extracted} features extracted, {report.cached} cached)")
    top = ", ".join(f"{c:.3f}" for c in report.canonical_correlations[:5])
    console.print(f"canonical correlations: {top}, ...  stage seconds: {report.seconds}")
    if report.unreadable:
        first = next(iter(report.unreadable))
        warn(f"skipped {len(report.unreadable)} unreadable images, e.g. {first}: {report.unreadable[first]}")
    if report.duplicates:
        first = next(iter(report.duplicates))
        warn(f"{len(report.duplicates)} images have the same content as another image of the store, e.g. {first} "
             f"and {report.duplicates[first]}")
    if report.untagged:
        warn(f"left out {report.untagged} images with no usable tags")
    if report.missing_word_vectors:
        warn(f"{len(report.missing_word_vectors)} tags have no word vector (kept for voting, not in the text view): "
             f"{', '.join(report.missing_word_vectors[:10])}")
    if report.dropped_tags:
        warn(f"dropped {sum(report.dropped_tags.values())} tags outside the vocabulary")


@app.command()
@handle_errors
def add(
    corpus: Annotated[Path, typer.Argument(help="Tagged images to add: a corpus (JSON Lines or CSV), or a folder of "
                                                "photos (or a .txt list of them) whose keywords are read as annot "
                                                "index reads them.")],
    store: StoreOpt,
    strict: Annotated[bool, typer.Option(help="Make unreadable images errors.")] = False,
    wait: WaitOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Add tagged images to an indexed store with its fitted projection (no refit; see `annot refit`). Images it
    already holds take the corpus's tags, in the statistics, the index and the votes alike."""

    report = open_store(store, wait).add(corpus, strict=strict)
    if json_out:
        print_json(report.to_dict())
        return
    if report.keywords is not None:
        k = report.keywords
        say(f"read {k.photos:,} photos: {k.with_keywords:,} have keywords of the store's words")
    say(f"added {report.added} images, changed the tags of {report.retagged} ({report.skipped} already indexed "
        f"as they are or without usable tags); {report.ntotal} indexed")
    if report.outside:
        shown = ", ".join(f"{w} ({n})" for w, n in sorted(report.outside.items(), key=lambda i: -i[1])[:10])
        warn(f"{len(report.outside):,} tags are not words of the store and were left out: {shown} (teach one with "
             "annot correct --add, or index again to learn them all)")
    if report.unreadable:
        first = next(iter(report.unreadable))
        warn(f"skipped {len(report.unreadable)} unreadable images, e.g. {first}: {report.unreadable[first]}")
    if report.duplicates:
        first = next(iter(report.duplicates))
        warn(f"{len(report.duplicates)} images have the same content as another image of the store, e.g. {first} "
             f"and {report.duplicates[first]}")


@app.command()
@handle_errors
def remove(
    images: Annotated[list[Path], typer.Argument(help="Images to take out: files, directories, or a corpus file "
                                                 "(.jsonl/.csv).")],
    store: StoreOpt,
    wait: WaitOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Take training images out of a store's index; their tags no longer vote (they stay in the database, split
    'removed')."""

    report = open_store(store, wait).remove(images)
    if json_out:
        print_json(report.to_dict())
        return
    console.print(f"removed {report.removed} images ({report.skipped} were not indexed); {report.ntotal} indexed")


@app.command()
@handle_errors
def refit(store: StoreOpt, wait: WaitOpt = False, json_out: JsonOpt = False) -> None:
    """Re-estimate the projection from the store's accumulated statistics and rebuild its indexes."""

    report = open_store(store, wait).refit()
    if json_out:
        print_json(report.to_dict())
        return
    console.print(f"refitted; {report.ntotal} images indexed")


@app.command()
@handle_errors
def tune(
    store: StoreOpt,
    grid: Annotated[str, typer.Option(help="Candidate grid: quick (48 candidates; 192 for kcca: two ridges, two kernel "
                                           "widths) or full (612, with standardised CCA-KNN and transfer in each "
                                           "space; 1,224 for kcca).")] = "quick",
    folds: Annotated[int, typer.Option(help="Cross-validation folds (with --cv cover: hold-outs).")] = 5,
    cv: Annotated[str, typer.Option(help="random: k-fold; cover: hold-outs that hold every word at least once, as "
                                         "the benchmarks' test splits do (for comparing with published numbers).")] = "random",
    holdout: Annotated[float, typer.Option(help="With --cv cover: each hold-out's size as a fraction of the corpus "
                                                "(Corel-5k's test split: 499 / 4,500 = 0.11).")] = 0.1,
    min_f1: Annotated[float | None, typer.Option("--min-f1", help="Choose the candidate that recalls the most words "
                                                 "(CV N+) among those with CV F1 at least this, in percent (default: "
                                                 "the highest CV F1).")] = None,
    wait: WaitOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Choose text view, normalisation, ridge, K, τ and α by cross-validation on the store's training images only,
    record every candidate as a run, and rebuild the store with the best; every other setting stays the store's."""

    from annot.evaluation.tune import searched

    report = open_store(store, wait).tune(grid=grid, folds=folds, design=cv, holdout=holdout,
                                          min_f1=None if min_f1 is None else min_f1 / 100)
    if json_out:
        print_json({"chosen": searched(report.chosen), "runs": report.run_ids, "seconds": round(report.seconds, 1),
                    "standard_error": report.standard_error, "tied": [searched(r.candidate) for r in report.tied],
                    "top": [{"candidate": searched(r.candidate), "f1": r.f1, "n_plus": r.n_plus}
                            for r in report.results[:10]]})
        return
    how = f"{folds}-fold cross-validation" if cv == "random" else f"cross-validation on {folds} covering hold-outs"
    columns = ["F1", "P", "R", "N+", "method", "score", "text", "norm", "ridge", "K", "τ", "α"]
    rows = []
    for r in report.results[:10]:
        c = searched(r.candidate)
        rows.append([f"{100 * r.f1:.2f}", f"{100 * r.precision:.2f}", f"{100 * r.recall:.2f}", f"{r.n_plus:.1f}",
                     c["method"], c["score"] if c["method"] == "cca-knn" else "", c["text"], c["normalization"],
                     c["reg"], c["k"], c["temperature"], c["frequency_power"]])
    console.print(table(f"{how} on the training images of {store} (best 10 of {len(report.results)})", columns, rows))
    c, mine = searched(report.chosen), report.chosen_result
    console.print(f"chosen: {c['method']} ({c['score']}), text {c['text']}, {c['normalization']}, ridge {c['reg']}, "
                  f"K {c['k']}, τ {c['temperature']}, α {c['frequency_power']}: CV F1 {100 * mine.f1:.2f}, "
                  f"N+ {mine.n_plus:.1f}", highlight=False)
    console.print(f"its CV F1 has a standard error of {100 * report.standard_error:.2f} over the folds; "
                  f"{len(report.tied)} other candidate(s) are within one paired standard error of it or above it, "
                  "and cross-validation cannot rank them", highlight=False)
    console.print(f"store rebuilt with the best settings; candidates recorded as runs {report.run_ids[0]}-{report.run_ids[-1]}")


@app.command()
@handle_errors
def fit(
    method: Annotated[str, typer.Argument(help="Baseline: freq, jec, 2pknn, 2pknn-ml, tagprop, mbrm or svm-dmbrm.")],
    store: StoreOpt,
    wait: WaitOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Fit a baseline on the store's training images and keep it in the store (hyperparameters chosen on
    held-out training images). tagprop, 2pknn-ml and svm-dmbrm need this before they annotate."""

    report = open_store(store, wait).fit(method)
    if json_out:
        print_json(report.to_dict())
        return
    console.print(table(f"{method} fitted in {report.seconds:.1f} s", ["setting", "value"],
                        [[k, v] for k, v in report.params.items()]))


@app.command("train-cnnr")
@handle_errors
def train_cnnr(
    store: StoreOpt,
    backbone: Annotated[str, typer.Option(help="efficientnet-lite0 (packaged), efficientnet-lite2, or alexnet with "
                                          "--weights.")] = "efficientnet-lite0",
    weights: Annotated[Path | None, typer.Option(help="Backbone weights (a state dict); needed for alexnet.")] = None,
    epochs: Annotated[int, typer.Option(help="Most epochs (training stops earlier when validation stops improving).")] = 20,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = 64,
    lr: Annotated[float, typer.Option(help="Learning rate of the new layer; pretrained layers get lr × --lr-ratio.")] = 1e-3,
    lr_ratio: Annotated[float, typer.Option(help="Pretrained layers' rate relative to the new layer's.")] = 0.1,
    full: Annotated[bool | None, typer.Option("--full/--cached", help="Fine-tune every layer from images (default "
                                              "where CUDA is present), or train the top over cached trunk "
                                              "activations.")] = None,
    device: Annotated[str | None, typer.Option(help="torch device (default: cuda when present, else cpu).")] = None,
    restart: Annotated[bool, typer.Option(help="Discard an existing checkpoint instead of resuming from it.")] = False,
    target: Annotated[str, typer.Option(help="Regression target space: whitened word vectors (a Mahalanobis loss; "
                                        "better on Corel-5k's validation images) or raw (the paper's).")] = "whitened",
    select: Annotated[str, typer.Option(help="Keep the epoch with the highest validation F1 (f1) or the lowest "
                                        "validation loss (loss).")] = "f1",
    size: Annotated[int | None, typer.Option(help="Square input in pixels when fine-tuning fully (default: the "
                                              "backbone's; smaller trains faster).")] = None,
    augment: Annotated[bool, typer.Option("--augment/--no-augment", help="Fine-tuning fully: train on random crops "
                                          "and mirror images.")] = True,
    warmup: Annotated[int, typer.Option(help="Fine-tuning fully: epochs the pretrained trunk stays frozen while the "
                                        "new layer settles.")] = 1,
    init: Annotated[Path | None, typer.Option(help="Start from a CNN-R model file (the store's models/cnnr/model-*.pt "
                                               "of an earlier training, e.g. --cached, then --full from it).")] = None,
    wait: WaitOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Train CNN-R (§3.5) on the store's training images: the network regresses the mean word vector of an image's
    tags. Resumes from the store's checkpoint when rerun; then `annot query --method cnn-r` and `--encoder
    cnnr:STORE` use it."""

    from annot.methods.cnnr.train import CNNRConfig

    config = CNNRConfig(backbone=backbone, weights=weights, epochs=epochs, batch_size=batch_size, lr=lr,
                        lr_ratio=lr_ratio, full=full, device=device, restart=restart, target=target, select=select,
                        size=size, augment=augment, warmup=warmup, init=init)
    report = open_store(store, wait).train_cnnr(config)
    if json_out:
        print_json(report.to_dict())
        return
    console.print(table(
        f"CNN-R trained on {report.n_train} images ({report.n_validation} for validation), {report.device}, "
        f"{'full fine-tuning' if report.full else 'top blocks over cached activations'}, {report.seconds:.0f} s",
        ["epoch", "train loss", "validation loss", "validation F1", "validation N+"],
        [[h["epoch"], h["train_loss"], h["validation_loss"], h.get("validation_f1", ""), h.get("validation_n_plus", "")]
         for h in report.history],
    ))
    console.print(f"kept epoch {report.best_epoch} (validation F1 {report.best_validation_f1:.2f}, "
                  f"loss {report.best_validation_loss:.4f}; chosen by {select}) in {report.model_file}")
