"""The paper's two CCA-KNN targets at once (F1 ≥ 46 and N+ ≥ 201 on Corel-5k) with one `annot index` and one
`annot eval`, as BENCHMARKS.md gives them: Lite2 + stages at 300 px, MiniLM, KCCA, held-out standardised scores, the
settings cross-validation on the cover hold-outs chose. Writes benchmarks/results/target.json.

    python benchmarks/target.py [--store out/target.annot] [--data ../shared/data/corel5k]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from common import RESULTS

INDEX_FLAGS = ["--encoder", "efficientnet-lite2-stages@300", "--words", "minilm", "--projection", "kcca",
               "--normalize", "power", "--reg", "0.03", "--k", "32", "--temperature", "0.1", "--frequency-power", "0",
               "--score", "standardized-held-out"]


def annot(*args: str | Path) -> str:
    done = subprocess.run([sys.executable, "-m", "annot.cli.main", *map(str, args)], capture_output=True, text=True,
                          check=True)
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=Path("out/target.annot"))
    parser.add_argument("--data", type=Path, default=Path("../shared/data/corel5k"))
    args = parser.parse_args()
    started = time.perf_counter()
    annot("index", args.data / "train.jsonl", "--store", args.store, "--vocabulary", args.data / "vocabulary.txt",
          *INDEX_FLAGS)
    indexed = time.perf_counter() - started
    result = json.loads(annot("eval", args.data / "test.jsonl", "--store", args.store, "--json"))
    row = {"command": "annot index ... " + " ".join(INDEX_FLAGS), "test": result["summary"],
           "index_seconds": round(indexed, 1), "eval_seconds": round(time.perf_counter() - started - indexed, 1)}
    (RESULTS / "target.json").write_text(json.dumps(row, indent=2) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
