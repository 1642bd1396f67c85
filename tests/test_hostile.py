"""The server and the library under attack and faults (docs/faults.md): other web sites, requests that would stall
the server, files that never end, text that looks like markup, a correction batch applied twice or killed, a photo
replaced in place, and the person's own files. After each, the store is consistent (its library photos are its
library index's vectors, and ``info`` and ``search`` work)."""

from __future__ import annotations

import base64
import functools
import hashlib
import http.server
import io
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select
from tests.conftest import WORDS, invoke, paint
from tests.test_library import library_state, make_photos
from tests.test_serve import Server, jpeg

import annot
import annot.library.export as export_module
from annot.cli import render
from annot.library import collection, scan
from annot.library.collection import annotate_photos
from annot.schema import corrections, images
from annot.serve.app import create_app
from annot.serve.routes.corrections import MAX_CORRECTIONS
from annot.serve.security import Access
from annot.store import StoreDir

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
CLI = "import sys; sys.path.insert(0, 'tests'); import conftest; from annot.cli.main import main; sys.argv[0] = 'annot'; main()"


def cli(*args: str | Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """annot as a new process (with the fake encoder registered): a hang fails the test instead of blocking it."""
    return subprocess.run([sys.executable, "-c", CLI, *map(str, args)], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=timeout, check=False)


def assert_consistent(store: Path) -> None:
    """Library photos are the library index's vectors; info and search work."""
    state = library_state(store)
    assert sorted(state["ids"]) == sorted(state["annotated"]), state  # type: ignore[type-var]
    assert state["ntotal"] == len(state["annotated"])  # type: ignore[arg-type]
    assert invoke("info", "--store", store).exit_code == 0
    found = invoke("search", "sky", "--store", store, "--json")
    assert found.exit_code == 0, found.output


def library_ids(store: Path) -> list[int]:
    return sorted(library_state(store)["annotated"])  # type: ignore[type-var]


# -- 1. other web sites ----------------------------------------------------------------------------------------------
def test_access_rules() -> None:
    loopback = Access("127.0.0.1")
    assert loopback.host_allowed("127.0.0.1:8000") and loopback.host_allowed("localhost:8000")
    assert loopback.host_allowed("[::1]:8000") and loopback.host_allowed("localhost.:8000")
    assert not loopback.host_allowed("evil.example:8000") and not loopback.host_allowed("192.168.1.9:8000")
    assert not loopback.host_allowed("")
    named = Access("127.0.0.1", allow_hosts=("photos.lan",))
    assert named.host_allowed("photos.lan:8000") and not named.host_allowed("evil.example")
    everywhere = Access("0.0.0.0")
    assert everywhere.host_allowed("192.168.1.9:8000") and everywhere.host_allowed("[fe80::1]:80")
    assert not everywhere.host_allowed("evil.example:8000")
    one = Access("192.168.1.9")
    assert one.host_allowed("192.168.1.9") and not one.host_allowed("127.0.0.2") and not one.host_allowed("10.0.0.1")


@pytest.mark.slow
def test_other_hosts_and_sites_are_refused_and_scripts_are_not(store: Path, tmp_path: Path) -> None:
    make_photos(tmp_path / "photos", 4, seed=7)
    annotate_photos(store, [tmp_path / "photos"])
    with Server(create_app(store)) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        port = server.port
        rebound = client.get("/v1/search", params={"q": "sky"}, headers={"Host": f"evil.example:{port}"})
        assert rebound.status_code == 400 and "evil.example" in rebound.json()["error"]
        assert str(tmp_path) not in rebound.text  # no path, no tag
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
            assert client.get("/v1/health", headers={"Host": host}).status_code == 200
        before = client.get("/v1/health").json()["library_photos"]
        upload = {"image": ("x.jpg", jpeg(["snow"], seed=5))}
        other = client.post("/v1/annotate", params={"keep": True}, files=upload,
                            headers={"Origin": f"http://127.0.0.1:{port + 1}"})
        assert other.status_code == 403 and "origin" in other.json()["error"]
        marked = client.post("/v1/annotate", params={"keep": True}, files=upload,
                             headers={"Sec-Fetch-Site": "cross-site"})
        assert marked.status_code == 403
        null = client.post("/v1/corrections", json={"id": 1, "tag": "sky", "action": "add"}, headers={"Origin": "null"})
        assert null.status_code == 403
        read = client.get("/v1/search", params={"q": "sky"}, headers={"Sec-Fetch-Site": "same-site",
                                                                     "Sec-Fetch-Mode": "cors"})
        assert read.status_code == 403
        link = client.get("/", headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"})
        assert link.status_code == 200  # a link to the page from elsewhere still opens it
        assert client.get("/v1/health").json()["library_photos"] == before
        own = client.post("/v1/annotate", params={"keep": True}, files=upload,
                          headers={"Origin": server.url, "Sec-Fetch-Site": "same-origin"})
        assert own.status_code == 200, own.text
        script = client.post("/v1/annotate", params={"keep": True}, files={"image": ("y.jpg", jpeg(["sea"], seed=6))})
        assert script.status_code == 200, script.text  # curl and scripts send neither header
        assert client.get("/v1/health").json()["library_photos"] == before + 2
    assert_consistent(store)


EVIL_PAGE = """<!doctype html><title>loading</title><script>
const target = "{target}";
(async () => {{
  const results = [];
  const bytes = Uint8Array.from(atob("{image}"), (c) => c.charCodeAt(0));
  const form = new FormData();
  form.append("image", new Blob([bytes], {{ type: "image/jpeg" }}), "evil.jpg");
  const writes = [
    [target + "/v1/annotate?keep=true", {{ method: "POST", mode: "no-cors", body: form }}],
    [target + "/v1/corrections", {{ method: "POST", mode: "no-cors", headers: {{ "Content-Type": "text/plain" }},
      body: JSON.stringify({{ id: {photo}, tag: "snow", action: "add" }}) }}],
  ];
  for (const [url, options] of writes) {{
    try {{ await fetch(url, options); results.push("sent"); }} catch (error) {{ results.push("failed"); }}
  }}
  try {{
    const answer = await fetch(target + "/v1/search?q=sky");
    results.push("read " + (await answer.text()).length);
  }} catch (error) {{ results.push("read refused"); }}
  document.title = "done: " + results.join(", ");
}})();
</script>"""


@pytest.fixture()
def evil_site(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """Another web site on another port of 127.0.0.1 (another origin, the same site)."""
    folder = tmp_path / "evil"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.browser
def test_a_page_of_another_site_cannot_write_or_read(browser: object, evil_site: tuple[Path, str], store: Path,
                                                     tmp_path: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    make_photos(tmp_path / "photos", 3, seed=8)
    annotate_photos(store, [tmp_path / "photos"])
    photo = library_ids(store)[0]
    folder, url = evil_site
    with Server(create_app(store)) as server:
        page = EVIL_PAGE.format(target=server.url, image=base64.b64encode(jpeg(["snow"], seed=9)).decode(),
                                photo=photo)
        (folder / "evil.html").write_text(page)
        browser.get(f"{url}/evil.html")  # type: ignore[attr-defined]
        WebDriverWait(browser, 60).until(lambda d: d.title.startswith("done"))
        title = browser.title  # type: ignore[attr-defined]
        with httpx.Client(base_url=server.url) as client:
            assert client.get("/v1/health").json()["library_photos"] == 3
    assert "read refused" in title, title  # the browser itself keeps the answer from the other site
    assert len(library_ids(store)) == 3
    with StoreDir.open(store) as s, s.db.connect() as conn:
        assert conn.execute(select(corrections.c.id)).all() == []
    assert not (store / "uploads").exists() or not any((store / "uploads").iterdir())
    assert_consistent(store)


# -- 2. requests that would stall the server ---------------------------------------------------------------------
@pytest.mark.slow
def test_a_large_correction_batch_leaves_the_server_answering(store: Path, tmp_path: Path) -> None:
    make_photos(tmp_path / "photos", 40, seed=11)
    annotate_photos(store, [tmp_path / "photos"])
    ids = library_ids(store)
    items = [{"id": ids[i % len(ids)], "tag": WORDS[(i // len(ids)) % len(WORDS)],
              "action": ("confirm", "reject", "add")[(i // (len(ids) * len(WORDS))) % 3]}
             for i in range(MAX_CORRECTIONS)]
    with Server(create_app(store, access=Access(body_timeout=2.0))) as server:
        done = threading.Event()
        waits: list[float] = []

        def health() -> None:
            with httpx.Client(base_url=server.url, timeout=30) as c:
                while not done.is_set() and len(waits) < 5000:
                    started = time.perf_counter()
                    assert c.get("/v1/health").status_code == 200
                    waits.append(time.perf_counter() - started)

        poller = threading.Thread(target=health)
        poller.start()
        with httpx.Client(base_url=server.url, timeout=120) as client:
            answer = client.post("/v1/corrections", json={"corrections": items})
            done.set()
            poller.join()
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["recorded"] == MAX_CORRECTIONS and body["unchanged"] == 0
            assert sorted(p["id"] for p in body["photos"]) == ids  # each photo once
            assert waits and max(waits) < 1.0, (len(waits), max(waits))
            over = client.post("/v1/corrections", json={"corrections": items + items[:1]})
            assert over.status_code == 422 and str(MAX_CORRECTIONS) in over.json()["error"]
            huge = b'{"corrections": [' + b" " * (2 << 20) + b"]}"
            sized = client.post("/v1/corrections", content=huge, headers={"Content-Type": "application/json"})
            assert sized.status_code == 413
            chunked = client.post("/v1/corrections", content=iter([huge[i : i + 65536]
                                                                   for i in range(0, len(huge), 65536)]),
                                  headers={"Content-Type": "application/json"})
            assert chunked.status_code == 413
            assert client.get("/v1/health").status_code == 200
        assert slow_body_status(server.port) == 408
    with StoreDir.open(store) as s, s.db.connect() as conn:
        assert len(conn.execute(select(corrections.c.id)).all()) == MAX_CORRECTIONS
    assert_consistent(store)


def slow_body_status(port: int) -> int:
    """The status of a request that promises 100 bytes of body and sends 10 (the socket waits for the answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"POST /v1/corrections HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n" + b'{"id": 1, ')
        head = sock.recv(4096).decode("latin-1")
    return int(head.split()[1])


# -- 3. files that never end -------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_files_that_never_end_are_not_read(store: Path, tmp_path: Path) -> None:
    make_photos(tmp_path / "photos", 3, seed=12)
    os.mkfifo(tmp_path / "photos" / "pipe.jpg")
    os.mkfifo(tmp_path / "corrections.jsonl")
    os.mkfifo(tmp_path / "corpus.jsonl")
    annotated = cli("annotate", tmp_path / "photos", "--store", store)
    assert annotated.returncode == 0, annotated.stderr
    assert "pipe.jpg: not a regular file (a named pipe)" in annotated.stderr
    assert len(library_ids(store)) == 3
    again = cli("annotate", tmp_path / "photos", "--store", store)  # listed again, still not read
    assert again.returncode == 0 and "pipe.jpg" in again.stderr
    for args, why in [(("correct", "--from", "/dev/zero"), "is a device"),
                      (("correct", "--from", tmp_path / "corrections.jsonl"), "is a named pipe"),
                      (("add", tmp_path / "corpus.jsonl"), "is a named pipe"),
                      (("query", tmp_path / "photos" / "pipe.jpg"), "named pipe")]:
        result = cli(*args, "--store", store)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1 and why in lines[0], (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert_consistent(store)


# -- 4. text is not markup -------------------------------------------------------------------------------------------
@pytest.fixture()
def wide_console() -> Iterator[None]:
    """Tables as wide as a long path, so that a name is printed on one line."""
    widths = render.console.width, render.errors.width
    render.console.width = render.errors.width = 500
    try:
        yield
    finally:
        render.console.width, render.errors.width = widths


@pytest.mark.slow
def test_names_and_values_are_printed_as_text(store: Path, tmp_path: Path, wide_console: None) -> None:
    folder = tmp_path / "photos" / "trip ["
    made = make_photos(folder, 2, seed=13)
    first, second = sorted(made)
    first.rename(folder / "b].jpeg")
    second.rename(folder / "[bold]y.jpg")
    (folder / "[red]x.jpg").write_text("not a photo")
    hostile = [str((folder / "b].jpeg").resolve()), str((folder / "[bold]y.jpg").resolve())]
    annotated = invoke("annotate", tmp_path / "photos", "--store", store)
    assert annotated.exit_code == 0 and "[red]x.jpg" in annotated.stderr, annotated.output
    sql = "SELECT path AS \"[/p]\", '[red]x[/red]' AS v FROM images WHERE path LIKE '%trip [%' ORDER BY path"
    commands = [  # arguments, the exit code, what must be printed as it is
        (("search", "sky", "-n", "50", "--scope", "library", "--all"), 0, hostile),
        (("search", "sky", "-n", "50", "--scope", "library", "--all", "--json"), 0,
         [json.dumps(h)[1:-1] for h in hostile]),
        (("query", hostile[0]), 0, [hostile[0]]),
        (("query", hostile[0], "--json"), 0, [json.dumps(hostile[0])[1:-1]]),
        (("sql", sql), 0, ["[/p]", "[red]x[/red]", hostile[0]]),
        (("sql", sql, "--json"), 0, ["[/p]", "[red]x[/red]"]),
        (("sql", sql, "--csv"), 0, ["[/p]", hostile[0]]),
        (("info",), 0, []),
        (("info", "--json"), 0, []),
        (("export", "--format", "csv"), 0, [hostile[0]]),
        (("correct", hostile[0], "--reject", "[/oops]"), 1, ["'[/oops]'"]),
        (("correct", hostile[0], "--add", "[/oops]"), 0, ["new words: [/oops]"]),
        (("sql", "SELECT 1 FROM [/x]"), 1, ['near "["']),
        (("sql", ""), 1, ["no SQL statement"]),
    ]
    for args, code, shown in commands:
        result = invoke(*args, "--store", store)
        assert "Traceback" not in result.output, (args, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
        assert result.exit_code == code, (args, result.output)
        text = result.stdout + result.stderr
        for literal in shown:
            assert literal in text, (args, literal, text)
    assert_consistent(store)


# -- 5. a correction batch is applied once -------------------------------------------------------------------------
KILL = """
import os, signal, sys
sys.path.insert(0, "tests")
import conftest
import annot.library.corrections as c
import annot.store.directory as d
moment = sys.argv.pop(1)

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

if moment == "in its transaction":
    insert = c.insert_rows
    def insert_then_die(conn, table, rows, **options):
        insert(conn, table, rows, **options)
        if table is c.corrections:
            die()
    c.insert_rows = insert_then_die
elif moment == "before the training index":
    c.sync_training = die
elif moment == "while publishing":  # the database's segment written, the manifest not yet switched to it
    import annot.store.dbfiles as f
    publish = f.WriterFiles.publish
    def publish_then_die(self):
        publish(self)
        die()
    f.WriterFiles.publish = publish_then_die
elif moment == "at the manifest switch":
    d.StoreDir.write_manifest = die
from annot.cli.main import main
sys.argv[0] = "annot"
main()
"""


def correction_batch(photos: dict[Path, list[str]], path: Path) -> int:
    """A JSON Lines batch: per photo, its painted tags confirmed, one other word rejected, one added; every line
    twice. The number of corrections that change something."""
    lines = []
    for photo, tags in sorted(photos.items()):
        others = [w for w in WORDS if w not in tags]
        lines.append({"image": str(photo), "confirm": tags, "reject": others[:1], "add": others[1:2]})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines * 2))
    return sum(len(line["confirm"]) + 2 for line in lines)


def correction_rows(store: Path) -> list[tuple[int, int, str]]:
    with StoreDir.open(store) as s, s.db.connect() as conn:
        return [tuple(r) for r in conn.execute(select(corrections.c.image_id, corrections.c.tag_id,
                                                      corrections.c.action).order_by(corrections.c.id))]


@pytest.mark.slow
def test_a_batch_run_twice_is_recorded_once(store: Path, tmp_path: Path) -> None:
    photos = make_photos(tmp_path / "photos", 6, seed=14)
    annotate_photos(store, [tmp_path / "photos"])
    expected = correction_batch(photos, tmp_path / "batch.jsonl")
    first = invoke("correct", "--from", tmp_path / "batch.jsonl", "--store", store, "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["recorded"] == expected and json.loads(first.stdout)["unchanged"] == expected
    rows = correction_rows(store)
    again = invoke("correct", "--from", tmp_path / "batch.jsonl", "--store", store, "--json")
    assert json.loads(again.stdout)["recorded"] == 0 and correction_rows(store) == rows
    first = min(photos)
    flipped = invoke("correct", str(first), "--reject", photos[first][0], "--store", store)
    assert flipped.exit_code == 0 and len(correction_rows(store)) == expected + 1  # a real change is recorded
    assert_consistent(store)


@pytest.mark.parametrize("moment", ["in its transaction", "before the training index", "while publishing",
                                    "at the manifest switch"])
@pytest.mark.slow
def test_a_killed_batch_is_applied_exactly_once(store: Path, tmp_path: Path, moment: str) -> None:
    photos = make_photos(tmp_path / "photos", 6, seed=15)
    annotate_photos(store, [tmp_path / "photos"])
    reference = tmp_path / "reference.annot"
    import shutil

    shutil.copytree(store, reference)
    expected = correction_batch(photos, tmp_path / "batch.jsonl")
    assert invoke("correct", "--from", tmp_path / "batch.jsonl", "--store", reference).exit_code == 0
    killed = subprocess.run([sys.executable, "-c", KILL, moment, "correct", "--from", str(tmp_path / "batch.jsonl"),
                             "--store", str(store)], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=180,
                            check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert correction_rows(store) == []  # readers never see half a batch
    rerun = invoke("correct", "--from", tmp_path / "batch.jsonl", "--store", store, "--json")
    assert rerun.exit_code == 0, rerun.output
    assert correction_rows(store) == correction_rows(reference) and len(correction_rows(store)) == expected
    with annot.open_store(store) as a, annot.open_store(reference) as b:
        ids = library_ids(store)
        assert a.photo_tags(ids) == b.photo_tags(ids)
        assert a.model().manifest.index.ntotal == b.model().manifest.index.ntotal
    again = invoke("correct", "--from", tmp_path / "batch.jsonl", "--store", store, "--json")
    assert json.loads(again.stdout)["recorded"] == 0
    assert_consistent(store)


# -- 6. a photo's content is what identifies it -------------------------------------------------------------------
def same_size_jpeg(tags: list[str], size: int, seed: int) -> bytes:
    """A JPEG of a painted photo padded after its end marker to exactly ``size`` bytes (decoders ignore the pad)."""
    rng = np.random.default_rng(seed)
    for quality in range(90, 10, -10):
        buffer = io.BytesIO()
        Image.fromarray(paint(tags, rng)).save(buffer, "JPEG", quality=quality)
        if buffer.tell() <= size:
            return buffer.getvalue() + b"\0" * (size - buffer.tell())
    raise AssertionError("no JPEG small enough")


@pytest.mark.slow
def test_a_photo_replaced_with_the_same_size_and_time_is_annotated_again(store: Path, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    photos = make_photos(tmp_path / "photos", 4, seed=16)
    annotate_photos(store, [tmp_path / "photos"])
    target = min(photos)
    other = [w for w in WORDS if w not in photos[target]][:2]
    before = target.stat()
    replacement = same_size_jpeg(other, before.st_size, seed=3)
    target.write_bytes(replacement)
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (target.stat().st_size, target.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    report = annotate_photos(store, [tmp_path / "photos"])
    assert report.reannotated == 1 and report.unchanged == 3
    with annot.open_store(store) as api:
        image_id = api.photo_id(target)
        shown = [t.tag for t in api.photo_tags([image_id])[image_id]]
        fresh = [t.tag for t in api.query([target])[0].tags]
    assert shown == fresh
    with StoreDir.open(store) as s, s.db.connect() as conn:
        stored = conn.execute(select(images.c.sha256).where(images.c.id == image_id)).scalar()
    assert stored == hashlib.sha256(replacement).hexdigest()

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("an unchanged photo was read")

    monkeypatch.setattr(scan, "content_hash", no_reading)
    monkeypatch.setattr(collection, "probe_image", no_reading)
    monkeypatch.setattr(collection, "image_size", no_reading)
    rerun = annotate_photos(store, [tmp_path / "photos"])
    assert rerun.unchanged == 4 and rerun.annotated == rerun.reannotated == 0
    assert_consistent(store)


# -- 7. the person's files stay theirs ------------------------------------------------------------------------------
SIDECAR = """<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="4"/></rdf:RDF></x:xmpmeta>"""
ENTITIES = {
    "external entity": '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                       '<x:xmpmeta xmlns:x="adobe:ns:meta/">&e;</x:xmpmeta>',
    "billion laughs": '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;'
                      '&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
                      '<x:xmpmeta xmlns:x="adobe:ns:meta/">&c;</x:xmpmeta>',
}


@pytest.mark.slow
@pytest.mark.parametrize("attack", sorted(ENTITIES))
def test_export_leaves_the_persons_files_theirs(store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                attack: str) -> None:
    photos = sorted(make_photos(tmp_path / "photos", 4, seed=17))
    annotate_photos(store, [tmp_path / "photos"])
    sidecars = [p.with_name(p.name + ".xmp") for p in photos]
    sidecars[0].write_text(SIDECAR)
    sidecars[0].chmod(0o444)
    sidecars[1].write_text(SIDECAR)
    sidecars[1].chmod(0o640)
    stale = photos[2].with_name(f".{photos[2].name}.xmp.k1ll3d.tmp")
    stale.write_text("half a sidecar")
    sidecars[3].write_text(ENTITIES[attack])
    result = invoke("export", "--store", store)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert str(sidecars[3]) in result.stderr and "DTD" in result.stderr
    assert f"left alone {sidecars[0]}: write-protected" in result.stderr
    assert sidecars[0].read_text() == SIDECAR and stat.S_IMODE(sidecars[0].stat().st_mode) == 0o444
    assert stat.S_IMODE(sidecars[1].stat().st_mode) == 0o640 and "dc:subject" in sidecars[1].read_text()
    assert 'xmp:Rating="4"' in sidecars[1].read_text()
    assert sidecars[2].is_file() and not stale.exists()
    assert sidecars[3].read_text() == ENTITIES[attack]
    monkeypatch.setattr(export_module, "MAX_SIDECAR_BYTES", 100)
    sidecars[3].unlink()
    merged = sidecars[1].read_text()
    bounded = invoke("export", "--store", store)
    assert bounded.exit_code == 1 and f"{sidecars[1]}: " in bounded.stderr and "over the 100" in bounded.stderr
    assert sidecars[1].read_text() == merged and sidecars[3].is_file()
    assert_consistent(store)


@pytest.mark.slow
def test_a_refused_kept_upload_leaves_no_file(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import annot.api

    monkeypatch.setattr(annot.api, "WRITE_WAIT", 0.5)  # the server's writes wait this long for another writer
    with Server(create_app(store)) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        with StoreDir.open(store, write=True):  # another writer holds the store for a whole run
            busy = client.post("/v1/annotate", params={"keep": True}, files={"image": ("a.jpg", jpeg(["sky"]))})
        assert busy.status_code == 409, busy.text
        bad = client.post("/v1/annotate", params={"keep": True}, files={"image": ("b.jpg", b"GIF89a" + b"\0" * 64)})
        assert bad.status_code == 415
    uploads = store / "uploads"
    assert not uploads.exists() or sorted(uploads.iterdir()) == []
    assert_consistent(store)
