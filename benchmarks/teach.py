"""The teaching curve on Corel-5k: how much each correction teaches, in the review queue's order and at random.

The truth stands in for the person. A store is indexed on half of the training images (a fixed random half, with
`annot index`'s own settings); the other half is the photo library (`annot annotate`). Photos are then corrected
(their shown tags confirmed where right and rejected where wrong, their missing true tags added) in the order of
the review queue (`annot review`, asked again at each checkpoint) and in a random order, and after 0, 50, 100, 300
and 1,000 corrected photos the library is re-scored (`annot annotate`) and measured: F1 / N+ on the test split
(`annot eval`) and on the library's photos not corrected yet (their shown tags against their truth).

Then a word the store has never seen: a store indexed on the same half with ``--word`` left out of its vocabulary;
the word is added by corrections (`annot correct --add WORD`) to 5, 10 and 20 library photos that show it, and the
word's recall and precision on the test split are measured after each.

    python benchmarks/teach.py [--data ../shared/data/corel5k] [--word tiger]

Writes benchmarks/results/teach.{json,md} and docs/teaching-curve.svg.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
from common import write_results

import annot
from annot.library.corrections import Correction
from annot.metrics import per_word_metrics, summarize
from annot.settings import build_settings

WORK = Path("/tmp/annot-teach")
CHECKPOINTS = (0, 50, 100, 300, 1000)
TAUGHT = (5, 10, 20)


def halves(data: Path, seed: int = 0) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    entries = [json.loads(line) for line in (data / "train.jsonl").read_text().splitlines() if line.strip()]
    for e in entries:
        e["image"] = str((data / str(e["image"])).resolve())
    order = np.random.default_rng(seed).permutation(len(entries))
    half = len(entries) // 2
    return [entries[i] for i in order[:half]], [entries[i] for i in order[half:]]


def base_store(name: str, train: list[dict[str, object]], library: list[dict[str, object]], vocabulary: Path,
               data: Path) -> Path:
    """A store indexed on ``train``, with ``library`` annotated and the test split's features extracted."""
    store = WORK / f"{name}.annot"
    shutil.rmtree(store, ignore_errors=True)
    corpus = WORK / f"{name}-train.jsonl"
    corpus.write_text("".join(json.dumps(e) + "\n" for e in train))
    photos = WORK / "library.txt"
    photos.write_text("".join(f"{e['image']}\n" for e in library))
    started = time.perf_counter()
    api = annot.Store(store)
    api.build(corpus, build_settings(vocabulary=vocabulary))
    api.annotate([photos])
    api.evaluate(data / "test.jsonl", record=False)
    api.close()
    print(f"{name}: indexed and annotated in {time.perf_counter() - started:.0f} s")
    return store


def library_quality(api: annot.Store, truth: dict[str, set[str]], corrected: set[int]) -> dict[str, float | int]:
    """P / R / F1 / N+ of the shown tags of the library photos not corrected yet, over the store's vocabulary."""
    from sqlalchemy import select

    from annot.schema import images, photo_files

    with api.model().store.db.connect() as conn:
        ids = dict(conn.execute(select(images.c.path, images.c.id).join(photo_files, photo_files.c.image_id == images.c.id)
                                .where(photo_files.c.state == "annotated")).all())
    paths = [p for p in truth if p in ids and ids[p] not in corrected]
    shown = api.photo_tags([ids[p] for p in paths])
    words = {w: j for j, w in enumerate(api.model().vocabulary)}
    T = np.zeros((len(paths), len(words)), bool)
    P = np.zeros_like(T)
    for row, p in enumerate(paths):
        T[row, [words[w] for w in truth[p] if w in words]] = True
        P[row, [words[t.tag] for t in shown[ids[p]] if t.tag in words]] = True
    return summarize(per_word_metrics(T, P), len(paths)).as_percent()


def corrections_for(api: annot.Store, chosen: list[int], truth_by_id: dict[int, set[str]]) -> list[Correction]:
    out = []
    for image_id, shown in api.photo_tags(chosen).items():
        tags = {t.tag for t in shown}
        truth = truth_by_id[image_id]
        out += [Correction(image_id, t, "confirm" if t in truth else "reject") for t in sorted(tags)]
        out += [Correction(image_id, t, "add") for t in sorted(truth - tags)]
    return out


def curve(base: Path, order: str, truth: dict[str, set[str]], data: Path, seed: int = 1) -> list[dict[str, object]]:
    store = WORK / f"curve-{order}.annot"
    shutil.rmtree(store, ignore_errors=True)
    shutil.copytree(base, store)
    api = annot.open_store(store)
    from sqlalchemy import select

    from annot.schema import images

    with api.model().store.db.connect() as conn:
        by_path = dict(conn.execute(select(images.c.path, images.c.id).where(images.c.path.in_(list(truth)))).all())
    truth_by_id = {int(by_path[p]): t for p, t in truth.items() if p in by_path}
    shuffled = [int(i) for i in np.random.default_rng(seed).permutation(sorted(truth_by_id))]
    corrected: set[int] = set()
    rows = []
    for target in CHECKPOINTS:
        need = target - len(corrected)
        if need > 0:
            if order == "queue":
                chosen = [item.id for item in api.review(need)]
            else:
                chosen = [i for i in shuffled if i not in corrected][:need]
            started = time.perf_counter()
            api.correct(corrections_for(api, chosen, truth_by_id), source="benchmark")
            corrected.update(chosen)
            rescored = api.annotate()
            print(f"{order} {target}: corrected and re-scored in {time.perf_counter() - started:.1f} s "
                  f"({rescored.retagged} photos' tags changed)")
        test = api.evaluate(data / "test.jsonl", record=False).summary.as_percent()
        rows.append({"order": order, "corrected": len(corrected), "test": test,
                     "library": library_quality(api, truth, corrected)})
    api.close()
    return rows


