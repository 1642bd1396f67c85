"""``annot fit``, ``annot train-cnnr`` (methods that learn) and ``annot add``, ``annot remove``, ``annot refit``
(a store that grows): registered on the same typer app as the other commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from annot.cli.app import JsonOpt, StoreOpt, app, handle_errors


@app.command()
@handle_errors
def fit(
    method: Annotated[str, typer.Argument(help="Baseline: freq, jec, 2pknn, 2pknn-ml, tagprop, mbrm or svm-dmbrm.")],
    store: StoreOpt,
    json_out: JsonOpt = False,
) -> None:
    """Fit a baseline on the store's training images and keep it in the store (hyperparameters chosen on
    held-out training images). tagprop, 2pknn-ml and svm-dmbrm need this before they annotate."""
    from annot.cli.render import RichProgress, console, print_json, table
    from annot.retrieval.baselines.stored import fit_baseline

    report = fit_baseline(store, method, progress=RichProgress())
    if json_out:
        print_json(report.to_dict())
        return
    console.print(table(f"{method} fitted in {report.seconds:.1f} s", ["setting", "value"],
                        [[k, v] for k, v in report.params.items()]))


@app.command()
@handle_errors
def add(
    corpus: Annotated[Path, typer.Argument(help="Tagged images to add (JSON Lines or CSV).")],
    store: StoreOpt,
    strict: Annotated[bool, typer.Option(help="Make unreadable images errors.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Add tagged images to an indexed store with its fitted projection (no refit; see `annot refit`)."""
    from annot.cli.render import RichProgress, console, print_json
    from annot.indexer.grow import add_images

    report = add_images(corpus, store, strict=strict, progress=RichProgress())
    if json_out:
        print_json(report.to_dict())
        return
    console.print(f"added {report.added} images ({report.skipped} already indexed or without usable tags); "
                  f"{report.ntotal} indexed")


@app.command()
@handle_errors
def remove(
    images: Annotated[list[Path], typer.Argument(help="Images to take out: files, directories, or a corpus file (.jsonl/.csv).")],
    store: StoreOpt,
    json_out: JsonOpt = False,
) -> None:
    """Take images out of a store's index; their tags no longer vote (they stay in the database, split 'removed')."""
    from annot.cli.render import console, print_json
    from annot.indexer.corpus import read_corpus
    from annot.indexer.grow import remove_images
    from annot.retrieval.query import expand_inputs

    paths: list[str] = []
    for item in images:
        if item.suffix.lower() in {".jsonl", ".csv", ".json", ".ndjson"}:
            paths.extend(str(e.path) for e in read_corpus(item).entries)
        else:
            paths.extend(str(p.resolve()) for p in expand_inputs([item]))
    report = remove_images(paths, store)
    if json_out:
        print_json(report.to_dict())
        return
    console.print(f"removed {report.removed} images ({report.skipped} were not indexed); {report.ntotal} indexed")


@app.command()
@handle_errors
def refit(store: StoreOpt, json_out: JsonOpt = False) -> None:
    """Re-estimate the projection from the store's accumulated statistics and rebuild its indexes."""
    from annot.cli.render import RichProgress, console, print_json
    from annot.indexer.grow import refit as refit_store

    report = refit_store(store, progress=RichProgress())
    if json_out:
        print_json(report.to_dict())
        return
    console.print(f"refitted; {report.ntotal} images indexed")


@app.command("train-cnnr")
@handle_errors
def train_cnnr(
    corpus: Annotated[Path, typer.Argument(help="Training corpus (JSON Lines or CSV) of the indexed store.")],
    store: StoreOpt,
    backbone: Annotated[str, typer.Option(help="efficientnet-lite0 (packaged), efficientnet-lite2, or alexnet with --weights.")] = "efficientnet-lite0",
    weights: Annotated[Path | None, typer.Option(help="Backbone weights (a state dict); needed for alexnet.")] = None,
    epochs: Annotated[int, typer.Option(help="Most epochs (training stops earlier when validation stops improving).")] = 20,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = 64,
    lr: Annotated[float, typer.Option(help="Learning rate of the new layer; pretrained layers get lr × --lr-ratio.")] = 1e-3,
    lr_ratio: Annotated[float, typer.Option(help="Pretrained layers' rate relative to the new layer's.")] = 0.1,
    full: Annotated[bool | None, typer.Option("--full/--cached", help="Fine-tune every layer from images (default "
                                              "where CUDA is present), or train the top over cached trunk activations.")] = None,
    device: Annotated[str | None, typer.Option(help="torch device (default: cuda when present, else cpu).")] = None,
    restart: Annotated[bool, typer.Option(help="Discard an existing checkpoint instead of resuming from it.")] = False,
    target: Annotated[str, typer.Option(help="Regression target space: whitened word vectors (a Mahalanobis loss; "
                                        "better on Corel-5k's validation images) or raw (the paper's).")] = "whitened",
    select: Annotated[str, typer.Option(help="Keep the epoch with the highest validation F1 (f1) or the lowest "
                                        "validation loss (loss).")] = "f1",
    json_out: JsonOpt = False,
) -> None:
    """Train CNN-R (§3.5): the network regresses the mean word vector of an image's tags. Resumes from the store's
    checkpoint when rerun; then `annot query --method cnn-r` and `--encoder cnnr:STORE` use it."""
    from annot.cli.render import RichProgress, console, print_json, table
    from annot.cnnr.train import CNNRConfig
    from annot.cnnr.train import train_cnnr as train

    config = CNNRConfig(backbone=backbone, weights=weights, epochs=epochs, batch_size=batch_size, lr=lr,
                        lr_ratio=lr_ratio, full=full, device=device, restart=restart, target=target,
                        select=select)
    report = train(corpus, store, config, progress=RichProgress())
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
