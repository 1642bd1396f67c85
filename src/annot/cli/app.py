"""The typer app, the options commands share, and the one function that turns flags into settings.

Each command module (``annot.cli.build``, ``.use``, ``.inspect``) registers its commands on ``app``;
``annot.cli.main`` imports them all. A command parses its flags, builds the settings with :func:`build_settings` or
:func:`scoring_flags`, calls one method of :class:`annot.Store`, and renders the result. Every domain error becomes
one line on stderr and a non-zero exit in :func:`handle_errors`; a setting's error names its flag.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

import annot
from annot.cli.render import RichProgress, error_line, warn
from annot.errors import AnnotError
from annot.settings import BuildSettings, ScoringSettings, SettingsError

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="annot",
    help="Automatic image annotation: CNN features + word vectors + CCA, stored in FAISS and DuckDB.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # help paragraphs wrap as written prose, not at the docstring's line breaks
)

DEFAULT = BuildSettings()
KCCA_SCORING = ScoringSettings.defaults_for("kcca")

# the flag of each setting, for error messages
FLAGS = {
    "encoder.name": "--encoder", "encoder.weights": "--weights", "text.words": "--words", "text.view": "--text",
    "text.vocabulary": "--vocabulary", "text.keywords": "--keywords", "text.min_photos": "--min-photos", "projection.kind": "--projection", "projection.n_components": "--components",
    "projection.reg": "--reg", "projection.normalization": "--normalize", "projection.landmarks": "--landmarks",
    "projection.gamma_scale": "--gamma-scale", "projection.text_kernel": "--text-kernel",
    "projection.text_gamma_scale": "--text-gamma-scale", "projection.space": "--space", "index.kind": "--index",
    "index.memory_budget": "--memory-budget", "index.tag_agreement": "--tag-agreement", "scoring.method": "--method",
    "scoring.n_tags": "-n", "scoring.k": "--k", "scoring.temperature": "--temperature",
    "scoring.frequency_power": "--frequency-power", "scoring.depth": "--depth", "scoring.score": "--score",
    "feature_dtype": "--feature-dtype", "batch_size": "--batch-size", "strict": "--strict", "ray": "--ray",
    "timeout": "--timeout", "grid": "--grid", "min_f1": "--min-f1", "scoring.min_confidence": "--min-confidence",
    "search.mode": "--mode", "search.scope": "--scope", "review.order": "--order", "review.n": "-n", "export.format": "--format", "export.naming": "--naming",
    "cnnr.target": "--target", "cnnr.select": "--select", "correction.action": "a correction's action",
}

StoreOpt = Annotated[Path, typer.Option("--store", "-s", help="The store directory.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
WaitOpt = Annotated[bool, typer.Option("--wait", help="If another process is changing the store, wait for it to "
                                       "finish instead of stopping.")]
MethodOpt = Annotated[str | None, typer.Option(
    "--method", "-m",
    help="cca-knn (Eq. 5) or nn (tag transfer) in the CCA space; a baseline on the image features: freq, jec, 2pknn, "
         "2pknn-ml, tagprop, mbrm, svm-dmbrm (see `annot fit`); or cnn-r (see `annot train-cnnr`). Default: the "
         "store's.")]
NOpt = Annotated[int | None, typer.Option("-n", help=f"Tags per image (default: the store's, {DEFAULT.scoring.n_tags}).")]
KOpt = Annotated[int | None, typer.Option("--k", help="CCA-KNN: nearest images taken from each tag's group (default: "
                                          f"the store's; a new store's: {DEFAULT.scoring.k}, or {KCCA_SCORING.k} "
                                          "with kcca).")]
TempOpt = Annotated[float | None, typer.Option(
    "--temperature", help="CCA-KNN: temperature τ of exp(-D/τ) in Eq. 5 (default: the store's; a new store's: "
                          f"{DEFAULT.scoring.temperature}, or {KCCA_SCORING.temperature} with kcca).")]
AlphaOpt = Annotated[float | None, typer.Option(
    "--frequency-power", help="CCA-KNN: divide each word's score by its training frequency^α, 0 for Eq. 5 as "
                              f"printed (default: the store's; a new store's: {DEFAULT.scoring.frequency_power}, or "
                              f"{KCCA_SCORING.frequency_power} with kcca).")]
DepthOpt = Annotated[int | None, typer.Option(
    "--depth", help="Candidate pool: each query's nearest training images that CCA-KNN and nn look at (0: all up to "
                    "20,000 images). Default: the store's.")]
ScoreOpt = Annotated[str | None, typer.Option(
    "--score", help="CCA-KNN word ranking: eq5 (Eq. 5's score), standardized (each word's score in spreads above its "
                    "usual score on the training images; recalls more rare words) or standardized-held-out (above its "
                    "usual score on images the projection was fitted without; a store's own settings only). "
                    "Default: the store's.")]

MinConfidenceOpt = Annotated[str | None, typer.Option(
    "--min-confidence",
    help="Give each image every tag (of its 10 best) whose calibrated confidence reaches this probability, instead "
         "of a fixed number: a number from 0 to 1, or auto for the cut with the best F1 on held-out training images.")]


def fail(message: str, code: int = 1) -> None:
    warn(error_line(message))
    raise typer.Exit(code)


def _flagged(exc: SettingsError) -> str:
    flag = FLAGS.get(exc.setting)
    return f"{flag} {exc.detail}" if flag else str(exc)


def handle_errors(func: F) -> F:
    """Turn every domain error into one line on stderr and a non-zero exit; Ctrl-C into exit 130."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SettingsError as exc:
            fail(_flagged(exc), exc.exit_code)
        except AnnotError as exc:
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            fail("interrupted; nothing stored was lost (a rerun of the same command resumes where this one stopped)", 130)
        except MemoryError:
            fail("out of memory; try a smaller --batch-size, or --feature-dtype float16", 1)
        except OSError as exc:  # a full disk, a file over a size limit, a read-only file system
            where = f"{exc.filename}: " if exc.filename else ""
            fail(f"{where}{exc.strerror or exc}; what was stored before is intact (a rerun finishes the job)", 1)

    return wrapper  # type: ignore[return-value]


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what the library does.")] = False) -> None:
    import warnings

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", module="PIL")  # PIL's warnings (EXIF, decompression bombs) become our own lines


def open_store(store: Path, wait: bool = False) -> Any:
    """The public API's store, with progress on stderr."""

    return annot.open_store(store, progress=RichProgress(), wait=wait)
