"""KCCA fit time and peak memory against the number of training images, on synthetic features of the real width.

Exact KCCA at 1k, 2k and 4.5k images; Nyström KCCA (256 landmarks) at 20k, 100k and 1M. Features are 1,280-d and
non-negative (like pooled CNN activations) with planted structure: 50 latent themes drive both the image features
and a 50-d text view. Each size runs in its own process, so peak memory (max RSS) is that size's alone. The 1M
features live in a memory-mapped .npy file that KernelCCA reads in chunks.

    python benchmarks/kcca_scale.py [--sizes 1000,2000,4500,20000,100000,1000000] [--landmarks 256]

Writes benchmarks/results/kcca_scale.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

P, Q, THEMES = 1280, 50, 50


def synthetic(n: int, path: Path | None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n images; ``seed`` draws the images, the themes are the same for every seed."""
    rng = np.random.default_rng(12345)
    W = np.abs(rng.normal(size=(THEMES, P))).astype(np.float32)
    T = rng.normal(size=(THEMES, Q)).astype(np.float32)
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, P)) if path else np.empty((n, P), np.float32)
    Y = np.empty((n, Q), np.float32)
    for lo in range(0, n, 50_000):
        hi = min(n, lo + 50_000)
        r = np.random.default_rng((seed, lo))
        theme = r.integers(0, THEMES, hi - lo)
        X[lo:hi] = np.maximum(W[theme] * r.random((hi - lo, 1), dtype=np.float32) + 0.3 * r.normal(size=(hi - lo, P)).astype(np.float32), 0)
        Y[lo:hi] = T[theme] + 0.5 * r.normal(size=(hi - lo, Q)).astype(np.float32)
    if path:
        X.flush()
        X = np.load(path, mmap_mode="r")
    return X, Y


def one(kind: str, n: int, landmarks: int) -> None:
    from annot.projection import KernelCCA

    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        X, Y = synthetic(n, Path(tmp) / "x.npy" if n > 200_000 else None)
        start = time.perf_counter()
        model = KernelCCA(n_components=20, reg_x=0.1, reg_y=0.1, n_landmarks=None if kind == "exact" else landmarks)
        model.fit(X, Y)
        seconds = time.perf_counter() - start
        held = synthetic(2000, None, seed=1)
        U, V = model.transform(held[0]), model.transform_y(held[1])
        rho = abs(float(np.corrcoef(U[:, 0], V[:, 0])[0, 1]))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB -> GiB
    print(json.dumps({"kind": kind, "n": n, "landmarks": n if kind == "exact" else landmarks,
                      "fit_seconds": round(seconds, 2), "peak_gib": round(peak, 2),
                      "seconds_per_1k_images": round(1000 * seconds / n, 3), "held_out_first_corr": round(rho, 3)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,2000,4500,20000,100000,1000000")
    parser.add_argument("--landmarks", type=int, default=256)
    parser.add_argument("--one", nargs=2, metavar=("KIND", "N"))
    args = parser.parse_args()
    if args.one:
        one(args.one[0], int(args.one[1]), args.landmarks)
        return
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        kind = "exact" if n <= 5000 else "nystrom"
        out = subprocess.run([sys.executable, __file__, "--one", kind, str(n), "--landmarks", str(args.landmarks)],
                             check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    exact = [r for r in rows if r["kind"] == "exact"]
    if len(exact) >= 2:  # fit time ~ a·n³ for exact KCCA: extrapolate to where it stops being practical
        a = exact[-1]["fit_seconds"] / exact[-1]["n"] ** 3
        for n in (20_000, 100_000):
            rows.append({"kind": "exact (extrapolated)", "n": n, "fit_seconds": round(a * n**3),
                         "kernel_gib": round(8 * n * n / 1024**3, 1)})
    folder = Path(__file__).parent / "results"
    folder.mkdir(exist_ok=True)
    (folder / "kcca_scale.json").write_text(json.dumps(rows, indent=2))
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
