"""``annot report``: one self-contained HTML page for a run (no network at view time).

The page holds the summary beside the published numbers, a per-word F1 chart ordered by training frequency, precision
against recall per word, the reliability diagram of the tags' confidence (with its expected calibration error), and a
gallery of test images with the predicted tags (right ones marked) against the truth.
Charts are inline SVG and thumbnails inline JPEG, so the file can be mailed or archived on its own.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from annot.errors import AnnotError, NotFound
from annot.evaluation.published import published_for
from annot.evaluation.runs import list_runs
from annot.features.images import thumbnail_jpeg
from annot.fitting.calibration import reliability
from annot.schema import image_tags, images, predictions, tags, word_metrics
from annot.store import StoreDir

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}tr.ours{background:#eef6ff;font-weight:600}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:12px}
.card{border:1px solid #ddd;border-radius:6px;padding:6px}.card img{width:100%;height:auto;display:block}
.tag{display:inline-block;margin:2px;padding:0 5px;border-radius:3px;font-size:12px}
.hit{background:#c8f0c8}.miss{background:#f6c6c6}.truth{background:#e4e4e4}
"""


@dataclass(frozen=True)
class WordRow:
    word: str
    train_frequency: int
    precision: float
    recall: float | None
    f1: float
    n_truth: int


def _thumbnail(path: str, upright: bool) -> str:
    data = thumbnail_jpeg(path, upright=upright) if path else None
    return "" if data is None else "data:image/jpeg;base64," + base64.b64encode(data).decode()


def _f1_chart(rows: list[WordRow], width: int = 1100, height: int = 220) -> str:
    ordered = sorted(rows, key=lambda r: (-r.train_frequency, r.word))
    bar = width / max(1, len(ordered))
    bars = "".join(
        f'<rect class="bar" x="{i * bar:.2f}" y="{height - r.f1 * height:.2f}" width="{max(bar - 0.5, 0.5):.2f}" '
        f'height="{r.f1 * height:.2f}" fill="#3b7dd8"><title>{html.escape(r.word)}: F1 {100 * r.f1:.1f}, '
        f"{r.train_frequency} training images</title></rect>"
        for i, r in enumerate(ordered)
    )
    axis = f'<line x1="0" y1="{height}" x2="{width}" y2="{height}" stroke="#888"/>' + "".join(
        f'<line x1="0" y1="{height - v * height:.1f}" x2="{width}" y2="{height - v * height:.1f}" stroke="#ddd"/>'
        f'<text x="2" y="{height - v * height + 11:.1f}" font-size="10" fill="#666">F1 {v:.2f}</text>'
        for v in (0.25, 0.5, 0.75, 1.0)
    )
    return (f'<svg id="f1-chart" width="{width}" height="{height + 20}" role="img" aria-label="per-word F1">'
            f'{bars}{axis}<text x="0" y="{height + 15}" font-size="11">most frequent word</text>'
            f'<text x="{width}" y="{height + 15}" font-size="11" text-anchor="end">least frequent</text></svg>')


def _pr_chart(rows: list[WordRow], size: int = 360) -> str:
    points = "".join(
        f'<circle class="point" cx="{30 + r.recall * (size - 40):.1f}" cy="{size - 30 - r.precision * (size - 40):.1f}" '
        f'r="{2 + math.log1p(r.train_frequency) / 2:.1f}" fill="#d8663b" fill-opacity="0.55">'
        f"<title>{html.escape(r.word)}: P {100 * r.precision:.0f}, R {100 * r.recall:.0f}</title></circle>"
        for r in rows if r.recall is not None
    )
    ticks = "".join(
        f'<text x="{30 + v * (size - 40):.1f}" y="{size - 18}" font-size="10" text-anchor="middle">{v:g}</text>'
        f'<text x="26" y="{size - 27 - v * (size - 40):.1f}" font-size="10" text-anchor="end">{v:g}</text>'
        for v in (0, 0.5, 1)
    )
    frame = ticks + (f'<line x1="30" y1="{size - 30}" x2="{size - 10}" y2="{size - 30}" stroke="#888"/>'
             f'<line x1="30" y1="10" x2="30" y2="{size - 30}" stroke="#888"/>'
             f'<text x="{size / 2}" y="{size - 4}" font-size="12" text-anchor="middle">recall</text>'
             f'<text x="10" y="{size / 2}" font-size="12" transform="rotate(-90 10 {size / 2})" text-anchor="middle">precision</text>')
    return f'<svg id="pr-chart" width="{size}" height="{size}" role="img" aria-label="precision against recall">{frame}{points}</svg>'


