"""Commands that read what a store holds: ``info``, ``runs``, ``sql``, ``compare``, ``report``."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from annot.cli.app import JsonOpt, StoreOpt, app, handle_errors, open_store
from annot.cli.render import console, print_json, table

if TYPE_CHECKING:
    from annot.evaluation.runs import WordChange


@app.command()
@handle_errors
def info(store: StoreOpt, json_out: JsonOpt = False) -> None:
    """Show what a store holds: settings, encoder, word vectors, projection, index and counts."""

    data = open_store(store).info().to_dict()
    if json_out:
        print_json(data)
        return
    console.print(table(f"annot store {store}", ["", ""], [[key, _readable(value)] for key, value in _flat(data)]))


def _flat(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested settings as one row each (``settings.scoring.k``); empty ones left out."""
    rows: list[tuple[str, Any]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows += _flat(value, name + ".")
        elif value not in (None, {}, [], ""):
            rows.append((name, value))
    return rows


def _readable(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(_readable(v)) for v in value[:20]) + (f", ... ({len(value):,} in all)" if len(value) > 20
                                                                   else "")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


@app.command("runs")
@handle_errors
def runs_(store: StoreOpt, json_out: JsonOpt = False) -> None:
    """List the evaluation runs stored in a store."""

    rows = open_store(store).runs()
    if json_out:
        print_json([r.__dict__ for r in rows])
        return
    console.print(table(f"runs in {store}", ["id", "created", "method", "dataset", "P", "R", "F1", "N+", "images"], [
        [r.id, f"{r.created_at:%m-%d %H:%M}", r.method, Path(r.dataset.split(":")[-1]).name, f"{100 * r.precision:.2f}",
         f"{100 * r.recall:.2f}", f"{100 * r.f1:.2f}", r.n_plus, r.n_images]
        for r in rows
    ]))


@app.command()
@handle_errors
def sql(
    statement: Annotated[str, typer.Argument(help="One SQL statement (read-only), e.g. \"SELECT * FROM runs\".")],
    store: StoreOpt,
    csv_out: Annotated[bool, typer.Option("--csv", help="Print CSV on stdout.")] = False,
    timeout: Annotated[float | None, typer.Option(help="Stop the statement after this many seconds.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Run read-only SQL against a store's tables and print the result. The connection is sandboxed: statements
    that read or write other files, load extensions or change settings are refused."""

    columns, rows = open_store(store).sql(statement, timeout)
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

    changes = open_store(store).compare(run_a, run_b)
    gained = sorted((c for c in changes if c.delta > 0), key=lambda c: -c.delta)[:top]
    lost = sorted((c for c in changes if c.delta < 0), key=lambda c: c.delta)[:top]
    if json_out:
        def as_dict(c: WordChange) -> dict[str, object]:
            return {"word": c.word, "f1_a": c.f1_a, "f1_b": c.f1_b, "delta": c.delta, "n_truth": c.n_truth}

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

    size = open_store(store).report(run, out, gallery)
    console.print(f"wrote {out} ({size // 1024} KiB)")
