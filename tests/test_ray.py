"""`annot index --ray`: a real local Ray cluster (a head and one worker node on 127.0.0.1), same store as locally."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import conftest
from annot.errors import AnnotError
from annot.indexer import build_index
from annot.model import StoreModel
from annot.store import StoreDir
from conftest import fake_settings

pytestmark = pytest.mark.cluster


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`ray start --head` on 127.0.0.1 plus one worker node; stopped afterwards."""
    import ray
    from ray import cloudpickle

    ray_bin = shutil.which("ray") or str(Path(__import__("sys").executable).with_name("ray"))
    port = free_port()
    temp = tmp_path_factory.mktemp("ray")
    common = ["--num-cpus=1", "--disable-usage-stats"]
    subprocess.run([ray_bin, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--include-dashboard=false",
                    f"--temp-dir={temp}", *common], check=True, capture_output=True, timeout=180)
    address = f"127.0.0.1:{port}"
    try:
        subprocess.run([ray_bin, "start", f"--address={address}", "--node-ip-address=127.0.0.1", *common],
                       check=True, capture_output=True, timeout=180)
        cloudpickle.register_pickle_by_value(conftest)  # the test encoder travels to the workers by value
        yield address
    finally:
        ray.shutdown()
        subprocess.run([ray_bin, "stop", "--force"], capture_output=True, timeout=120, check=False)


def test_index_on_ray_equals_the_local_index(cluster: str, synthetic: dict[str, Path], built_store: Path, tmp_path: Path) -> None:
    import ray

    store = tmp_path / "ray.annot"
    config = fake_settings(synthetic, k=3, temperature=0.1, ray=cluster)
    report = build_index(synthetic["train"], store, config)
    assert report.extracted == 160 and report.n_indexed == 160
    nodes = [n for n in ray.nodes() if n["Alive"]]
    assert len(nodes) == 2  # the head and the worker node
    with StoreDir.open(store) as s, StoreDir.open(built_store) as local:
        ray_model, local_model = StoreModel(s), StoreModel(local)
        ids = np.sort(local_model.ids)
        # ids are per store; compare by path
        ray_paths = dict(s.db.read_sql("SELECT path, id FROM images")[1])
        local_paths = dict(local.db.read_sql("SELECT path, id FROM images")[1])
        assert set(ray_paths) >= set(local_paths)
        order = sorted(local_paths)
        x_ray = ray_model.feature_cache().load([ray_paths[p] for p in order])
        x_local = local_model.feature_cache().load([local_paths[p] for p in order])
        np.testing.assert_allclose(x_ray, x_local, rtol=1e-6)  # the same features, extracted on the workers
        np.testing.assert_allclose(ray_model.projection.canonical_correlations_,
                                   local_model.projection.canonical_correlations_, atol=1e-10)
        np.testing.assert_allclose(np.abs(ray_model.projection.x_weights_), np.abs(local_model.projection.x_weights_),
                                   rtol=1e-7, atol=1e-10)
        assert len(ids) == ray_model.index.ntotal
        a = ray_model.predict(x_ray[:20], ray_model.settings.scoring)
        b = local_model.predict(x_local[:20], local_model.settings.scoring)
        assert [p.words.tolist() for p in a] == [p.words.tolist() for p in b]
    manifest = json.loads((store / "manifest.json").read_text())
    assert manifest["settings"]["ray"] == cluster


def test_no_cluster_at_the_address_is_a_clear_error(synthetic: dict[str, Path], tmp_path: Path) -> None:
    import ray

    ray.shutdown()
    config = fake_settings(synthetic, ray=f"127.0.0.1:{free_port()}")
    with pytest.raises(AnnotError, match="cannot join a Ray cluster"):
        build_index(synthetic["train"], tmp_path / "none.annot", config)


class KilledOnce(conftest.FakeEncoder):
    """The test encoder, whose first encoding SIGKILLs the worker process running it (a marker file says it did)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def encode(self, pixels):  # type: ignore[no-untyped-def]
        import os
        import signal

        if not os.path.exists(self.marker):
            Path(self.marker).write_text("killed")
            os.kill(os.getpid(), signal.SIGKILL)
        return super().encode(pixels)


def library_of(store: Path) -> dict[str, tuple[list[tuple[str, float]], np.ndarray]]:
    """Each library photo by path: its shown tags with confidence, and its vector in the library index."""
    import annot
    from annot.library.vectors import read_library

    with annot.open_store(store) as api:
        model = api.model()
        paths = dict(model.store.db.read_sql("SELECT i.id, i.path FROM images i JOIN photo_files f ON f.image_id = i.id")[1])
        shown = api.photo_tags(sorted(paths))
        record = model.manifest.collection
        index = read_library(model.store, record, model.index.d)
        rows = index.vectors_of(np.array(sorted(paths), np.int64))
    return {paths[i]: ([(t.tag, round(t.confidence or 0, 5)) for t in shown[i]], rows[j])
            for j, i in enumerate(sorted(paths))}


def test_annotate_on_ray_equals_the_local_run_and_survives_a_killed_worker(
        cluster: str, built_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from ray import cloudpickle

    from annot.library.collection import annotate_photos
    from annot.model import StoreModel
    from test_library import make_photos

    make_photos(tmp_path / "photos", 40, seed=12)
    local, remote = tmp_path / "local.annot", tmp_path / "remote.annot"
    shutil.copytree(built_store, local)
    shutil.copytree(built_store, remote)
    assert annotate_photos(local, [tmp_path / "photos"]).annotated == 40
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    marker = tmp_path / "killed"
    monkeypatch.setattr(StoreModel, "encoder", lambda self: KilledOnce(str(marker)))
    report = annotate_photos(remote, [tmp_path / "photos"], ray=cluster)
    assert marker.read_text() == "killed"  # a worker died in the middle of its task, and Ray ran the task again
    assert report.annotated == 40 and not report.unreadable
    a, b = library_of(local), library_of(remote)
    assert set(a) == set(b)
    for path in a:
        assert a[path][0] == b[path][0]  # the same tags and confidences
        np.testing.assert_allclose(a[path][1], b[path][1], rtol=1e-5, atol=1e-6)  # the same vectors