def run_reliability(store: StoreDir, run_id: int) -> dict[str, Any] | None:
    """How well the confidence of a run's predicted tags matched how often they were right: the expected calibration
    error and the reliability diagram's bins (None for a run recorded without confidence)."""
    with store.db.connect() as conn:
        rows = conn.execute(select(predictions.c.image_id, predictions.c.tag_id, predictions.c.confidence)
                            .where(predictions.c.run_id == run_id, predictions.c.confidence.is_not(None))).all()
        if not rows:
            return None
        truth = set(conn.execute(select(image_tags.c.image_id, image_tags.c.tag_id).where(
            image_tags.c.image_id.in_(sorted({i for i, _, _ in rows})))).tuples().all())
    confidence = np.array([c for _, _, c in rows], np.float64)
    right = np.array([(i, t) in truth for i, t, _ in rows], bool)
    return reliability(confidence, right)


def _reliability_chart(measured: dict[str, Any], size: int = 320) -> str:
    """Accuracy against confidence per bin (bars, width by share of predictions) beside the diagonal."""
    inner = size - 40
    bars = "".join(
        f'<rect class="bin" x="{30 + b["low"] * inner:.1f}" y="{size - 30 - b["accuracy"] * inner:.1f}" '
        f'width="{(b["high"] - b["low"]) * inner - 2:.1f}" height="{b["accuracy"] * inner:.1f}" fill="#3b7dd8" '
        f'fill-opacity="{0.25 + 0.75 * min(1.0, 5 * b["n"] / measured["n"]):.2f}">'
        f'<title>confidence {b["low"]:.1f}-{b["high"]:.1f}: {b["n"]} tags, right {100 * b["accuracy"]:.0f}% '
        f'(mean confidence {100 * b["confidence"]:.0f}%)</title></rect>'
        for b in measured["bins"])
    frame = (f'<line x1="30" y1="{size - 30}" x2="{size - 10}" y2="10" stroke="#d8663b" stroke-dasharray="4"/>'
             f'<line x1="30" y1="{size - 30}" x2="{size - 10}" y2="{size - 30}" stroke="#888"/>'
             f'<line x1="30" y1="10" x2="30" y2="{size - 30}" stroke="#888"/>'
             f'<text x="{size / 2}" y="{size - 8}" font-size="12" text-anchor="middle">confidence</text>'
             f'<text x="12" y="{size / 2}" font-size="12" transform="rotate(-90 12 {size / 2})" '
             f'text-anchor="middle">share right</text>')
    return (f'<svg id="reliability-chart" width="{size}" height="{size}" role="img" aria-label="reliability diagram">'
            f"{frame}{bars}</svg>")


