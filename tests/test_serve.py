"""annot serve: the JSON API through a real HTTP server on 127.0.0.1 (started and stopped here)."""

from __future__ import annotations

import io
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Self

import httpx
import numpy as np
import pytest
from PIL import Image
from tests.conftest import invoke, paint
from tests.test_library import make_photos

import annot
from annot.evaluation.evaluate import evaluate
from annot.library.collection import annotate_photos
from annot.serve import is_loopback
from annot.serve.app import Limits, create_app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """uvicorn serving an app in a thread, on loopback."""

    def __init__(self, app: object) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture(scope="module")
def served(built_store: Path, synthetic: dict[str, Path], tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[dict[str, object]]:
    """A store with a library of 12 photos and one evaluation run, served with small upload limits."""
    root = tmp_path_factory.mktemp("served")
    store = root / "s.annot"
    shutil.copytree(built_store, store)
    photos = make_photos(root / "photos", 12, seed=41)
    annotate_photos(store, [root / "photos"])
    evaluate(store, synthetic["test"])
    app = create_app(store, limits=Limits(max_bytes=400_000, max_pixels=2_000_000))
    with Server(app) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        yield {"store": store, "photos": photos, "client": client, "app": app, "url": server.url, "root": root}


def jpeg(tags: list[str], seed: int = 0, size: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(paint(tags, np.random.default_rng(seed), size)).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def test_health(served: dict[str, object]) -> None:
    client: httpx.Client = served["client"]  # type: ignore[assignment]
    health = client.get("/v1/health").json()
    assert health["status"] == "ok" and health["training_images"] == 160 and health["library_photos"] == 12
    assert health["calibrated"] is True and health["encoder"] == "fake"


def test_annotate_returns_what_the_library_call_returns(served: dict[str, object], tmp_path: Path) -> None:
    client: httpx.Client = served["client"]  # type: ignore[assignment]
    data = jpeg(["sky", "sand"], seed=3)
    answer = client.post("/v1/annotate", files={"image": ("beach.jpg", data, "image/jpeg")}, params={"explain": True})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    (tmp_path / "beach.jpg").write_bytes(data)
    with annot.open_store(served["store"]) as api:  # type: ignore[arg-type]
        expected = api.query([tmp_path / "beach.jpg"])[0]
    assert [t["tag"] for t in body["tags"]] == [t.tag for t in expected.tags]
    assert [t["confidence"] for t in body["tags"]] == [round(t.confidence, 4) for t in expected.tags]  # type: ignore[arg-type]
    voters = [v for t in body["tags"] for v in t["voters"]]
    assert voters and all(v["thumbnail"] == f"/v1/images/{v['id']}/thumbnail" for v in voters)
    thumb = client.get(voters[0]["thumbnail"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size[0] > 0
    fewer = client.post("/v1/annotate", files={"image": ("b.jpg", data)}, params={"n": 2}).json()
    assert len(fewer["tags"]) == 2 and "voters" not in fewer["tags"][0]


def test_concurrent_annotate_requests_are_batched(served: dict[str, object]) -> None:
    client: httpx.Client = served["client"]  # type: ignore[assignment]
    app = served["app"]
    uploads = [jpeg([w], seed=i) for i, w in enumerate(["sky", "sea", "tree", "grass"] * 4)]
    alone = [client.post("/v1/annotate", files={"image": ("x.jpg", u)}).json()["tags"] for u in uploads]
    batches_before = app.state.batcher.batches  # type: ignore[attr-defined]

    def post(u: bytes) -> list[dict[str, object]]:
        with httpx.Client(base_url=str(served["url"]), timeout=60) as c:
            response = c.post("/v1/annotate", files={"image": ("x.jpg", u)})
            assert response.status_code == 200
            return response.json()["tags"]  # type: ignore[no-any-return]

    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(post, uploads))
    assert [[t["tag"] for t in a] for a in together] == [[t["tag"] for t in a] for a in alone]
    batches = app.state.batcher.batches - batches_before  # type: ignore[attr-defined]
    assert 1 <= batches <= 16 and app.state.batcher.items >= 32  # type: ignore[attr-defined]


def test_the_batcher_gathers_what_waits_while_it_works() -> None:
    """Jobs that arrive while a batch runs go together into the next one, grouped by key, each with its result."""
    from annot.serve.batching import Batcher

    release, running = threading.Event(), threading.Event()
    calls: list[tuple[object, list[int]]] = []

    def run(key: object, items: list[int]) -> list[int]:
        calls.append((key, list(items)))
        if len(calls) == 1:
            running.set()
            assert release.wait(30)
        if -1 in items:
            raise ValueError("a bad item")
        return [i * 10 for i in items]

    batcher: Batcher[int, int] = Batcher(run, max_batch=8)  # type: ignore[arg-type]
    try:
        first = batcher.submit("a", 0)
        assert running.wait(30)  # the worker is inside the first batch: what comes now waits in the queue
        waiting = [batcher.submit("a" if i % 2 else "b", i) for i in range(1, 11)]
        release.set()
        assert first.result(30) == 0 and [f.result(30) for f in waiting] == [i * 10 for i in range(1, 11)]
        assert calls[0] == ("a", [0])
        assert calls[1:3] == [("a", [1, 3, 5, 7]), ("b", [2, 4, 6, 8])]  # the next 8, by key, in order
        assert calls[3:] == [("a", [9]), ("b", [10])] and batcher.batches == 5 and batcher.items == 11
        with pytest.raises(ValueError, match="a bad item"):
            batcher.submit("a", -1).result(30)
    finally:
        batcher.close()


def test_bad_uploads_get_a_json_error_and_the_server_stays_up(served: dict[str, object]) -> None:
    client: httpx.Client = served["client"]  # type: ignore[assignment]
    text = client.post("/v1/annotate", files={"image": ("notes.jpg", b"just some text")})
    assert text.status_code == 415 and "not a readable image" in text.json()["error"]
    empty = client.post("/v1/annotate", files={"image": ("empty.jpg", b"")})
    assert empty.status_code == 415
    big = client.post("/v1/annotate", files={"image": ("big.jpg", b"\xff" * 500_000)})
    assert big.status_code == 413 and "over 400,000 bytes" in big.json()["error"]
    buffer = io.BytesIO()
    Image.new("L", (3000, 3000)).save(buffer, "PNG")  # 9 megapixels in a few kilobytes
    bomb = client.post("/v1/annotate", files={"image": ("bomb.png", buffer.getvalue())})
    assert bomb.status_code == 413 and "pixel limit" in bomb.json()["error"]
    like_bomb = client.post("/v1/search", files={"image": ("bomb.png", buffer.getvalue())})
    assert like_bomb.status_code == 413
    missing = client.post("/v1/annotate")
    assert missing.status_code == 422 and "image" in missing.json()["error"]
    assert client.get("/v1/health").status_code == 200


def test_search_by_words_and_by_example(served: dict[str, object]) -> None:
    client: httpx.Client = served["client"]  # type: ignore[assignment]
    found = client.get("/v1/search", params={"q": "sky", "n": 10, "all": True}).json()["results"]
    assert len(found) == 10 and all(r["thumbnail"] == f"/v1/images/{r['id']}/thumbnail" for r in found)
    cut = client.get("/v1/search", params={"q": "sky", "n": 10}).json()
    with annot.open_store(served["store"]) as api:  # type: ignore[arg-type]
        assert [r["id"] for r in found] == [h.image_id for h in api.search(["sky"], n=10, all_results=True)]
        shown = api.find(["sky"], n=10)
        assert [r["id"] for r in cut["results"]] == [h.image_id for h in shown.hits]
        assert cut["left_out"] == shown.left_out and cut["partial"] is False
    filtered = client.get("/v1/search", params={"q": "sky", "require": "sea", "exclude": ["sun"], "n": 50}).json()
    assert all({t["tag"] for t in r["tags"]} >= {"sea"} and "sun" not in {t["tag"] for t in r["tags"]}
               for r in filtered["results"])
    photos: dict[Path, list[str]] = served["photos"]  # type: ignore[assignment]
    example = min(photos)
    like = client.post("/v1/search", files={"image": ("e.jpg", example.read_bytes())}, data={"n": "3"}).json()
    assert like["results"][0]["path"] == str(example) and like["results"][0]["score"] == pytest.approx(1.0, abs=1e-3)
    bad = client.get("/v1/search", params={"q": "sky", "mode": "fuzzy"})
    assert bad.status_code == 422 and bad.json()["error"].startswith("mode must be one of")  # in the request's words
    assert client.get("/v1/search").status_code == 422


def test_images_by_id_only(served: dict[str, object]) -> None:
    client: httpx.Client = served["client"]  # type: ignore[assignment]
    photo = client.get("/v1/images/1").json()
    assert photo["id"] == 1 and photo["kind"] == "training" and photo["tags"]
    assert client.get("/v1/images/999999").status_code == 404
    assert client.get("/v1/images/999999/thumbnail").status_code == 404
    for probe in ("/v1/images/..%2F..%2Fetc%2Fpasswd", "/v1/images/%2Fetc%2Fpasswd/thumbnail", "/v1/images/abc"):
        response = client.get(probe)
        assert response.status_code in (404, 422) and b"root:" not in response.content
    tags = client.get("/v1/tags").json()["tags"]
    assert len(tags) == 8 and sum(t["library_photos"] for t in tags) == 12 * 5
    assert all(t["training_images"] > 0 for t in tags)


@pytest.mark.slow
def test_corrections_show_at_once(served: dict[str, object]) -> None:
    client: httpx.Client = served["client"]  # type: ignore[assignment]
    photos: dict[Path, list[str]] = served["photos"]  # type: ignore[assignment]
    target = sorted(photos)[3]
    image_id = client.post("/v1/search", files={"image": ("t.jpg", target.read_bytes())},
                           data={"n": "1"}).json()["results"][0]["id"]
    tags_before = client.get(f"/v1/images/{image_id}").json()["tags"]
    tag = tags_before[-1]["tag"]
    answer = client.post("/v1/corrections", json={"id": image_id, "tag": tag, "action": "confirm"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["recorded"] == 1
    shown = {t["tag"]: t["source"] for t in client.get(f"/v1/images/{image_id}").json()["tags"]}
    assert shown[tag] == "confirmed"
    many = client.post("/v1/corrections", json={"corrections": [{"id": image_id, "tag": tags_before[0]["tag"],
                                                                 "action": "reject"}]})
    assert many.status_code == 200
    assert tags_before[0]["tag"] not in {t["tag"] for t in many.json()["photos"][0]["tags"]}
    unknown = client.post("/v1/corrections", json={"id": image_id, "tag": "zebra", "action": "reject"})
    assert unknown.status_code == 400 and "not a word of the store's vocabulary" in unknown.json()["error"]
    new = client.post("/v1/corrections", json={"id": image_id, "tag": " Zebra  Crossing", "action": "add"})
    assert new.status_code == 200 and new.json()["new_words"] == ["zebra crossing"]
    assert {t["tag"]: t["source"] for t in new.json()["photos"][0]["tags"]}["zebra crossing"] == "added"
    assert "zebra crossing" in {w["tag"] for w in client.get("/v1/tags").json()["tags"]}
    nobody = client.post("/v1/corrections", json={"id": 999999, "tag": "sky", "action": "add"})
    assert nobody.status_code == 404
    verb = client.post("/v1/corrections", json={"id": image_id, "tag": "sky", "action": "love"})
    assert verb.status_code == 422 and "confirm" in verb.json()["error"]


def test_runs_and_their_words(served: dict[str, object]) -> None:
    client: httpx.Client = served["client"]  # type: ignore[assignment]
    runs = client.get("/v1/runs").json()["runs"]
    assert len(runs) == 1 and runs[0]["dataset"] == "test.jsonl" and 0 < runs[0]["f1"] <= 1
    words = client.get(f"/v1/runs/{runs[0]['id']}/words").json()["words"]
    assert len(words) == 8 and [w["train_frequency"] for w in words] == sorted((w["train_frequency"] for w in words),
                                                                               reverse=True)
    assert client.get("/v1/runs/99/words").status_code == 404


def test_page_docs_and_openapi_are_offline(served: dict[str, object]) -> None:
    client: httpx.Client = served["client"]  # type: ignore[assignment]
    paths = set(client.get("/openapi.json").json()["paths"])
    assert {"/v1/health", "/v1/annotate", "/v1/search", "/v1/images/{image_id}", "/v1/images/{image_id}/thumbnail",
            "/v1/tags", "/v1/corrections", "/v1/runs", "/v1/runs/{run_id}/words"} <= paths
    for page in ("/", "/static/app.js", "/static/app.css", "/docs"):
        response = client.get(page)
        assert response.status_code == 200
        assert "http://" not in response.text.replace("http://www.w3.org/2000/svg", "") and "https://" not in response.text
    docs = client.get("/docs").text
    for asset in ("/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css"):
        assert asset in docs and client.get(asset).status_code == 200


@pytest.mark.slow
def test_writers_beside_the_server_are_picked_up(served: dict[str, object]) -> None:
    client: httpx.Client = served["client"]  # type: ignore[assignment]
    before = client.get("/v1/health").json()["library_photos"]
    root: Path = served["root"]  # type: ignore[assignment]
    make_photos(root / "more", 3, seed=55, prefix="m")
    result = invoke("annotate", root / "more", "--store", served["store"])  # as another process would
    assert result.exit_code == 0, result.output
    assert client.get("/v1/health").json()["library_photos"] == before + 3
    assert len(client.get("/v1/search", params={"q": "sky", "n": 500}).json()["results"]) > 0


def test_writes_need_the_token_off_loopback(built_store: Path, tmp_path: Path) -> None:
    store = tmp_path / "t.annot"
    shutil.copytree(built_store, store)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("0.0.0.0")
    assert not is_loopback("192.168.1.20")
    with Server(create_app(store, token="s3cret")) as server, httpx.Client(base_url=server.url) as client:
        assert client.get("/v1/health").status_code == 200  # reads need no token
        body = {"id": 1, "tag": "sky", "action": "confirm"}
        refused = client.post("/v1/corrections", json=body)
        assert refused.status_code == 401 and "token" in refused.json()["error"]
        wrong = client.post("/v1/corrections", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        kept = client.post("/v1/annotate", params={"keep": True}, files={"image": ("k.jpg", jpeg(["sky"]))})
        assert kept.status_code == 401
        ok = client.post("/v1/corrections", json=body, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200, ok.text


def test_serve_cli_refuses_a_missing_store(tmp_path: Path) -> None:
    result = invoke("serve", "--store", tmp_path / "none.annot")
    assert result.exit_code == 1 and "no such store" in result.stderr and "Traceback" not in result.output


@pytest.mark.slow
def test_kept_uploads_join_the_library(served: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    """A kept upload joins the library from the answer's features: decoded and encoded once, for the answer."""
    from annot.features import cache

    client: httpx.Client = served["client"]  # type: ignore[assignment]
    data = jpeg(["snow", "city"], seed=99)

    def no_second_encoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("the kept upload was encoded again")

    monkeypatch.setattr(cache, "encode_paths", no_second_encoding)
    kept = client.post("/v1/annotate", params={"keep": True}, files={"image": ("holiday.jpg", data)})
    assert kept.status_code == 200, kept.text
    photo = client.get(f"/v1/images/{kept.json()['id']}").json()
    assert photo["kind"] == "library" and Path(photo["path"]).parent.name == "uploads"
    assert [t["tag"] for t in photo["tags"]] == [t["tag"] for t in kept.json()["tags"]]
    again = client.post("/v1/annotate", params={"keep": True}, files={"image": ("same.jpg", data)})
    assert again.json()["id"] == kept.json()["id"]  # the same bytes are the same photo


@pytest.mark.slow
def test_a_reload_beside_busy_readers_reads_the_new_database(built_store: Path, tmp_path: Path) -> None:
    """Kept uploads and corrections while other requests read: each answer shows the write it follows (a reload
    once handed the old database to the new model, and the photo just kept was 'not a photo of' the store)."""
    store = tmp_path / "s.annot"
    shutil.copytree(built_store, store)
    make_photos(tmp_path / "photos", 6, seed=71)
    annotate_photos(store, [tmp_path / "photos"])
    with Server(create_app(store)) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        stop = threading.Event()
        photo = client.get("/v1/search", params={"q": "sky", "scope": "library", "n": 1}).json()["results"][0]["id"]

        def read() -> None:
            with httpx.Client(base_url=server.url, timeout=60) as reader:
                while not stop.is_set():
                    assert reader.get(f"/v1/images/{photo}/thumbnail", params={"size": 64}).status_code == 200

        readers = [threading.Thread(target=read) for _ in range(4)]
        for thread in readers:
            thread.start()
        try:
            for i in range(10):
                kept = client.post("/v1/annotate", params={"keep": True},
                                   files={"image": (f"k{i}.jpg", jpeg(["sea", "sand"], seed=200 + i, size=96))})
                assert kept.status_code == 200, kept.text
                tags = client.get(f"/v1/images/{kept.json()['id']}").json()["tags"]
                weakest = tags[-1]["tag"]
                answer = client.post("/v1/corrections", json={"id": kept.json()["id"], "tag": weakest,
                                                              "action": "confirm"})
                shown = {t["tag"]: t["source"] for t in answer.json()["photos"][0]["tags"]}
                assert shown[weakest] == "confirmed", (i, shown)
        finally:
            stop.set()
            for thread in readers:
                thread.join()


def test_browse_the_library_by_page_folder_tag_and_review(served: dict[str, object]) -> None:
    client: httpx.Client = served["client"]  # type: ignore[assignment]
    photos: dict[Path, list[str]] = served["photos"]  # type: ignore[assignment]
    first = client.get("/v1/photos", params={"limit": 5}).json()
    assert first["total"] >= 12 and len(first["photos"]) == 5 and first["offset"] == 0
    rest = client.get("/v1/photos", params={"limit": 200, "offset": 5}).json()["photos"]
    everything = first["photos"] + rest
    assert len({p["id"] for p in everything}) == first["total"]  # pages neither repeat nor skip a photo
    dates = [p["date"] for p in everything]
    assert dates == sorted(dates, reverse=True)  # newest first
    names = [p["path"] for p in client.get("/v1/photos", params={"order": "name", "limit": 200}).json()["photos"]]
    assert names == sorted(names)
    folder = str(min(photos).parent)
    inside = client.get("/v1/photos", params={"folder": folder, "limit": 200}).json()
    assert inside["total"] == 12 and all(p["folder"] == folder for p in inside["photos"])
    facets = client.get("/v1/facets").json()
    assert {"folder": folder, "count": 12} in facets["folders"] and facets["photos"] == first["total"]
    assert sum(m["count"] for m in facets["months"]) == facets["photos"]
    word = facets["tags"][0]
    tagged = client.get("/v1/photos", params={"tag": word["tag"], "limit": 200, "order": "confidence"}).json()
    assert tagged["total"] == word["count"] and all(word["tag"] in {t["tag"] for t in p["tags"]}
                                                    for p in tagged["photos"])
    shown = [next(t["confidence"] for t in p["tags"] if t["tag"] == word["tag"]) for p in tagged["photos"]]
    assert shown == sorted(shown, reverse=True)
    waiting = client.get("/v1/photos", params={"unreviewed": True, "limit": 200}).json()
    assert waiting["total"] == facets["not_reviewed"] and not any(p["reviewed"] for p in waiting["photos"])
    for bad in ({"offset": 10**12}, {"limit": 0}, {"limit": 201}, {"order": "random"}, {"date": "June"}):
        answer = client.get("/v1/photos", params=bad)
        assert answer.status_code == 422 and "error" in answer.json(), bad
    assert client.get("/v1/photos", params={"offset": 10**6}).json()["photos"] == []  # past the end: empty


def test_a_photo_in_the_viewer(served: dict[str, object]) -> None:
    """A photo's details, its rendition (bounded, never enlarged), its original by id, why it has its tags, and the
    photos like it."""
    client: httpx.Client = served["client"]  # type: ignore[assignment]
    photos: dict[Path, list[str]] = served["photos"]  # type: ignore[assignment]
    path = min(photos)
    with annot.open_store(served["store"]) as api:  # type: ignore[arg-type]
        photo_id = api.photo_id(path)
    info = client.get(f"/v1/images/{photo_id}").json()
    assert info["name"] == path.name and info["folder"] == str(path.parent) and info["bytes"] == path.stat().st_size
    assert info["taken"] is None and info["camera"] is None  # painted photos have no EXIF
    big = client.get(f"/v1/images/{photo_id}/rendition", params={"size": 2048})
    assert big.status_code == 200 and Image.open(io.BytesIO(big.content)).size == (info["width"], info["height"])
    assert client.get(f"/v1/images/{photo_id}/rendition", params={"size": 100_000}).status_code == 422
    original = client.get(f"/v1/images/{photo_id}/original")
    assert original.status_code == 200 and original.content == path.read_bytes()
    assert original.headers["content-type"] == "image/jpeg"
    assert client.get("/v1/images/999999/original").status_code == 404
    assert client.get("/v1/images/%2Fetc%2Fpasswd/original").status_code in (404, 422)
    why = client.get(f"/v1/images/{photo_id}/explain").json()
    assert why["tags"] and all(t["voters"] for t in why["tags"])
    assert all(v["thumbnail"] == f"/v1/images/{v['id']}/thumbnail" for t in why["tags"] for v in t["voters"])
    similar = client.get("/v1/search", params={"like": photo_id, "n": 3}).json()["results"]
    assert similar[0]["id"] == photo_id
    assert client.get("/v1/search", params={"like": 999999}).status_code == 404
    assert client.get("/v1/search", params={"q": " "}).status_code == 422


@pytest.mark.slow
def test_kept_uploads_keep_their_name(served: dict[str, object]) -> None:
    from annot.serve.routes.annotate import kept_name

    client: httpx.Client = served["client"]  # type: ignore[assignment]
    first = client.post("/v1/annotate", params={"keep": True}, files={"image": ("Beach day.JPG", jpeg(["sea"], 7))})
    second = client.post("/v1/annotate", params={"keep": True}, files={"image": ("Beach day.JPG", jpeg(["sea"], 8))})
    assert first.status_code == 200 and second.status_code == 200, second.text
    assert Path(first.json()["path"]).name == "Beach day.jpg" and Path(second.json()["path"]).name == "Beach day-2.jpg"
    assert Path(first.json()["path"]).parent == Path(served["store"]) / "uploads"  # type: ignore[arg-type]
    assert kept_name("../../etc/passwd") == "passwd.jpg" and kept_name(".hidden.png") == "hidden.png"
    assert kept_name("a\x00b\nc.jpeg") == "abc.jpeg" and kept_name("") == "upload.jpg"
    assert len(kept_name("x" * 500 + ".jpg")) == 104


@pytest.mark.slow
def test_rescoring_is_bounded_per_request(served: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    """A correction changes the model, so every library photo waits to be re-scored; each request scores at most
    its share and says how many are left, until none is."""
    from annot.serve.routes import review

    client: httpx.Client = served["client"]  # type: ignore[assignment]
    photos: dict[Path, list[str]] = served["photos"]  # type: ignore[assignment]
    with annot.open_store(served["store"]) as api:  # type: ignore[arg-type]
        photo = api.photo_id(max(photos))
    assert client.post("/v1/corrections", json={"id": photo, "tag": "sky", "action": "add"}).status_code == 200
    monkeypatch.setattr(review, "RESCORE_LIMIT", 5)
    answers = []
    while not answers or answers[-1]["left"]:
        answers.append(client.post("/v1/rescore").json())
        assert answers[-1]["rescored"] <= 5 and len(answers) < 10
    total = client.get("/v1/photos", params={"limit": 1}).json()["total"]
    assert sum(a["rescored"] for a in answers) == total and answers[0]["left"] == total - 5
    again = client.post("/v1/rescore").json()  # nothing waits: nothing scored
    assert (again["rescored"], again["tags_changed"], again["left"]) == (0, 0, 0)
