"""The bad-input and hostile battery of docs/faults.md, run by hand as a user (or an attacker) would: each case as a
fresh `annot` command, or a request to `annot serve`, on a small real store (60 Corel-5k training images, the default
encoder, a library of 5 photos).

For each case: its exit code (the HTTP status for a request), its first stderr line (the error for a request),
whether a Python traceback appeared, whether the store changed where it must not (the manifest and the database, by
hash) or was left inconsistent (library photos other than the library index's vectors), and whether it hung (no
answer within 120 s). A case is clean when its exit code is the one expected, no traceback appeared, nothing was
damaged, it did not hang, and its own check holds.

    python benchmarks/faults.py [--data ../shared/data/corel5k] [--work /tmp/annot-faults]

Writes benchmarks/results/faults.json and .md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import httpx

from common import write_results

HANG = 120.0  # seconds a case may take before it counts as a hang


@dataclass
class Outcome:
    code: int | None  # exit code, or HTTP status; None when it hung
    out: str = ""
    err: str = ""


@dataclass
class Case:
    name: str
    run: Callable[[], Outcome]
    expected: int
    may_change: bool = False
    check: Callable[[Outcome], bool] = lambda outcome: True


def annot(*args: str | Path) -> Outcome:
    try:
        done = subprocess.run([sys.executable, "-m", "annot.cli.main", *map(str, args)], capture_output=True,
                              text=True, timeout=HANG, check=False, env={**os.environ, "COLUMNS": "300"})
    except subprocess.TimeoutExpired:
        return Outcome(None)
    return Outcome(done.returncode, done.stdout, done.stderr)


def request(url: str, method: str, path: str, **kwargs: object) -> Outcome:
    try:
        response = httpx.request(method, url + path, timeout=HANG, **kwargs)  # type: ignore[arg-type]
    except httpx.TimeoutException:
        return Outcome(None)
    error = response.json().get("error", "") if "json" in response.headers.get("content-type", "") else ""
    return Outcome(response.status_code, response.text, str(error))


def state(store: Path) -> str:
    digest = hashlib.sha256()
    for name in ("manifest.json", "annot.duckdb"):
        path = store / name
        digest.update(path.read_bytes() if path.exists() else b"-")
    return digest.hexdigest()


def consistent(store: Path) -> bool:
    """The library's annotated photos are the library index's vectors (as many, by the manifest's count)."""
    manifest = json.loads((store / "manifest.json").read_text())
    vectors = (manifest.get("collection") or {}).get("ntotal", 0)
    with duckdb.connect(str(store / "annot.duckdb"), read_only=True) as conn:
        photos = conn.execute("SELECT count(*) FROM photo_files WHERE state = 'annotated'").fetchone()
    return photos is not None and int(photos[0]) == int(vectors)


def start_server(store: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "annot.cli.main", "serve", "--store", str(store), "--port",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/v1/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("the server did not start: " + (proc.stderr.read().decode() if proc.stderr else ""))


def prepare(data: Path, work: Path) -> tuple[Path, Path]:
    """A 60-image store with a library of 5 photos (one in a folder whose name looks like markup)."""
    lines = (data / "train.jsonl").read_text().splitlines()[:60]
    corpus = work / "train.jsonl"
    corpus.write_text("".join(json.dumps({**json.loads(x), "image": str(data / json.loads(x)["image"])}) + "\n"
                              for x in lines))
    store = work / "s.annot"
    built = annot("index", corpus, "--store", store, "--components", "16")
    assert built.code == 0, built.err
    photos = work / "photos"
    photos.mkdir()
    for src in sorted((data / "images" / "test").glob("*.jpeg"))[:5]:
        shutil.copy(src, photos / src.name)
    assert annot("annotate", photos, "--store", store).code == 0
    return store, photos


def command_cases(work: Path, store: Path, photos: Path) -> list[Case]:
    (work / "bad.jsonl").write_text('{"image": "a.jpg", "tags": ["sky"]}\n{"image": \n')
    (work / "open.csv").write_text('image,tags\n"a.jpg,sky\nb.jpg,sea\n')
    (work / "text.jpg").write_text("not an image")
    (work / "empty").mkdir()
    (work / "a-file").write_text("x")
    fix = work / "fix.jsonl"
    fix.write_text('{"image": "nowhere.jpg", "confirm": ["sky"]}\n')
    listed = sorted(photos.glob("*.jpeg"))
    photo, sidecar = listed[0], listed[0].with_name(listed[0].name + ".xmp")
    batch = work / "batch.jsonl"
    batch.write_text("".join(json.dumps({"image": str(p), "confirm": ["sky"], "reject": ["water"]}) + "\n"
                             for p in listed))
    piped = work / "piped"
    piped.mkdir()
    shutil.copy(listed[1], piped / "ok.jpeg")
    os.mkfifo(piped / "pipe.jpg")
    markup = work / "markup" / "trip ["
    markup.mkdir(parents=True)
    shutil.copy(listed[2], markup / "b].jpeg")
    sql = "SELECT path AS \"[/p]\", '[red]x[/red]' AS v FROM images WHERE path LIKE '%trip [%'"

    def write_sidecar(text: str | bytes, mode: int = 0o644) -> Callable[[], Outcome]:
        def run() -> Outcome:
            sidecar.unlink(missing_ok=True)
            sidecar.write_bytes(text.encode() if isinstance(text, str) else text)
            sidecar.chmod(mode)
            return annot("export", "--store", store)
        return run

    def replaced() -> Outcome:  # the larger of two photos, overwritten by the smaller one padded to its size
        donor, target = sorted(listed[3:5], key=lambda p: p.stat().st_size)
        before = target.stat()
        data = donor.read_bytes()
        target.write_bytes(data + b"\0" * (before.st_size - len(data)))
        os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
        return annot("annotate", photos, "--store", store, "--json")

    readonly = '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/></x:xmpmeta>'
    entity = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
              '<x:xmpmeta xmlns:x="adobe:ns:meta/">&e;</x:xmpmeta>')
    return [
        Case("a setting out of range", lambda: annot("query", photo, "--store", store, "--k", "0"), 2),
        Case("a confidence that is not one", lambda: annot("query", photo, "--store", store, "--min-confidence",
                                                           "sure"), 2),
        Case("bad JSON in a corpus", lambda: annot("add", work / "bad.jsonl", "--store", store), 1),
        Case("a quote left open in a CSV", lambda: annot("add", work / "open.csv", "--store", store), 1),
        Case("a missing corpus", lambda: annot("add", work / "none.jsonl", "--store", store), 1),
        Case("a text file named .jpg to query", lambda: annot("query", work / "text.jpg", "--store", store), 1),
        Case("a missing store", lambda: annot("info", "--store", work / "none.annot"), 1),
        Case("sql that writes", lambda: annot("sql", "DELETE FROM images", "--store", store), 1),
        Case("sql that reads a file", lambda: annot("sql", "SELECT * FROM read_text('/etc/passwd')", "--store",
                                                    store), 1),
        Case("an empty sql statement", lambda: annot("sql", "", "--store", store), 1),
        Case("annotate a folder without photos", lambda: annot("annotate", work / "empty", "--store", store), 1),
        Case("annotate a missing path", lambda: annot("annotate", work / "none.jpg", "--store", store), 1),
        Case("annotate an unreadable file", lambda: annot("annotate", work / "text.jpg", "--store", store), 0, True),
        Case("annotate a folder holding a named pipe", lambda: annot("annotate", piped, "--store", store), 0, True,
             check=lambda o: "pipe.jpg: not a regular file (a named pipe)" in o.err),
        Case("annotate a folder named like markup", lambda: annot("annotate", markup.parent, "--store", store), 0,
             True),
        Case("sql with markup in its values and names", lambda: annot("sql", sql, "--store", store), 0,
             check=lambda o: "[red]x[/red]" in o.out),
        Case("search listing a path that looks like markup", lambda: annot("search", "sky", "--store", store, "-n",
                                                                           "50", "--scope", "library"), 0,
             check=lambda o: "trip [" in o.out),
        Case("search for a word without a vector", lambda: annot("search", "qwxzzy", "--mode", "space", "--store",
                                                                 store), 1),
        Case("search with no words", lambda: annot("search", "--store", store), 1),
        Case("correct an unknown photo", lambda: annot("correct", "--from", fix, "--store", store), 1),
        Case("correct with an unknown tag", lambda: annot("correct", photo, "--add", "zebra-crossing", "--store",
                                                          store), 1),
        Case("corrections from a file that never ends", lambda: annot("correct", "--from", "/dev/zero", "--store",
                                                                      store), 1),
        Case("a correction batch", lambda: annot("correct", "--from", batch, "--store", store, "--json"), 0, True),
        Case("the same correction batch again", lambda: annot("correct", "--from", batch, "--store", store,
                                                              "--json"), 0, True,
             check=lambda o: json.loads(o.out)["recorded"] == 0),
        Case("a photo replaced with the same size and time", replaced, 0, True,
             check=lambda o: json.loads(o.out)["reannotated"] == 1),
        Case("export where nothing can be written", lambda: annot("export", "--store", store, "--out",
                                                                  work / "a-file" / "x"), 1),
        Case("export into a sidecar that is not XMP", write_sidecar("<x:xmpmeta this is not xml"), 1,
             check=lambda o: sidecar.read_text() == "<x:xmpmeta this is not xml"),
        Case("export into a read-only sidecar", write_sidecar(readonly, 0o444), 0,
             check=lambda o: sidecar.read_text() == readonly and sidecar.stat().st_mode & 0o777 == 0o444),
        Case("export into a sidecar with an external entity", write_sidecar(entity), 1,
             check=lambda o: sidecar.read_text() == entity and "passwd" not in o.out),
        Case("export into a 20 MB sidecar", write_sidecar(b" " * (20 << 20)), 1,
             check=lambda o: sidecar.stat().st_size == 20 << 20),
        Case("export in an unknown format", lambda: annot("export", "--store", store, "--format", "pdf"), 2),
        Case("serve a missing store", lambda: annot("serve", "--store", work / "none.annot"), 1),
    ]


def server_cases(url: str, store: Path) -> list[Case]:
    upload = {"image": ("x.jpg", b"not an image at all")}
    photo_jpeg = min((store.parent / "photos").glob("*.jpeg")).read_bytes()
    host = url.removeprefix("http://")

    def library() -> int:
        return int(httpx.get(url + "/v1/health").json()["library_photos"])

    def foreign_write() -> Outcome:
        before = library()
        outcome = request(url, "POST", "/v1/annotate?keep=true", files={"image": ("a.jpg", photo_jpeg)},
                          headers={"Origin": "http://127.0.0.1:1"})
        return outcome if library() == before else Outcome(-1, outcome.out, "kept anyway")

    def busy_keep() -> Outcome:
        from annot.store import StoreDir

        with StoreDir.open(store, write=True):
            outcome = request(url, "POST", "/v1/annotate?keep=true", files={"image": ("b.jpg", photo_jpeg)})
        uploads = store / "uploads"
        return outcome if not uploads.exists() or not any(uploads.iterdir()) else Outcome(-1, "", "orphan left")

    def health_during_batch() -> Outcome:
        ids = [h["id"] for h in httpx.get(url + "/v1/search", params={"q": "sky", "scope": "library", "n": 50}
                                          ).json()["results"]]
        words = [t["tag"] for t in httpx.get(url + "/v1/tags").json()["tags"]]
        items = [{"id": ids[i % len(ids)], "tag": words[i % len(words)], "action": ("add", "reject")[i % 2]}
                 for i in range(1000)]
        waits: list[float] = []
        done = threading.Event()

        def poll() -> None:
            while not done.is_set():
                started = time.perf_counter()
                httpx.get(url + "/v1/health", timeout=HANG)
                waits.append(time.perf_counter() - started)

        poller = threading.Thread(target=poll)
        poller.start()
        outcome = request(url, "POST", "/v1/corrections", json={"corrections": items})
        done.set()
        poller.join()
        return Outcome(outcome.code, outcome.out, f"health answered {len(waits)} times, at most in "
                                                  f"{max(waits, default=0):.3f} s")

    return [
        Case("a request naming another host (DNS rebinding)", lambda: request(
            url, "GET", "/v1/search?q=sky", headers={"Host": "evil.example:" + host.split(":")[1]}), 400,
            check=lambda o: "photos" not in o.out),
        Case("a kept upload from another web site", foreign_write, 403),
        Case("a read marked as another site's", lambda: request(url, "GET", "/v1/search?q=sky", headers={
            "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"}), 403),
        Case("1,001 corrections in one request", lambda: request(url, "POST", "/v1/corrections", json={
            "corrections": [{"id": 1, "tag": "sky", "action": "add"}] * 1001}), 422),
        Case("a 2 MB request body", lambda: request(url, "POST", "/v1/corrections", content=b" " * (2 << 20),
                                                    headers={"Content-Type": "application/json"}), 413),
        Case("an upload that is not an image", lambda: request(url, "POST", "/v1/annotate", files=upload), 415),
        Case("a kept upload while another writer holds the store", busy_keep, 409),
        Case("health while 1,000 corrections are applied", health_during_batch, 200, True,
             check=lambda o: float(o.err.rsplit(" ", 2)[1]) < 1.0),
    ]


def run_case(case: Case, store: Path) -> dict[str, object]:
    before = state(store)
    outcome = case.run()
    hung = outcome.code is None
    damaged = (state(store) != before and not case.may_change) or not consistent(store)
    traceback = "Traceback" in outcome.err or "Traceback" in outcome.out
    try:
        checked = not hung and case.check(outcome)
    except (ValueError, KeyError, OSError):
        checked = False
    first = (outcome.err.strip().splitlines() or [""])[0]
    ok = outcome.code == case.expected and not traceback and not damaged and not hung and checked
    return {"case": case.name, "exit": outcome.code, "expected": case.expected, "traceback": traceback,
            "damaged": damaged, "hung": hung, "message": first, "ok": ok}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/corel5k"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/annot-faults"))
    args = parser.parse_args()
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    store, photos = prepare(args.data.resolve(), work)
    results = [run_case(case, store) for case in command_cases(work, store, photos)]
    server, url = start_server(store)
    try:
        results += [run_case(case, store) for case in server_cases(url, store)]
    finally:
        server.terminate()
        server.wait(timeout=30)
    rows = [f"| {r['case']} | {r['exit']} | {'yes' if r['traceback'] else 'no'} | {'yes' if r['damaged'] else 'no'} | "
            f"{'yes' if r['hung'] else 'no'} | {str(r['message']).replace('|', '/')[:110]} | "
            f"{'ok' if r['ok'] else 'FAIL'} |" for r in results]
    counts = {"cases": len(results), "clean": sum(bool(r["ok"]) for r in results),
              "tracebacks": sum(bool(r["traceback"]) for r in results),
              "damage": sum(bool(r["damaged"]) for r in results), "hangs": sum(bool(r["hung"]) for r in results)}
    write_results("faults", {"counts": counts, "cases": results},
                  ["case", "exit / status", "traceback", "damage", "hang", "message", "as expected"], rows)
    print(json.dumps(counts))
    if counts["clean"] != counts["cases"]:
        raise SystemExit("some cases failed")


if __name__ == "__main__":
    main()
