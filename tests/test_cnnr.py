"""CNN-R: training drives the loss down and answers the planted tags; resume; clear errors; its two uses."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from annot.errors import AnnotError, EncoderError
from annot.evaluation.evaluate import evaluate
from annot.indexer import build_index
from annot.methods.cnnr.train import CHECKPOINT, CNNRConfig, targets, train_cnnr
from annot.settings import ScoringSettings, SettingsError
from annot.store import StoreDir
from conftest import fake_settings, invoke, tiny_backbone, write_word_vectors

FAST = CNNRConfig(backbone="tiny16", epochs=30, batch_size=32, lr=1e-2, lr_ratio=0.5, patience=30)




@pytest.fixture(scope="module")
def trained(built_store: Path, synthetic: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("cnnr") / "s.annot"
    shutil.copytree(built_store, root)
    report = train_cnnr(root, FAST)
    return root, report


def test_targets_are_mean_tag_vectors() -> None:
    E = np.array([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]], np.float32)
    labels = np.array([[1, 1, 0], [0, 0, 1], [0, 0, 0]], bool)
    Y, usable = targets(labels, E, np.array([True, True, False]))
    np.testing.assert_allclose(Y[0], [0.5, 0.5])
    assert usable.tolist() == [True, False, False]  # word 2 has no vector; row 2 has no tags


@pytest.mark.slow
def test_training_lowers_the_loss_and_answers_the_planted_tags(trained, synthetic: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    root, report = trained
    losses = [h["train_loss"] for h in report.history]
    assert losses[-1] < 0.5 * losses[0]
    assert report.n_train + report.n_validation == 160 and report.n_validation == 16
    assert (root / report.model_file).is_file() and (root / CHECKPOINT).is_file()
    result = evaluate(root, synthetic["test"], scoring=ScoringSettings(method="cnn-r", n_tags=3))
    prior = evaluate(root, synthetic["test"], scoring=ScoringSettings(method="freq", n_tags=3))
    assert result.summary.recall > 0.6 and result.summary.f1 > prior.summary.f1 + 0.2
    assert result.params["method"] == "cnn-r" and result.params["backbone"] == "tiny16"


def test_validation_f1_is_what_answering_the_validation_images_gives(trained, synthetic: dict[str, Path],  # type: ignore[no-untyped-def]
                                                                      tmp_path: Path) -> None:
    """The per-epoch validation F1 (used to compare targets and word vectors on training data) is the F1 that
    `annot eval --method cnn-r` gives on the same held-out training images with the kept weights."""
    from sqlalchemy import select

    from annot.schema import images

    root, report = trained
    assert len(report.validation_ids) == report.n_validation == 16
    with StoreDir.open(root) as s, s.db.connect() as conn:
        paths = {i: p for i, p in conn.execute(select(images.c.id, images.c.path).where(images.c.id.in_(report.validation_ids)))}
    entries = {str((synthetic["folder"] / json.loads(line)["image"]).resolve()): json.loads(line)
               for line in synthetic["train"].read_text().splitlines()}
    held = tmp_path / "held.jsonl"  # copies of the held-out images: evaluating on a store's own paths is refused
    for i in report.validation_ids:  # the same pictures in other bytes (a byte after the JPEG's end), so that they
        # are not refused as copies of training images; they decode to the same pixels
        (tmp_path / f"{i}.jpeg").write_bytes(Path(paths[i]).read_bytes() + b"\0")
    held.write_text("".join(json.dumps({**entries[str(Path(paths[i]).resolve())], "image": f"{i}.jpeg"}) + "\n"
                            for i in report.validation_ids))
    result = evaluate(root, held, scoring=ScoringSettings(method="cnn-r", n_tags=5), record=False)
    kept = report.history[report.best_epoch - 1]
    assert kept["validation_f1"] == report.best_validation_f1
    assert abs(100 * result.summary.f1 - report.best_validation_f1) < 0.01
    assert result.summary.n_plus == kept["validation_n_plus"]
    f1s = [h["validation_f1"] for h in report.history]
    assert report.best_epoch == 1 + f1s.index(max(f1s))  # kept: the first epoch with the highest validation F1
    assert round(report.best_validation_loss, 5) == kept["validation_loss"]


def test_the_kept_epoch_and_early_stopping_follow_the_selection(store: Path, synthetic: dict[str, Path]) -> None:
    for select, value in (("loss", lambda h: h["validation_loss"]), ("f1", lambda h: -h["validation_f1"])):
        report = train_cnnr(store, CNNRConfig(backbone="tiny16", epochs=14, batch_size=32, lr=3e-2,
                                                                 lr_ratio=0.5, patience=2, select=select, restart=True))
        values = [value(h) for h in report.history]
        assert report.best_epoch == 1 + values.index(min(values))  # the first epoch with the best value
        assert len(report.history) in (14, report.best_epoch + 2)  # stopped 2 epochs after it without improvement
        with StoreDir.open(store) as s:
            info = s.manifest().cnnr.info  # type: ignore[union-attr]
            assert info["select"] == select and info["best_epoch"] == report.best_epoch
    with pytest.raises(AnnotError, match="cnnr.select must be one of"):
        train_cnnr(store, CNNRConfig(backbone="tiny16", epochs=1, select="accuracy", restart=True))


def test_resume_continues_from_the_checkpoint(store: Path, synthetic: dict[str, Path]) -> None:
    config = CNNRConfig(backbone="tiny16", epochs=2, batch_size=32, lr=1e-2)
    first = train_cnnr(store, config)
    second = train_cnnr(store, CNNRConfig(backbone="tiny16", epochs=4, batch_size=32, lr=1e-2))
    assert second.resumed_from_epoch == 2 and len(second.history) == 4
    assert second.history[:2] == first.history

    class Interrupt:
        def __init__(self) -> None:
            self.epochs = 0

        def task(self, description: str, total: int | None):  # type: ignore[no-untyped-def]
            from contextlib import contextmanager

            @contextmanager
            def run():  # type: ignore[no-untyped-def]
                if description.startswith("CNN-R epoch"):
                    self.epochs += 1
                    if self.epochs == 2:
                        raise KeyboardInterrupt
                yield lambda n: None

            return run()

    with pytest.raises(KeyboardInterrupt):  # interrupted during the 6th epoch: the 5th was checkpointed
        train_cnnr(store, CNNRConfig(backbone="tiny16", epochs=8, batch_size=32, lr=1e-2), Interrupt())
    third = train_cnnr(store, CNNRConfig(backbone="tiny16", epochs=6, batch_size=32, lr=1e-2))
    assert third.resumed_from_epoch == 5 and [h["epoch"] for h in third.history] == [1, 2, 3, 4, 5, 6]


@pytest.mark.slow
def test_a_checkpoint_for_another_backbone_or_dimension_is_a_clear_error(store: Path, synthetic: dict[str, Path], tmp_path: Path) -> None:
    train_cnnr(store, CNNRConfig(backbone="tiny16", epochs=1))
    with pytest.raises(AnnotError, match="--restart"):
        train_cnnr(store, CNNRConfig(backbone="tiny24", epochs=2))
    # a store whose word vectors have another dimension, given this checkpoint
    words = tmp_path / "words8.txt"
    write_word_vectors(words, dim=8)
    other = tmp_path / "other.annot"
    build_index(synthetic["train"], other, fake_settings({"words": words}, k=3))
    (other / CHECKPOINT).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(store / CHECKPOINT, other / CHECKPOINT)
    with pytest.raises(AnnotError, match="dim 6 there, 8 here") as info:
        train_cnnr(other, CNNRConfig(backbone="tiny16", epochs=2))
    assert "backbone" not in str(info.value)  # only the settings that differ are named
    report = train_cnnr(other, CNNRConfig(backbone="tiny24", epochs=1, restart=True))
    assert report.resumed_from_epoch == 0


@pytest.mark.slow
def test_cli_train_query_open_vocabulary_and_cnnr_encoder(store: Path, synthetic: dict[str, Path], tmp_path: Path) -> None:
    result = invoke("train-cnnr", "--store", store, "--backbone", "tiny16", "--epochs", "3",
                    "--target", "raw", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["best_epoch"] >= 1
    image = synthetic["folder"] / json.loads(synthetic["test"].read_text().splitlines()[0])["image"]

    result = invoke("query", image, "--store", store, "--method", "cnn-r", "--json", "-n", "9")
    assert result.exit_code == 0, result.output
    closed = [t["tag"] for t in json.loads(result.stdout)["annotations"][0]["tags"]]
    assert len(closed) == 8 and "unseen" not in closed  # only the 8 vocabulary words
    result = invoke("query", image, "--store", store, "--method", "cnn-r", "--open-vocabulary", "--json", "-n", "9")
    assert result.exit_code == 0, result.output
    opened = json.loads(result.stdout)["annotations"][0]["tags"]
    assert "unseen" in [t["tag"] for t in opened]  # a word no training image had can be named
    scores = [t["score"] for t in opened]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
    # raw target: the open vocabulary is the same space, so its vocabulary words come in the closed answer's order
    assert [t["tag"] for t in opened if t["tag"] != "unseen"] == closed[: len(opened) - 1]

    result = invoke("query", image, "--store", store, "--open-vocabulary")
    assert result.exit_code == 1 and "--method cnn-r" in result.output

    fine = tmp_path / "fine.annot"
    result = invoke("index", synthetic["train"], "--store", fine, "--encoder", f"cnnr:{store}", "--words", synthetic["words"],
                    "--k", "3", "--json")
    assert result.exit_code == 0, result.output
    with StoreDir.open(fine) as s:
        spec = s.manifest().encoder
    assert spec.name == f"cnnr:{store.resolve()}" and spec.dim == 16
    result = invoke("eval", synthetic["test"], "--store", fine, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["summary"]["R"] > 50


def test_cnnr_errors_name_the_store(store: Path, synthetic: dict[str, Path]) -> None:
    image = synthetic["folder"] / json.loads(synthetic["test"].read_text().splitlines()[0])["image"]
    result = invoke("query", image, "--store", store, "--method", "cnn-r")
    assert result.exit_code == 1 and "annot train-cnnr" in result.output and str(store) in result.output
    with pytest.raises(EncoderError, match="holds no trained CNN-R"):
        from annot.features.encoders import build_encoder

        build_encoder(f"cnnr:{store}")


def test_full_fine_tuning_trains_the_trunk_from_images(store: Path, synthetic: dict[str, Path]) -> None:
    import torch

    from annot.methods.cnnr.network import load_cnnr

    report = train_cnnr(store, CNNRConfig(backbone="tiny16", epochs=3, batch_size=32, lr=1e-2, full=True, warmup=0))
    assert report.full and report.history[-1]["train_loss"] < report.history[0]["train_loss"]
    assert not (store / "features" / "cnnr-trunk-tiny16").exists()  # no activation cache in this mode
    model, meta = load_cnnr(store / report.model_file)
    assert meta["full"] is True
    untouched = tiny_backbone(16)(None).trunk
    changed = [not torch.equal(a, b) for a, b in zip(model.backbone.trunk.state_dict().values(),
                                                     untouched.state_dict().values(), strict=True)]
    assert any(changed)  # the trunk's weights were trained and saved


def test_full_fine_tuning_warms_up_with_the_trunk_frozen_then_trains_it_at_its_size(store: Path) -> None:
    import torch

    from annot.features.encoders import build_encoder
    def trunk_changed() -> bool:
        saved = torch.load(store / CHECKPOINT, map_location="cpu", weights_only=False)
        untouched = tiny_backbone(16)(None).trunk.state_dict()
        return any(not torch.equal(t, untouched[n]) for n, t in saved["state"]["trunk"].items())

    config = CNNRConfig(backbone="tiny16", epochs=1, batch_size=32, lr=1e-2, full=True, size=24, warmup=1)
    first = train_cnnr(store, config)
    assert len(first.history) == 1 and not trunk_changed()  # the warm-up epoch trains the top and the new layer only
    second = train_cnnr(store, replace(config, epochs=2))
    assert second.resumed_from_epoch == 1 and len(second.history) == 2 and trunk_changed()
    encoder = build_encoder(f"cnnr:{store}")
    assert encoder.input_size == 24  # answers decode at the size the network was trained at
    with pytest.raises(SettingsError, match="full fine-tuning only"):
        train_cnnr(store, CNNRConfig(backbone="tiny16", epochs=1, full=False, size=24, restart=True))
    with pytest.raises(AnnotError, match="size 24 there, 32 here"):
        train_cnnr(store, replace(config, size=32, epochs=3))  # another size is another training


def test_full_fine_tuning_can_start_from_an_earlier_training(store: Path, tmp_path: Path) -> None:
    import torch

    from annot.methods.cnnr.network import load_cnnr

    top = train_cnnr(store, CNNRConfig(backbone="tiny16", epochs=2, batch_size=32, lr=1e-2))  # over cached activations
    start = tmp_path / "top.pt"
    shutil.copyfile(store / top.model_file, start)
    first, _ = load_cnnr(start)
    config = CNNRConfig(backbone="tiny16", epochs=1, batch_size=32, lr=0.0, full=True, warmup=0, init=start, restart=True)
    report = train_cnnr(store, config)  # a rate of 0: the weights it keeps are the ones it started from
    kept, _ = load_cnnr(store / report.model_file)
    assert torch.equal(kept.head.weight, first.head.weight) and report.full
    assert all(torch.equal(a, b) for a, b in zip(kept.backbone.top.parameters(), first.backbone.top.parameters(),
                                                 strict=True))  # (batch norm's running statistics move)
    with pytest.raises(SettingsError, match="other settings.*target whitened there, raw here"):
        train_cnnr(store, replace(config, target="raw"))
    with pytest.raises(SettingsError, match="no CNN-R model file"):
        train_cnnr(store, replace(config, init=tmp_path / "none.pt"))


def test_training_takes_turns_with_the_stores_other_writers(store: Path) -> None:
    from contextlib import contextmanager

    from annot.library.corrections import Correction, record_corrections
    from annot.store import StoreBusy

    class Meanwhile:  # during the second epoch: a correction, and a second training
        def __init__(self) -> None:
            self.epochs, self.corrected, self.refused = 0, 0, ""

        @contextmanager
        def task(self, description: str, total: int | None):  # type: ignore[no-untyped-def]
            if description.startswith("CNN-R epoch"):
                self.epochs += 1
                if self.epochs == 2:
                    with StoreDir.open(store) as reader:
                        image = int(reader.db.read_sql("SELECT min(id) FROM images")[1][0][0])
                    self.corrected = record_corrections(store, [Correction(image, "snow", "add")]).recorded
                    try:
                        train_cnnr(store, CNNRConfig(backbone="tiny16", epochs=1))
                    except StoreBusy as exc:
                        self.refused = str(exc)
            yield lambda n: None

    seen = Meanwhile()
    report = train_cnnr(store, CNNRConfig(backbone="tiny16", epochs=3, batch_size=32, lr=1e-2, patience=5), seen)
    assert seen.corrected == 1  # the store was not held while the network trained
    assert "CNN-R is being trained by process" in seen.refused
    with StoreDir.open(store) as s:
        manifest = s.manifest()
        assert manifest.cnnr is not None and manifest.cnnr.file.path == report.model_file  # switched after
        assert s.db.read_sql("SELECT count(*) FROM corrections")[1][0][0] == 1  # the correction kept


def test_centred_cosine_does_not_answer_the_hub_word() -> None:
    from annot.methods.cnnr.answer import WordIndex

    offset = np.array([5.0, 5.0, 5.0])  # every word vector shares a large common component
    E = offset + np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0.3, 0.3, 0.3]])  # word 3 sits at the middle: a hub
    query = offset + np.array([[0.5, 0.2, 0.2]])  # a regressed vector, shrunk to the middle, leaning to word 0
    raw = WordIndex(["a", "b", "c", "hub"], E, np.zeros(3))
    centred = WordIndex(["a", "b", "c", "hub"], E, E.mean(axis=0))
    assert raw.nearest(query, 1)[1][0, 0] == 3
    similarity, positions = centred.nearest(query, 4)
    assert positions[0, 0] == 0 and np.all(np.diff(similarity[0]) <= 0)


@pytest.mark.slow
def test_whitened_targets_train_and_the_open_vocabulary_is_answered_in_word_space(store: Path, synthetic: dict[str, Path]) -> None:
    from annot.methods.cnnr.train import word_space

    rng = np.random.default_rng(0)
    E = (rng.normal(size=(40, 5)) * [5.0, 1.0, 0.2, 1.0, 3.0] + 2.0).astype(np.float32)
    mean, A = word_space(E, np.ones(40, bool), "whitened")
    W = (E - mean) @ A
    np.testing.assert_allclose(np.cov(W, rowvar=False), np.eye(5), atol=1e-4)  # every direction weighs alike
    raw_mean, raw_A = word_space(E, np.ones(40, bool), "raw")
    assert not raw_mean.any() and np.array_equal(raw_A, np.eye(5))

    report = train_cnnr(store, CNNRConfig(backbone="tiny16", epochs=20, batch_size=32, lr=1e-2,
                                                             lr_ratio=0.5, patience=20, target="whitened"))
    assert report.history[-1]["train_loss"] < report.history[0]["train_loss"]
    result = evaluate(store, synthetic["test"], scoring=ScoringSettings(method="cnn-r", n_tags=3), record=False)
    assert result.summary.recall > 0.5
    # the open vocabulary is answered in the word vectors' own space: v ↦ v A⁻¹ + μ, then centred cosine against
    # every word of the file, centred on the vocabulary's mean raw vector (checked here by direct computation)
    from annot.features.words import load_word_vectors
    from annot.methods.cnnr.network import read_model_file
    from annot.model import StoreModel

    with StoreDir.open(store) as s:
        saved = read_model_file(store / s.manifest().cnnr.file.path)  # type: ignore[union-attr]
    mean, A = np.asarray(saved["word_mean"]), np.asarray(saved["word_transform"])
    words, vectors = load_word_vectors(str(synthetic["words"])).open_vocabulary()
    raw_vocabulary, _ = load_word_vectors(str(synthetic["words"])).matrix(saved["vocabulary"])
    centre = np.asarray(raw_vocabulary, np.float64)[np.asarray(saved["has_vector"], bool)].mean(axis=0)
    V = rng.normal(size=(4, A.shape[0]))  # regressed vectors in the model's (whitened) space
    W = V @ np.linalg.inv(A) + mean

    def unit(M: np.ndarray) -> np.ndarray:
        return (M - centre) / np.linalg.norm(M - centre, axis=1, keepdims=True)

    expected = [[words[j] for j in np.argsort(-row, kind="stable")[:5]] for row in unit(W) @ unit(vectors).T]
    model = StoreModel.open(store)
    try:
        answered = model.method("cnn-r").open_vocabulary(V, 5)  # type: ignore[attr-defined]
    finally:
        model.close()
    assert [[w for w, _ in row] for row in answered] == expected
    with pytest.raises(AnnotError, match="--restart"):
        train_cnnr(store, CNNRConfig(backbone="tiny16", epochs=21, target="raw"))