def build_report(store_root: Path, run_id: int, gallery: int = 40) -> str:
    """The HTML page for run ``run_id`` of the store."""
    with StoreDir.open(store_root) as store:
        upright = store.manifest().encoder.orientation == "exif"
        run = next((r for r in list_runs(store) if r.id == run_id), None)
        if run is None:
            raise NotFound(f"{store_root}: no run {run_id} (see `annot runs`)")
        with store.db.connect() as conn:
            word_of = {i: w for i, w in conn.execute(select(tags.c.id, tags.c.word))}
            metrics = conn.execute(select(word_metrics).where(word_metrics.c.run_id == run_id)).mappings().all()
            if not metrics:
                raise AnnotError(f"{store_root}: run {run_id} has no per-word metrics (a cross-validation run?)")
            frequency: dict[int, int] = {}
            for t, _ in conn.execute(select(image_tags.c.tag_id, image_tags.c.image_id).join(
                    images, images.c.id == image_tags.c.image_id).where(images.c.split == "train")):
                frequency[t] = frequency.get(t, 0) + 1
            predicted = conn.execute(select(predictions.c.image_id, predictions.c.rank, predictions.c.tag_id)
                                     .where(predictions.c.run_id == run_id).order_by(predictions.c.image_id, predictions.c.rank)).all()
            image_ids = sorted({i for i, _, _ in predicted})[:gallery]
        measured = run_reliability(store, run_id)
        with store.db.connect() as conn:
            paths = dict(conn.execute(select(images.c.id, images.c.path).where(images.c.id.in_(image_ids))).all())
            truth: dict[int, set[int]] = {}
            for i, t in conn.execute(select(image_tags.c.image_id, image_tags.c.tag_id).where(image_tags.c.image_id.in_(image_ids))):
                truth.setdefault(i, set()).add(t)
    rows = [WordRow(word_of[m["tag_id"]], frequency.get(m["tag_id"], 0), m["precision"], m["recall"], m["f1"], m["n_truth"])
            for m in metrics]
    dataset, published = published_for(run.dataset if run.dataset else "")
    summary_rows = "".join(f"<tr><td>{html.escape(name)}</td><td>{p}</td><td>{r}</td><td>{f}</td><td>{n}</td></tr>"
                           for name, (p, r, f, n) in published.items())
    summary_rows += (f'<tr class="ours"><td>this run: {html.escape(run.method)}</td><td>{100 * run.precision:.1f}</td>'
                     f"<td>{100 * run.recall:.1f}</td><td>{100 * run.f1:.1f}</td><td>{run.n_plus}</td></tr>")
    cards = []
    for image_id in image_ids:
        mine = [t for i, _, t in predicted if i == image_id]
        true = truth.get(image_id, set())
        chips = "".join(f'<span class="tag {"hit" if t in true else "miss"}">{"✓" if t in true else "✗"} '
                        f"{html.escape(word_of[t])}</span>" for t in mine)
        truth_chips = "".join(f'<span class="tag truth">{html.escape(word_of[t])}</span>' for t in sorted(true, key=lambda t: word_of[t]))
        src = _thumbnail(paths.get(image_id, ""), upright)
        image_tag = f'<img src="{src}" alt="{html.escape(Path(paths.get(image_id, "")).name)}">' if src else "<p>(image missing)</p>"
        cards.append(f'<div class="card">{image_tag}<div>{chips}</div><div>truth: {truth_chips}</div></div>')
    params = ", ".join(f"{k}={v}" for k, v in run.params.items())
    calibration = "" if measured is None else (
        f'<h2>Confidence against how often a tag was right (expected calibration error <span id="ece">'
        f'{100 * measured["ece"]:.1f}</span> points over {measured["n"]:,} tags)</h2>{_reliability_chart(measured)}')
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>annot run {run_id}</title>
<style>{_CSS}</style></head><body>
<h1>annot run {run_id}: {html.escape(run.method)} on {html.escape(Path(run.dataset).name)}</h1>
<p>{run.n_images} images, {len(rows)} words; {html.escape(params)}; {run.created_at:%Y-%m-%d %H:%M} UTC</p>
<h2>Summary{" beside the published " + dataset + " numbers" if dataset else ""}</h2>
<table id="summary"><tr><th>method</th><th>P</th><th>R</th><th>F1</th><th>N+</th></tr>{summary_rows}</table>
<h2>F1 per word, most frequent training word first</h2>{_f1_chart(rows)}
<h2>Precision against recall, per word (size: training frequency)</h2>{_pr_chart(rows)}
{calibration}
<h2>Test images: predicted tags (✓ right, ✗ wrong) and the truth</h2>
<div class="gallery" id="gallery">{"".join(cards)}</div>
</body></html>"""