def teach_word(data: Path, train: list[dict[str, object]], library: list[dict[str, object]], word: str
               ) -> list[dict[str, object]]:
    vocabulary = WORK / "vocabulary-without.txt"
    vocabulary.write_text("".join(w + "\n" for w in (data / "vocabulary.txt").read_text().split() if w != word))
    base = base_store("without-word", train, library, vocabulary, data)
    showing = [str(e["image"]) for e in library if word in e["tags"]]  # type: ignore[operator]
    rows = []
    api = annot.open_store(base)
    taught = 0
    for n in (0, *TAUGHT):
        n = min(n, len(showing))
        if n > taught:
            api.correct([Correction(p, word, "add") for p in showing[taught:n]], source="benchmark")
            taught = n
        result = api.evaluate(data / "test.jsonl", record=False)
        if word in result.words:
            j = result.words.index(word)
            m = result.metrics
            rows.append({"taught": n, "recall": float(np.nan_to_num(m.recall[j])), "precision": float(m.precision[j]),
                         "test_images_with_word": int(m.n_truth[j]), "predicted": int(m.n_predicted[j]),
                         "right": int(m.n_correct[j])})
        else:
            rows.append({"taught": n, "recall": 0.0, "precision": 0.0, "test_images_with_word": None,
                         "predicted": 0, "right": 0})
        print(f"{word} taught on {n} photos: {rows[-1]}")
    api.close()
    return rows


def plot(rows: list[dict[str, object]], path: Path) -> None:
    """The F1 curves (test split and uncorrected library, queue and random) as a small SVG."""
    w, h, pad = 560, 300, 44
    series = {(o, s): [(r["corrected"], r[s]["F1"]) for r in rows if r["order"] == o]  # type: ignore[index]
              for o in ("queue", "random") for s in ("test", "library")}
    values = [v for pts in series.values() for _, v in pts]
    lo, hi = min(values) - 1, max(values) + 1
    xs = sorted({int(r["corrected"]) for r in rows})  # type: ignore[call-overload]

    def x(c: int) -> float:
        return pad + (w - 2 * pad) * xs.index(c) / (len(xs) - 1)

    def y(v: float) -> float:
        return h - pad - (h - 2 * pad) * (v - lo) / (hi - lo)

    style = {("queue", "test"): "#1f77b4", ("random", "test"): "#1f77b4", ("queue", "library"): "#d62728",
             ("random", "library"): "#d62728"}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" '
             'font-size="11">', f'<rect width="{w}" height="{h}" fill="white"/>']
    for c in xs:
        parts.append(f'<text x="{x(c):.0f}" y="{h - pad + 16}" text-anchor="middle">{c}</text>')
    for v in np.linspace(lo, hi, 5):
        parts.append(f'<text x="{pad - 6}" y="{y(v) + 4:.0f}" text-anchor="end">{v:.1f}</text>')
        parts.append(f'<line x1="{pad}" x2="{w - pad}" y1="{y(v):.0f}" y2="{y(v):.0f}" stroke="#eee"/>')
    for (order, split), pts in series.items():
        dash = "" if order == "queue" else ' stroke-dasharray="5,4"'
        line = " ".join(f"{x(c):.0f},{y(v):.1f}" for c, v in pts)
        parts.append(f'<polyline points="{line}" fill="none" stroke="{style[order, split]}" stroke-width="2"{dash}/>')
    legend = [("test split, queue", "#1f77b4", ""), ("test split, random", "#1f77b4", "5,4"),
              ("uncorrected library, queue", "#d62728", ""), ("uncorrected library, random", "#d62728", "5,4")]
    for n, (label, colour, dash) in enumerate(legend):
        yy = 14 + 14 * n
        parts.append(f'<line x1="{pad + 8}" x2="{pad + 30}" y1="{yy}" y2="{yy}" stroke="{colour}" stroke-width="2" '
                     f'stroke-dasharray="{dash or "none"}"/><text x="{pad + 36}" y="{yy + 4}">{label}</text>')
    parts.append(f'<text x="{w / 2}" y="{h - 8}" text-anchor="middle">photos corrected (F1 %, CCA-KNN, Corel-5k)'
                 "</text></svg>")
    path.write_text("\n".join(parts) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/corel5k"))
    parser.add_argument("--word", default="tiger")
    args = parser.parse_args()
    data = args.data.resolve()
    WORK.mkdir(parents=True, exist_ok=True)
    train, library = halves(data)
    truth = {str(e["image"]): set(e["tags"]) for e in library}  # type: ignore[arg-type]
    base = base_store("half", train, library, data / "vocabulary.txt", data)
    rows = curve(base, "queue", truth, data) + curve(base, "random", truth, data)
    word_rows = teach_word(data, train, library, args.word)
    write_results("teach", {"curve": rows, "word": args.word, "taught": word_rows},
                  ["corrected photos", "order", "test F1", "test N+", "library F1", "library N+", "library photos"],
                  [f"| {r['corrected']} | {r['order']} | {r['test']['F1']:.2f} | {r['test']['N+']} | "  # type: ignore[index]
                   f"{r['library']['F1']:.2f} | {r['library']['N+']} | {r['library']['images']} |" for r in rows])
    for r in word_rows:
        print(f"| {args.word} | {r['taught']} | {100 * float(r['recall']):.1f} | {100 * float(r['precision']):.1f} |")  # type: ignore[arg-type]
    plot(rows, Path(__file__).resolve().parents[1] / "docs" / "teaching-curve.svg")


if __name__ == "__main__":
    main()
