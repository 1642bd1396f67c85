"""The teaching curve on Corel-5k: how much each correction teaches, in the review queue's order and at random.

The truth stands in for the person. A store is indexed on half of the training images (a fixed random half, with
`annot index`'s own settings); the other half is the photo library (`annot annotate`). Photos are then corrected
(their shown tags confirmed where right and rejected where wrong, their missing true tags added) in the order of
the review queue (`annot review --order ...`) and in a random order, 50 photos a round (the queue asked again and
the library re-scored with `annot annotate` after each round, as a person works through it). After 0, 50, 100, 300
and 1,000 corrected photos the store is measured: F1 / N+ on the test split (`annot eval`) and on 450 library photos
that are never corrected (a fixed random set; their shown tags against their truth). The queue's order is chosen on
those library photos (training data), not on the test split.

Then a word the store has never seen: a store indexed on the same half with ``--word`` left out of its vocabulary;
the word is added by corrections (`annot correct --add WORD`) to 5, 10 and 20 library photos that show it, and the
word's recall and precision on the test split are measured after each.

    python benchmarks/teach.py [--data ../shared/data/corel5k] [--word tiger] [--orders queue-dense,random]

Writes benchmarks/results/teach.{json,md} and docs/teaching-curve.svg.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

import annot
from annot.library.corrections import Correction
from annot.metrics import per_word_metrics, summarize
from annot.settings import build_settings
from common import write_results

WORK = Path("/tmp/annot-teach")
CHECKPOINTS = (0, 50, 100, 300, 1000)
ROUND = 50  # photos corrected between two askings of the queue (and two re-scorings of the library)
VALIDATION = 450  # library photos never corrected, on which the orders are compared (training data, not test)
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


def curve(base: Path, order: str, truth: dict[str, set[str]], data: Path, validation: set[str], seed: int = 1
          ) -> list[dict[str, object]]:
    """Correct photos in ``order`` (``random``, or ``queue-`` and a review order) up to each checkpoint; the
    ``validation`` photos are never corrected."""
    store = WORK / f"curve-{order}.annot"
    shutil.rmtree(store, ignore_errors=True)
    shutil.copytree(base, store)
    api = annot.open_store(store)
    from sqlalchemy import select

    from annot.schema import images

    with api.model().store.db.connect() as conn:
        by_path = dict(conn.execute(select(images.c.path, images.c.id).where(images.c.path.in_(list(truth)))).all())
    truth_by_id = {int(by_path[p]): t for p, t in truth.items() if p in by_path}
    held = {int(by_path[p]) for p in validation if p in by_path}
    shuffled = [int(i) for i in np.random.default_rng(seed).permutation(sorted(truth_by_id)) if int(i) not in held]
    corrected: set[int] = set()
    rows = []
    for target in CHECKPOINTS:
        started = time.perf_counter()
        while len(corrected) < target:  # a round: the queue asked, its photos corrected, the library re-scored
            need = min(ROUND, target - len(corrected))
            if order.startswith("queue-"):
                asked = api.review(need + len(held), order=order.removeprefix("queue-"))
                chosen = [item.id for item in asked if item.id not in held][:need]
            else:
                chosen = [i for i in shuffled if i not in corrected][:need]
            api.correct(corrections_for(api, chosen, truth_by_id), source="benchmark")
            corrected.update(chosen)
            api.annotate()
        print(f"{order} {target}: corrected and re-scored in {time.perf_counter() - started:.1f} s", flush=True)
        test = api.evaluate(data / "test.jsonl", record=False).summary.as_percent()
        rows.append({"order": order, "corrected": len(corrected), "test": test,
                     "validation": library_quality(api, {p: truth[p] for p in validation}, corrected)})
    api.close()
    return rows


def teach_word(data: Path, train: list[dict[str, object]], library: list[dict[str, object]], word: str,
               reuse: bool = False) -> list[dict[str, object]]:
    vocabulary = WORK / "vocabulary-without.txt"
    vocabulary.write_text("".join(w + "\n" for w in (data / "vocabulary.txt").read_text().split() if w != word))
    kept = WORK / "without-word.annot"
    if reuse and kept.exists():
        base = WORK / "without-word-run.annot"
        shutil.rmtree(base, ignore_errors=True)
        shutil.copytree(kept, base)
    else:
        built = base_store("without-word", train, library, vocabulary, data)
        base = WORK / "without-word-run.annot"
        shutil.rmtree(base, ignore_errors=True)
        shutil.copytree(built, base)
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
    orders = list(dict.fromkeys(str(r["order"]) for r in rows))[:2]
    series = {(o, s): [(r["corrected"], r[s]["F1"]) for r in rows if r["order"] == o]  # type: ignore[index]
              for o in orders for s in ("test", "validation")}
    values = [v for pts in series.values() for _, v in pts]
    lo, hi = min(values) - 1, max(values) + 1
    xs = sorted({int(r["corrected"]) for r in rows})  # type: ignore[call-overload]

    def x(c: int) -> float:
        return pad + (w - 2 * pad) * xs.index(c) / (len(xs) - 1)

    def y(v: float) -> float:
        return h - pad - (h - 2 * pad) * (v - lo) / (hi - lo)

    colour = {"test": "#1f77b4", "validation": "#d62728"}
    name = {"test": "test split", "validation": "uncorrected library"}
    head = f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">'
    parts = [head, f'<rect width="{w}" height="{h}" fill="white"/>']
    for c in xs:
        parts.append(f'<text x="{x(c):.0f}" y="{h - pad + 16}" text-anchor="middle">{c}</text>')
    for v in np.linspace(lo, hi, 5):
        parts.append(f'<text x="{pad - 6}" y="{y(v) + 4:.0f}" text-anchor="end">{v:.1f}</text>')
        parts.append(f'<line x1="{pad}" x2="{w - pad}" y1="{y(v):.0f}" y2="{y(v):.0f}" stroke="#eee"/>')
    for n, ((order, split), pts) in enumerate(series.items()):
        dash = "none" if order == orders[0] else "5,4"
        line = " ".join(f"{x(c):.0f},{y(v):.1f}" for c, v in pts)
        parts.append(f'<polyline points="{line}" fill="none" stroke="{colour[split]}" stroke-width="2" '
                     f'stroke-dasharray="{dash}"/>')
        yy = 14 + 14 * n
        parts.append(f'<line x1="{pad + 8}" x2="{pad + 30}" y1="{yy}" y2="{yy}" stroke="{colour[split]}" '
                     f'stroke-width="2" stroke-dasharray="{dash}"/><text x="{pad + 36}" y="{yy + 4}">'
                     f'{name[split]}, {order}</text>')
    parts.append(f'<text x="{w / 2}" y="{h - 8}" text-anchor="middle">photos corrected (F1 %, CCA-KNN, Corel-5k)'
                 "</text></svg>")
    path.write_text("\n".join(parts) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/corel5k"))
    parser.add_argument("--word", default="tiger")
    parser.add_argument("--orders", default="queue-rare,queue-uncertain,queue-dense,random",
                        help="the orders to correct in: random, or queue- and a review order")
    parser.add_argument("--reuse", action="store_true", help="reuse the base stores of an earlier run")
    args = parser.parse_args()
    data = args.data.resolve()
    WORK.mkdir(parents=True, exist_ok=True)
    train, library = halves(data)
    truth = {str(e["image"]): set(e["tags"]) for e in library}  # type: ignore[arg-type]
    validation = {str(library[i]["image"]) for i in np.random.default_rng(2).choice(len(library), VALIDATION,
                                                                                    replace=False)}
    base = WORK / "half.annot"
    if not (args.reuse and base.exists()):
        base = base_store("half", train, library, data / "vocabulary.txt", data)
    rows = [r for order in args.orders.split(",") for r in curve(base, order, truth, data, validation)]
    word_rows = teach_word(data, train, library, args.word, args.reuse)
    write_results("teach", {"curve": rows, "word": args.word, "taught": word_rows},
                  ["corrected photos", "order", "test F1", "test N+", "uncorrected library F1", "uncorrected library N+"],
                  [f"| {r['corrected']} | {r['order']} | {r['test']['F1']:.2f} | {r['test']['N+']} | "  # type: ignore[index]
                   f"{r['validation']['F1']:.2f} | {r['validation']['N+']} |" for r in rows])
    for r in word_rows:
        print(f"| {args.word} | {r['taught']} | {100 * float(r['recall']):.1f} | {100 * float(r['precision']):.1f} |")  # type: ignore[arg-type]
    chosen = max((o for o in args.orders.split(",") if o.startswith("queue-")),
                 key=lambda o: sum(r["validation"]["F1"] for r in rows if r["order"] == o), default=None)  # type: ignore[index]
    print(f"the queue order best on the uncorrected library photos (training data): {chosen}")
    plot([r for r in rows if r["order"] in (chosen, "random")], Path(__file__).resolve().parents[1] / "docs" /
         "teaching-curve.svg")


if __name__ == "__main__":
    main()
