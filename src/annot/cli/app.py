"""``annot``: index a tagged image corpus, annotate new images, evaluate, inspect a store."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from annot.errors import AnnotError

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="annot",
    help="Automatic image annotation: CNN features + word vectors + CCA, stored in FAISS and DuckDB.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

StoreOpt = Annotated[Path, typer.Option("--store", "-s", help="The store directory.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
MethodOpt = Annotated[str | None, typer.Option(
    "--method", "-m",
    help="cca-knn (Eq. 5) or nn (tag transfer) in the CCA space; or a baseline on the image features: freq, jec, "
         "2pknn, 2pknn-ml, tagprop, mbrm, svm-dmbrm (see `annot fit`); cnn-r (see `annot train-cnnr`). Default: the store's.")]
NOpt = Annotated[int | None, typer.Option("-n", help="Number of tags per image (default 5).")]
KOpt = Annotated[int | None, typer.Option("--k", help="CCA-KNN: nearest images taken from each tag's group.")]
TempOpt = Annotated[float | None, typer.Option("--temperature", help="CCA-KNN: temperature of exp(-D/τ) in Eq. 5.")]
EncoderOpt = Annotated[
    str, typer.Option(help="Image encoder: efficientnet-lite0-stages (default: Lite0 with 5 pooled stages), efficientnet-lite0, "
                     "efficientnet-lite1(-stages), efficientnet-lite2(-stages), efficientnet-liteN-strips (the head pooled over top, "
                     "middle and bottom bands), vgg16, alexnet, or several joined by +; "
                     "NAME@SIZE feeds a network SIZE-pixel images instead of its own size.")
]
WordsOpt = Annotated[str, typer.Option("--words", help="Word vectors: glove-50, minilm (a sentence encoder: every tag gets a vector) or a word2vec/GloVe/fastText file.")]
VocabularyOpt = Annotated[Path | None, typer.Option(help="Word list that restricts and orders the tags.")]
ProjectionOpt = Annotated[str, typer.Option(help="linear-cca, or kcca (χ² kernel on the image view).")]
KPowerOpt = Annotated[float | None, typer.Option(
    "--k-power", help="CCA-KNN per-tag K: K_w = K · (n_w / median n)^β (0: the same K for every tag). Default: the store's.")]
DepthOpt = Annotated[int | None, typer.Option(
    "--depth", help="Candidate pool: each query's nearest training images that CCA-KNN and nn look at (0: all up to "
                    "20,000 images). Default: the store's.")]
ScoreOpt = Annotated[str | None, typer.Option(
    "--score", help="CCA-KNN word ranking: eq5 (Eq. 5's score), standardized (each word's Eq. 5 score in spreads "
                    "above its usual score on the training images; recalls more rare words) or standardized-held-out "
                    "(above its usual score on images the projection was fitted without; a store's own settings "
                    "only). Default: the store's.")]
AlphaOpt = Annotated[
    float | None,
    typer.Option("--frequency-power", help="CCA-KNN: divide each word's score by its training frequency^α (0: Eq. 5)."),
]


def _fail(message: str, code: int = 1) -> None:
    from annot.cli.render import warn

    warn(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def handle_errors(func: F) -> F:
    """Turn every domain error into one line on stderr and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except AnnotError as exc:
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted; run the same command again to resume", 130)

    return wrapper  # type: ignore[return-value]


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what the library does.")] = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@app.command()
@handle_errors
def index(
    corpus: Annotated[Path, typer.Argument(help="Tagged corpus: JSON Lines or CSV; image paths relative to it.")],
    store: StoreOpt,
    encoder: EncoderOpt = "efficientnet-lite0-stages",
    flip: Annotated[bool, typer.Option(help="Average each image's features with its mirror image's.")] = False,
    crops: Annotated[bool, typer.Option(help="Average each image's features with those of its four corner and centre "
                                        "crops (six network passes per image).")] = False,
    weights: Annotated[Path | None, typer.Option(help="Weights file for the encoder (vgg16/alexnet state dict).")] = None,
    words: WordsOpt = "glove-50",
    text: Annotated[str, typer.Option(help="Text view: w2v (mean tag vector), bv (0/1 tags) or w2v+bv (both).")] = "w2v+bv",
    normalize: Annotated[str, typer.Option(help="Image feature normalisation before CCA: none, l2, power.")] = "none",
    projection: ProjectionOpt = "linear-cca",
    landmarks: Annotated[str, typer.Option(help="KCCA: all (exact), a number (Nyström), or auto (exact up to 5,000 images).")] = "auto",
    gamma_scale: Annotated[float, typer.Option(help="KCCA: χ² kernel width γ as a multiple of 1 / mean χ² distance.")] = 1.0,
    text_kernel: Annotated[str, typer.Option(help="KCCA: kernel on the text view, linear or rbf (Gaussian; lifts the "
                                             "cap of q dimensions, e.g. 50 for GloVe-50 W2V).")] = "linear",
    text_gamma_scale: Annotated[float, typer.Option(help="KCCA with --text-kernel rbf: γ_y as a multiple of 1 / mean "
                                                  "squared distance between training texts.")] = 1.0,
    space: Annotated[str, typer.Option(help="What a query is compared with: the training images' image projections U "
                                       "(image), their tags' projections V (text, the paper's wording) or both.")] = "image",
    components: Annotated[int | None, typer.Option("--components", help="CCA dimensions (default min(p, q)).")] = None,
    reg: Annotated[float, typer.Option(help="CCA ridge, relative to each view's mean variance.")] = 0.3,
    vocabulary: VocabularyOpt = None,
    k: Annotated[int, typer.Option("--k", help="Default CCA-KNN neighbours per tag group.")] = 5,
    temperature: Annotated[float, typer.Option(help="Default CCA-KNN temperature.")] = 0.1,
    frequency_power: Annotated[float, typer.Option(help="Default CCA-KNN word-frequency exponent α.")] = 0.375,
    depth: Annotated[int, typer.Option(help="Default candidate pool per query (0: all images up to 20,000).")] = 0,
    k_power: Annotated[float, typer.Option("--k-power", help="Default per-tag K exponent β (0: the same K for every tag).")] = 0.0,
    score: Annotated[str, typer.Option(help="Default CCA-KNN word ranking: eq5; standardized (each word's Eq. 5 score "
                                       "against its leave-one-out scores on the training images, computed here); or "
                                       "standardized-held-out (against its scores on 5 hold-outs of a ninth of the "
                                       "images, the projection fitted again without each: 5 more fits; the most "
                                       "words recalled).")] = "eq5",
    batch_size: Annotated[int, typer.Option(help="Images per encoder batch.")] = 32,
    strict: Annotated[bool, typer.Option(help="Make unreadable images and tags without word vectors errors.")] = False,
    index_kind: Annotated[str, typer.Option("--index", help="Image index: auto (exact Flat up to 50,000 images, else IVF "
                                            "sized to --memory-budget) or a FAISS index_factory string (IVF1024,Flat, HNSW32, IVF1024,PQ32).")] = "auto",
    memory_budget: Annotated[str, typer.Option(help="Memory the image index may use, for --index auto (e.g. 4GB).")] = "4GB",
    tag_agreement: Annotated[float, typer.Option(help="Approximate index: widen its search until CCA-KNN's tags from it "
                                                 "match exact search on this share of words (0: speed first, recall@10 >= 0.95).")] = 0.9,
    feature_dtype: Annotated[str, typer.Option(help="Cached feature precision: float32, or float16 (half the disk).")] = "float32",
    ray: Annotated[str | None, typer.Option(help="Run extraction and the statistics pass as tasks on this Ray cluster "
                                            "(ADDRESS of `ray start --head`, or auto).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Import a tagged corpus, extract features (resumable), fit CCA and write the indexes."""
    from annot.cli.render import RichProgress, console, print_json, warn
    from annot.indexer import IndexConfig, build_index

    config = IndexConfig(
        encoder=encoder, weights=weights, flip=flip, crops=crops, words=words, text=text, normalization=normalize, projection=projection,
        landmarks=landmarks, gamma_scale=gamma_scale, text_kernel=text_kernel, text_gamma_scale=text_gamma_scale, space=space, n_components=components, reg_x=reg, reg_y=reg,
        vocabulary=vocabulary, strict=strict, batch_size=batch_size, k=k, temperature=temperature,
        frequency_power=frequency_power, depth=depth, k_power=k_power, score=score, index=index_kind, memory_budget=memory_budget, feature_dtype=feature_dtype,
        tag_agreement=tag_agreement,
        ray=ray,
    )
    report = build_index(corpus, store, config, RichProgress())
    if json_out:
        print_json({
            "store": str(report.store), "images": report.n_images, "indexed": report.n_indexed, "words": report.n_words,
            "extracted": report.extracted, "cached": report.cached, "unreadable": report.unreadable,
            "untagged": report.untagged, "missing_word_vectors": report.missing_word_vectors,
            "tags_outside_vocabulary": report.dropped_tags, "seconds": report.seconds,
        })
        return
    console.print(
        f"indexed [bold]{report.n_indexed}[/] of {report.n_images} images, {report.n_words} words into {report.store} "
        f"({report.extracted} features extracted, {report.cached} cached)"
    )
    top = ", ".join(f"{c:.3f}" for c in report.canonical_correlations[:5])
    console.print(f"canonical correlations: {top}, ...  stage seconds: {report.seconds}")
    if report.unreadable:
        first = next(iter(report.unreadable))
        warn(f"skipped {len(report.unreadable)} unreadable images, e.g. {first}: {report.unreadable[first]}")
    if report.untagged:
        warn(f"left out {report.untagged} images with no usable tags")
    if report.missing_word_vectors:
        warn(f"{len(report.missing_word_vectors)} tags have no word vector (kept for voting, not in the text view): "
                     f"{', '.join(report.missing_word_vectors[:10])}")
    if report.dropped_tags:
        warn(f"dropped {sum(report.dropped_tags.values())} tags outside the vocabulary")


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
    k_power: KPowerOpt = None,
    score: ScoreOpt = None,
    explain: Annotated[bool, typer.Option(help="Show, per tag, the training images that voted and their weights.")] = False,
    open_vocabulary: Annotated[bool, typer.Option(
        "--open-vocabulary", help="cnn-r: answer with the nearest words of the whole word-vector file, not only the vocabulary.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Annotate new images with the store's model."""
    from annot.cli.render import RichProgress, console, print_json, warn
    from annot.retrieval.model import AnnotationModel
    from annot.retrieval.query import annotate_files

    model = AnnotationModel.open(store)
    try:
        result = annotate_files(model, images, method=method, n_tags=n, k=k, temperature=temperature,
                                frequency_power=frequency_power, depth=depth, k_power=k_power, score=score, explain=explain,
                                open_vocabulary=open_vocabulary, progress=RichProgress())
    finally:
        model.close()
    if json_out:
        print_json({"annotations": [a.to_dict(explain) for a in result.annotations], "failed": result.failed})
    else:
        for a in result.annotations:
            console.print(f"[bold]{a.image}[/]: " + "  ".join(f"{t.tag} ({t.score:.3g})" for t in a.tags), highlight=False)
            if explain:
                for t in a.tags:
                    voters = ", ".join(f"{Path(v.path).name} (D={v.distance:.3f}, w={v.weight:.3g})" for v in t.evidence[:8])
                    more = f" +{len(t.evidence) - 8} more" if len(t.evidence) > 8 else ""
                    console.print(f"    {t.tag}: {voters}{more}", highlight=False)
    if result.failed:
        for path, why in result.failed.items():
            warn(f"[bold red]error:[/] {path}: {why}")
        raise typer.Exit(1)


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
    k_power: KPowerOpt = None,
    score: ScoreOpt = None,
    split: Annotated[str, typer.Option(help="Split name recorded for these images.")] = "test",
    json_out: JsonOpt = False,
) -> None:
    """Annotate a labelled set and report per-word P / R / F1 / N+ (recorded as a run in the store)."""
    from annot.cli.render import RichProgress, console, print_json, table, warn
    from annot.evaluation.evaluate import evaluate

    result = evaluate(store, corpus, method=method, n_tags=n, k=k, temperature=temperature,
                      frequency_power=frequency_power, depth=depth, k_power=k_power, score=score, split=split,
                      progress=RichProgress())
    if json_out:
        print_json(result.to_dict())
        return
    s = result.summary.as_percent()
    console.print(table(
        f"run {result.run_id}: {result.method} on {corpus.name}",
        ["P", "R", "F1", "N+", "words", "images"],
        [[s["P"], s["R"], s["F1"], s["N+"], s["words"], s["images"]]],
    ))
    if result.summary.n_words_without_truth:
        warn(f"{result.summary.n_words_without_truth} vocabulary words have no test truth and are left out of P and R")
    if result.unreadable:
        warn(f"skipped {len(result.unreadable)} unreadable images")


@app.command()
@handle_errors
def info(store: StoreOpt, json_out: JsonOpt = False) -> None:
    """Show what a store holds: encoder, word vectors, projection, index and counts."""
    from annot.cli.render import console, print_json, table
    from annot.schema.queries import count_rows
    from annot.store import Store

    with Store.open(store, read_only=True) as s:
        manifest = s.manifest()
        counts = count_rows(s.db)
        size = sum(f.stat().st_size for f in s.root.rglob("*") if f.is_file())
    data = {
        "store": str(store), "size_bytes": size, "encoder": manifest["encoder"], "words": manifest["words"],
        "text": manifest["text"], "projection": {k: v for k, v in manifest["projection"].items() if k != "canonical_correlations"},
        "canonical_correlations_top5": manifest["projection"]["canonical_correlations"][:5],
        "index": manifest["index"], "vocabulary_size": len(manifest["vocabulary"]["words"]),
        "missing_word_vectors": manifest["vocabulary"]["missing_word_vectors"], "annotation": manifest["annotation"],
        "counts": counts, "updated_at": manifest["updated_at"],
        "cnnr": manifest.get("cnnr"),
        "fitted_methods": {name: {"fit_seconds": e["fit_seconds"], "fitted_at": e["fitted_at"], **e["params"]}
                           for name, e in manifest.get("methods", {}).items()},
    }
    if json_out:
        print_json(data)
        return
    rows = [[key, value] for key, value in data.items()]
    console.print(table(f"annot store {store}", ["", ""], rows))


@app.command()
@handle_errors
def tune(
    corpus: Annotated[Path, typer.Argument(help="The training corpus (JSON Lines or CSV); only it is used to choose.")],
    store: StoreOpt,
    encoder: EncoderOpt = "efficientnet-lite0-stages",
    words: WordsOpt = "glove-50",
    projection: ProjectionOpt = "linear-cca",
    text_kernel: Annotated[str, typer.Option(help="KCCA: kernel on the text view, linear or rbf (kept, not searched).")] = "linear",
    vocabulary: VocabularyOpt = None,
    grid: Annotated[str, typer.Option(help="Candidate grid: quick (48 candidates; 192 for kcca: two ridges, two kernel widths) or full (612, with standardised CCA-KNN; 1,224 for kcca).")] = "quick",
    folds: Annotated[int, typer.Option(help="Cross-validation folds (with --cv cover: hold-outs).")] = 5,
    cv: Annotated[str, typer.Option(help="random: k-fold; cover: hold-outs that hold every word at least once, as "
                                         "the benchmarks' test splits do (for comparing with published numbers).")] = "random",
    holdout: Annotated[float, typer.Option(help="With --cv cover: each hold-out's size as a fraction of the corpus "
                                                "(Corel-5k's test split: 499 / 4,500 = 0.11).")] = 0.1,
    min_f1: Annotated[float | None, typer.Option("--min-f1", help="Choose the candidate that recalls the most words "
                                                 "(CV N+) among those with CV F1 at least this, in percent (default: "
                                                 "the highest CV F1).")] = None,
    min_n_plus: Annotated[float | None, typer.Option("--min-n-plus", help="With --min-f1: choose the candidate most "
                                                     "likely to reach both on a new hold-out (its CV means against "
                                                     "how much the folds vary), not the one at the F1 floor.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Choose text view, normalisation, ridge, K, τ and α by cross-validation on the training corpus only,
    record every candidate as a run, and rebuild the store with the best."""
    from annot.cli.render import RichProgress, console, print_json, table
    from annot.evaluation.tune import tune_store
    from annot.indexer import IndexConfig

    base = IndexConfig(encoder=encoder, words=words, projection=projection, text_kernel=text_kernel, vocabulary=vocabulary)
    report = tune_store(corpus, store, base, grid_name=grid, folds=folds, design=cv, holdout=holdout,
                        min_f1=None if min_f1 is None else min_f1 / 100, min_n_plus=min_n_plus,
                        progress=RichProgress())
    if json_out:
        print_json({"chosen": report.chosen.__dict__, "runs": report.run_ids, "seconds": round(report.seconds, 1),
                    "standard_error": report.standard_error, "tied": [r.candidate.__dict__ for r in report.tied],
                    **({} if report.odds is None else {"target_odds": report.odds}),
                    "top": [{"candidate": r.candidate.__dict__, "f1": r.f1, "n_plus": r.n_plus} for r in report.results[:10]]})
        return
    how = f"{folds}-fold cross-validation" if cv == "random" else f"cross-validation on {folds} covering hold-outs"
    console.print(table(f"{how} on {corpus.name} (best 10 of {len(report.results)})",
                        ["F1", "P", "R", "N+", "method", "score", "text", "norm", "ridge", "K", "τ", "α"], [
        [f"{100 * r.f1:.2f}", f"{100 * r.precision:.2f}", f"{100 * r.recall:.2f}", f"{r.n_plus:.1f}", r.candidate.method,
         r.candidate.score if r.candidate.method == "cca-knn" else "", r.candidate.text, r.candidate.normalization,
         r.candidate.reg, r.candidate.k, r.candidate.temperature, r.candidate.frequency_power]
        for r in report.results[:10]
    ]))
    c, mine = report.chosen, report.chosen_result
    console.print(f"chosen: {c.method}{' (' + c.score + ')' if c.method == 'cca-knn' else ''}, text {c.text}, "
                  f"{c.normalization}, ridge {c.reg}, K {c.k}, τ {c.temperature}, α {c.frequency_power}: "
                  f"CV F1 {100 * mine.f1:.2f}, N+ {mine.n_plus:.1f}", highlight=False)
    console.print(f"its CV F1 has a standard error of {100 * report.standard_error:.2f} over the folds; "
                  f"{len(report.tied)} other candidate(s) are within one paired standard error of it or above it, "
                  "and cross-validation cannot rank them", highlight=False)
    if report.odds is not None:
        console.print(f"estimated chance that a new hold-out like the folds reaches F1 {min_f1:g} and N+ "
                      f"{min_n_plus:g}: {100 * report.odds:.0f}% (before the optimism of choosing the best of many)",
                      highlight=False)
    console.print(f"store rebuilt with the best settings; candidates recorded as runs {report.run_ids[0]}-{report.run_ids[-1]}")


@app.command("runs")
@handle_errors
def runs_(store: StoreOpt, json_out: JsonOpt = False) -> None:
    """List the evaluation runs stored in a store."""
    from annot.cli.render import console, print_json, table
    from annot.evaluation.runs import list_runs
    from annot.store import Store

    with Store.open(store, read_only=True) as s:
        rows = list_runs(s)
    if json_out:
        print_json([r.__dict__ for r in rows])
        return
    console.print(table(f"runs in {store}", ["id", "created", "method", "dataset", "P", "R", "F1", "N+", "images"], [
        [r.id, f"{r.created_at:%m-%d %H:%M}", r.method, Path(r.dataset.split(":")[-1]).name, f"{100 * r.precision:.2f}", f"{100 * r.recall:.2f}",
         f"{100 * r.f1:.2f}", r.n_plus, r.n_images]
        for r in rows
    ]))


@app.command()
@handle_errors
def sql(
    statement: Annotated[str, typer.Argument(help="One SQL statement (read-only), e.g. \"SELECT * FROM runs\".")],
    store: StoreOpt,
    csv_out: Annotated[bool, typer.Option("--csv", help="Print CSV on stdout.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Run read-only SQL against a store's database and print the result."""
    import csv

    from annot.cli.render import console, print_json, table
    from annot.evaluation.runs import read_only_sql

    columns, rows = read_only_sql(store, statement)
    if json_out:
        print_json([dict(zip(columns, r, strict=True)) for r in rows])
    elif csv_out:
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        console.print(table(None, columns, [list(r) for r in rows]))


@app.command()
@handle_errors
def compare(
    run_a: Annotated[int, typer.Argument(help="The run to compare from.")],
    run_b: Annotated[int, typer.Argument(help="The run to compare to.")],
    store: StoreOpt,
    top: Annotated[int, typer.Option(help="How many words gained and lost to show.")] = 10,
    json_out: JsonOpt = False,
) -> None:
    """Show the words whose F1 gained and lost most between two runs."""
    from annot.cli.render import console, print_json, table
    from annot.evaluation.runs import compare_runs
    from annot.store import Store

    with Store.open(store, read_only=True) as s:
        changes = compare_runs(s, run_a, run_b)
    gained = sorted((c for c in changes if c.delta > 0), key=lambda c: -c.delta)[:top]
    lost = sorted((c for c in changes if c.delta < 0), key=lambda c: c.delta)[:top]
    if json_out:
        as_dict = lambda c: {"word": c.word, "f1_a": c.f1_a, "f1_b": c.f1_b, "delta": c.delta, "n_truth": c.n_truth}
        print_json({"gained": [as_dict(c) for c in gained], "lost": [as_dict(c) for c in lost],
                    "unchanged": sum(1 for c in changes if c.delta == 0)})
        return
    for title, group in ((f"gained in run {run_b}", gained), (f"lost in run {run_b}", lost)):
        console.print(table(title, ["word", f"F1 run {run_a}", f"F1 run {run_b}", "change", "in truth"], [
            [c.word, f"{100 * c.f1_a:.1f}", f"{100 * c.f1_b:.1f}", f"{100 * c.delta:+.1f}", c.n_truth] for c in group
        ]))


@app.command()
@handle_errors
def report(
    run: Annotated[int, typer.Argument(help="The run id (see annot runs).")],
    store: StoreOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write.")] = Path("report.html"),
    gallery: Annotated[int, typer.Option(help="How many test images to show.")] = 40,
) -> None:
    """Write one self-contained HTML page for a run: summary, per-word charts and an image gallery."""
    from annot.cli.render import console
    from annot.evaluation.report import build_report
    from annot.store import atomic_write

    page = build_report(store, run, gallery).encode()
    atomic_write(out, lambda fh: fh.write(page))
    console.print(f"wrote {out} ({len(page) // 1024} KiB)")


def main() -> None:
    app()


from annot.cli import more  # noqa: F401  (registers fit, train-cnnr, add, remove, refit on `app`)

if __name__ == "__main__":
    main()
