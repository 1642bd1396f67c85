"""``annot train-cnnr``: train CNN-R (paper §3.5) on a store's training images, resumably.

The target of an image is the mean of its tags' word vectors (the store's word vectors; tags without one are left
out of the mean); the loss is the squared Euclidean distance to it, by default in the whitened word space
(``target="whitened"``: a Mahalanobis loss, chosen on Corel-5k's validation images, F1 29.7 against 25.3 for the
paper's raw word vectors with GloVe-50 and 37.7 against 19.6 with MiniLM; ``target="raw"`` is the paper's). The new linear layer learns at ``lr``, the
pretrained layers at ``lr × lr_ratio`` (the paper: a higher rate on the new layer). A validation split is taken from
the training images. Each epoch annotates them as ``annot query --method cnn-r`` would (the 5 nearest vocabulary
words by centred cosine) and records their per-word F1 and N+ beside the loss. The weights of the epoch with the
highest validation F1 are kept (``select="f1"``), and training stops ``patience`` epochs after it; ``select="loss"``
keeps the lowest validation loss instead. Answers read only the direction of the regressed vector, and on Corel-5k
the validation F1 went on rising for several epochs after the loss had turned (GloVe-50, whitened: 27.6 at the loss
minimum, epoch 7; 29.7 at epoch 13).

On a CPU (the default there) the trunk's activations are computed once, cached in the store like any features, and
the top blocks and head are trained over them. With ``full`` (the default where CUDA is present) every layer is
trained from the decoded images, at ``size`` pixels (answers then decode at that size too), on random crops and mirror
images (``augment``), the trunk frozen for the first ``warmup`` epochs so the new layer's first, large gradients do
not disturb the pretrained features. A checkpoint is written after every epoch; rerunning the same command continues from
it, and a checkpoint for another backbone, dimension or mode is an error unless ``restart``. A training takes turns
with the store's other writers (the server's corrections, ``annot annotate``): it holds the store only to switch it
to the trained model, and a lock of its own (``.training.lock``) for its whole run.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from annot.errors import AnnotError
from annot.features.cache import FeatureCache
from annot.features.encoders import ImageEncoder
from annot.features.images import feature_key, iter_batches
from annot.features.words import load_word_vectors
from annot.methods.cnnr.answer import answer_quality, word_index
from annot.methods.cnnr.network import CNNR, Backbone, build_backbone
from annot.progress import NoProgress, Progress
from annot.schema.queries import image_paths, label_matrix
from annot.settings import SettingsError
from annot.store import StoreDir, atomic_write
from annot.store.lock import WriterLock
from annot.store.manifest import CNNRRecord

log = logging.getLogger(__name__)

CHECKPOINT = "models/cnnr/checkpoint.pt"
TRAINING_LOCK = ".training.lock"  # held by a training for its whole run (the store's own lock only for the switch)


@dataclass(frozen=True)
class CNNRConfig:
    backbone: str = "efficientnet-lite0"
    weights: Path | None = None
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    lr_ratio: float = 0.1
    weight_decay: float = 1e-4
    validation: float = 0.1
    patience: int = 5
    full: bool | None = None
    device: str | None = None
    seed: int = 0
    restart: bool = False
    target: str = "whitened"
    select: str = "f1"
    size: int | None = None  # the network's square input when fine-tuning fully (default: the backbone's)
    augment: bool = True  # fine-tuning fully: random crops (of an image decoded 8/7 larger) and mirror images
    warmup: int = 1  # fine-tuning fully: epochs the trunk stays frozen while the new layer settles
    init: Path | None = None  # a CNN-R model file to start from (its weights replace the pretrained ones)


TARGETS = ("raw", "whitened")
SELECTIONS = ("f1", "loss")  # which validation number chooses the epoch kept


def word_space(E: NDArray[np.float32], has_vector: NDArray[np.bool_], target: str) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The map w ↦ (w − μ) A of word vectors into the space CNN-R regresses: ``raw`` is the word vectors themselves
    (the paper; A = I, μ = 0), ``whitened`` centres them on the vocabulary's mean and whitens them with its
    covariance, so the Euclidean loss weighs every direction of the word space alike (a Mahalanobis loss)."""
    q = E.shape[1]
    if target == "raw":
        return np.zeros(q), np.eye(q)
    words = E[has_vector].astype(np.float64)
    mean = words.mean(axis=0)
    values, vectors = np.linalg.eigh(np.cov(words, rowvar=False) + 1e-6 * np.eye(q))
    return mean, vectors / np.sqrt(np.maximum(values, 1e-12))


@dataclass
class TrainReport:
    model_file: str
    device: str
    full: bool
    n_train: int
    n_validation: int
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_validation_loss: float = float("inf")  # of the kept epoch
    best_validation_f1: float = 0.0  # of the kept epoch
    resumed_from_epoch: int = 0
    seconds: float = 0.0  # over all runs of this training, resumed ones included
    validation_ids: list[int] = field(default_factory=list)  # the store's image ids held out for validation

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TrunkEncoder(ImageEncoder):
    """The frozen trunk as an encoder, so its activations are cached (and resumable) like any features."""

    def __init__(self, backbone: Backbone, device: Any) -> None:
        import torch

        self.trunk, self.device = backbone.trunk.eval(), device
        self.name = f"cnnr-trunk-{backbone.name}"
        self.input_size, self.mean, self.std = backbone.input_size, backbone.mean, backbone.std
        with torch.inference_mode():
            self.shape = tuple(self.trunk(torch.zeros(1, 3, self.input_size, self.input_size, device=device)).shape[1:])
        self.dim = int(np.prod(self.shape))

    def encode(self, pixels: Any) -> NDArray[np.float32]:
        import torch

        with torch.inference_mode():
            return self.trunk(pixels.to(self.device)).flatten(1).float().cpu().numpy()


def targets(labels: NDArray[np.bool_], E: NDArray[np.float32], has_vector: NDArray[np.bool_]) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """Mean word vector of each image's tags that have one; and which images have any."""
    usable = labels & has_vector[None, :]
    counts = usable.sum(axis=1)
    Y = (usable.astype(np.float32) @ E) / np.maximum(counts, 1)[:, None]
    return Y.astype(np.float32), counts > 0


def _checkpoint_key(config: CNNRConfig, dim: int, full: bool, words: str, size: int) -> dict[str, Any]:
    key = {"backbone": config.backbone, "dim": dim, "full": full, "words": words, "target": config.target,
           "select": config.select, "weights": str(Path(config.weights).resolve()) if config.weights else None,
           "size": size}
    if full:
        key |= {"augment": config.augment, "warmup": config.warmup}
    if config.init is not None:
        key["init"] = str(Path(config.init).resolve())
    return key


def train_cnnr(store_root: Path, config: CNNRConfig = CNNRConfig(), progress: Progress | None = None,
               wait: bool | float = False) -> TrainReport:
    """Train CNN-R on the indexed training images of a store; keeps the best weights in ``models/cnnr/``."""
    import torch

    progress = progress or NoProgress()
    torch.manual_seed(config.seed)
    if config.target not in TARGETS:
        raise SettingsError("cnnr.target", f"must be one of {', '.join(TARGETS)}, got {config.target!r}")
    if config.select not in SELECTIONS:
        raise SettingsError("cnnr.select", f"must be one of {', '.join(SELECTIONS)}, got {config.select!r}")
    if config.size is not None and not 16 <= config.size <= 1024:
        raise SettingsError("cnnr.size", f"must be between 16 and 1024 pixels, got {config.size}")
    if config.warmup < 0:
        raise SettingsError("cnnr.warmup", f"must be 0 or more epochs, got {config.warmup}")
    store = StoreDir.open(Path(store_root), write=True, wait=wait, hold=False)  # taken for the model's switch only
    training = WriterLock(store.root, TRAINING_LOCK, "CNN-R is being trained")  # one training (and checkpoint) at once
    try:
        training.acquire(wait)
        run = _Run.prepare(store, config, progress)
        run.resume()
        for epoch in range(len(run.report.history) + 1, config.epochs + 1):
            if run.report.history and epoch - run.report.best_epoch > config.patience:
                log.info("no validation improvement in %d epochs: stopping", config.patience)
                break
            run.epoch(epoch, progress)
        return run.save()
    finally:
        training.release()
        store.close()


@dataclass
class _Run:
    """One run of ``train_cnnr``: what it trains on (targets in the regression's word space, the training and
    validation rows, cached trunk activations or the images' paths), the network and its optimiser, and the
    report; :meth:`epoch` trains and validates once and writes the checkpoint."""

    store: StoreDir
    config: CNNRConfig
    key: dict[str, Any]
    vocabulary: tuple[str, ...]
    tag_ids: list[int]
    E: NDArray[np.float32]  # the vocabulary's word vectors in the regression's word space
    has_vector: NDArray[np.bool_]
    space: tuple[NDArray[np.float64], NDArray[np.float64]]  # the word space's mean and transform
    backbone: Backbone
    model: CNNR
    full: bool
    size: int  # the network's input (full fine-tuning)
    upright: bool
    ids: list[int]
    paths: list[Path]
    activations: NDArray[np.float32] | None  # the trunk's, cached (not full); None when training from the images
    trunk_shape: tuple[int, ...]
    targets: Any  # torch tensor of the images' targets
    train_rows: NDArray[np.int64]
    val_rows: NDArray[np.int64]
    val_truth: NDArray[np.bool_]
    rng: np.random.Generator
    optimiser: Any
    report: TrainReport
    started: float
    best_state: dict[str, Any] | None = None

    @classmethod
    def prepare(cls, store: StoreDir, config: CNNRConfig, progress: Progress) -> _Run:
        """The word space, the images and their targets, the split, the network and its optimiser."""
        import torch

        started = time.perf_counter()
        manifest = store.manifest()
        vocabulary, tag_ids = tuple(manifest.vocabulary.words), list(manifest.vocabulary.tag_ids)
        words = load_word_vectors(manifest.words.source)
        upright = manifest.encoder.orientation == "exif"
        E, missing = words.matrix(vocabulary)
        has_vector = np.array([w not in set(missing) for w in vocabulary])
        mean, transform = word_space(E, has_vector, config.target)
        E = np.where(has_vector[:, None], (E - mean) @ transform, 0.0).astype(np.float32)  # the regression's space
        indexed = np.asarray(store.read_array(manifest.index.ids, "image ids"), np.int64)
        located = image_paths(store.db, indexed.tolist())
        items = [(int(i), Path(located[int(i)])) for i in sorted(indexed.tolist())]
        backbone = build_backbone(config.backbone, config.weights)
        model = CNNR(backbone, words.dim, config.device)
        if config.init is not None:
            _start_from(model, Path(config.init), config, words.source)
        full = config.full if config.full is not None else model.device.type == "cuda"
        if config.size is not None and not full:
            raise SettingsError("cnnr.size", "applies to full fine-tuning only (the cached activations are at the "
                                f"backbone's {backbone.input_size} pixels)")
        size = config.size or backbone.input_size
        activations, trunk_shape = None, ()
        if not full:
            trunk = TrunkEncoder(backbone, model.device)
            cache = FeatureCache(store.features_dir / feature_key(trunk.key, upright), trunk.dim, upright=upright)
            with progress.task(f"extracting trunk activations ({trunk.name})", len(items)) as advance:
                cache.extract(items, trunk, batch_size=32, progress=advance)
            failed = cache.failures()
            items = [(i, p) for i, p in items if i not in failed]
            activations, trunk_shape = cache.load([i for i, _ in items]), trunk.shape
        ids = [i for i, _ in items]
        Y, usable = targets(label_matrix(store.db, ids, tag_ids), E, has_vector)
        rows = np.flatnonzero(usable)
        if len(rows) < 4:
            raise AnnotError(f"{store.root}: {len(rows)} training images with a tag that has a word vector; CNN-R "
                             "needs more")
        rng = np.random.default_rng(config.seed)
        rows = rng.permutation(rows)
        n_val = max(1, round(config.validation * len(rows)))
        val_rows, train_rows = np.sort(rows[:n_val]), rows[n_val:]
        pretrained = list(backbone.top.parameters()) + (list(backbone.trunk.parameters()) if full else [])
        optimiser = torch.optim.AdamW([
            {"params": model.head.parameters(), "lr": config.lr},
            {"params": pretrained, "lr": config.lr * config.lr_ratio},
        ], weight_decay=config.weight_decay)
        report = TrainReport("", str(model.device), full, len(train_rows), len(val_rows),
                             validation_ids=[int(ids[i]) for i in val_rows])
        return cls(store, config, _checkpoint_key(config, words.dim, full, words.source, size), vocabulary, tag_ids,
                   E, has_vector, (mean, transform), backbone, model, full, size, upright, ids, [p for _, p in items],
                   activations, trunk_shape, torch.from_numpy(Y).to(model.device), train_rows, val_rows,
                   label_matrix(store.db, [ids[i] for i in val_rows], tag_ids), rng, optimiser, report, started)

    def resume(self) -> None:
        """Continue from the checkpoint a previous run left (for these settings only)."""
        import torch

        checkpoint = self.store.path(CHECKPOINT)
        if not checkpoint.is_file() or self.config.restart:
            return
        saved = torch.load(checkpoint, map_location=self.model.device, weights_only=False)
        there = dict(saved.get("key") or {})
        if there != self.key:
            differ = ", ".join(f"{k} {there.get(k, 'unset')} there, {self.key.get(k, 'unset')} here"
                               for k in sorted(set(there) | set(self.key)) if there.get(k) != self.key.get(k))
            raise AnnotError(f"{checkpoint}: a checkpoint for other settings ({differ}); "
                             "rerun with --restart to discard it")
        self.model.load_state(saved["state"])
        self.optimiser.load_state_dict(saved["optimizer"])
        report = self.report
        report.history = list(saved["history"])
        report.best_epoch, report.best_validation_loss = saved["best_epoch"], saved["best_validation_loss"]
        report.best_validation_f1 = float(saved.get("best_validation_f1", 0.0))
        self.best_state = saved["best_state"]
        report.resumed_from_epoch = len(report.history)
        self.started -= float(saved.get("seconds", 0.0))  # training time adds up over resumed runs

    def batches(self, order: NDArray[np.int64], train: bool) -> Iterator[tuple[NDArray[np.int64], Any]]:
        """(rows, input) per batch: cached trunk activations, or decoded images when fine-tuning fully (for
        training, augmented when ``augment``: a random ``size`` crop of the image decoded 8/7 larger, mirrored
        half the time; for validation, the whole image at ``size``, as answering sees it)."""
        import torch

        step = self.config.batch_size
        if self.activations is not None:
            for lo in range(0, len(order), step):
                sel = order[lo : lo + step]
                yield sel, torch.from_numpy(self.activations[sel]).view(len(sel), *self.trunk_shape).to(
                    self.model.device)
            return
        augment = train and self.config.augment
        decoded = self.size * 8 // 7 if augment else self.size
        shim = backbone_encoder_shim(self.backbone, decoded)
        for lo, batch in zip(range(0, len(order), step),
                             iter_batches([self.paths[i] for i in order], shim, step, upright=self.upright),
                             strict=True):
            ok = np.array(batch.ok)
            pixels = batch.pixels[torch.from_numpy(ok)]
            yield order[lo : lo + step][ok], (self.augmented(pixels) if augment else pixels).to(self.model.device)

    def augmented(self, pixels: Any) -> Any:
        """A random ``size`` × ``size`` crop of each image, mirrored left to right half the time."""
        import torch

        n, room = len(pixels), pixels.shape[-1] - self.size
        tops, lefts = self.rng.integers(0, room + 1, n), self.rng.integers(0, room + 1, n)
        out = torch.stack([pixels[i, :, t : t + self.size, l : l + self.size]
                           for i, (t, l) in enumerate(zip(tops, lefts, strict=True))])
        mirror = torch.from_numpy(self.rng.random(n) < 0.5)
        out[mirror] = out[mirror].flip(-1)
        return out

    def passes(self, rows: NDArray[np.int64], train: bool, advance: Any) -> tuple[float, NDArray[np.float32]]:
        """One pass over ``rows`` (sorted): their mean loss; and, when not training, the predictions in row order
        (NaN rows for images that did not decode)."""
        import torch

        backbone, model = self.backbone, self.model
        for module in (backbone.top, model.head):
            module.train(train)
        trunk_learns = self.full and len(self.report.history) >= self.config.warmup  # this epoch, not a warm-up one
        backbone.trunk.train(train and trunk_learns)
        for p in backbone.trunk.parameters():
            p.requires_grad_(trunk_learns)
        total = 0.0
        predictions = np.full((0 if train else len(rows), self.E.shape[1]), np.nan, np.float32)
        order = self.rng.permutation(rows) if train else rows
        for sel, x in self.batches(order, train):
            if train and len(sel) < 2:
                continue  # batch norm needs two
            with torch.set_grad_enabled(train):
                if self.full:
                    x = backbone.trunk(x)
                pred = model.head(backbone.top(x))
                loss = ((pred - self.targets[sel]) ** 2).sum(dim=1).mean()
            if train:
                self.optimiser.zero_grad()
                loss.backward()
                self.optimiser.step()
            else:
                predictions[np.searchsorted(rows, sel)] = pred.detach().float().cpu().numpy()
            total += float(loss.detach()) * len(sel)
            advance(len(sel))
        return total / max(1, len(order)), predictions

    def epoch(self, epoch: int, progress: Progress) -> None:
        """Train once over the training rows, validate, keep the best state, write the checkpoint."""
        report, config = self.report, self.config
        last = report.history[-1] if report.history else None
        shown = (f" (epoch {last['epoch']}: train loss {last['train_loss']:.3f} · validation loss "
                 f"{last['validation_loss']:.3f} · validation F1 {last.get('validation_f1', 0):.1f}; "
                 f"kept epoch {report.best_epoch})") if last else ""
        with progress.task(f"CNN-R epoch {epoch}/{config.epochs}{shown}",
                           len(self.train_rows) + len(self.val_rows)) as advance:
            train_loss, _ = self.passes(self.train_rows, True, advance)
            val_loss, val_pred = self.passes(self.val_rows, False, advance)
        val_f1, n_plus = self.validate(val_pred)
        report.history.append({"epoch": epoch, "train_loss": round(train_loss, 5), "validation_loss": round(val_loss, 5),
                               "validation_f1": val_f1, "validation_n_plus": n_plus})
        better = val_f1 > report.best_validation_f1 if config.select == "f1" else val_loss < report.best_validation_loss
        if better or report.best_epoch == 0:
            report.best_epoch, report.best_validation_loss, report.best_validation_f1 = epoch, val_loss, val_f1
            self.best_state = {k: {n: t.detach().cpu().clone() for n, t in v.items()}
                               for k, v in self.model.state(self.full).items()}
        _save(self.store.path(CHECKPOINT), {
            "key": self.key, "state": self.model.state(self.full), "optimizer": self.optimiser.state_dict(),
            "history": report.history, "best_epoch": report.best_epoch,
            "best_validation_loss": report.best_validation_loss, "best_validation_f1": report.best_validation_f1,
            "best_state": self.best_state, "seconds": time.perf_counter() - self.started})

    def validate(self, predictions: NDArray[np.float32]) -> tuple[float, int]:
        """The validation images annotated as ``annot query --method cnn-r`` would: their F1 (percent) and N+."""
        decoder, positions = word_index(self.vocabulary, self.E, self.has_vector)
        done = ~np.isnan(predictions).any(axis=1)
        quality = answer_quality(decoder, positions, predictions[done], self.val_truth[done])
        return round(100 * quality.f1, 2), quality.n_plus

    def save(self) -> TrainReport:
        """Keep the best epoch's weights as the store's CNN-R model."""
        if self.best_state is None:
            raise AnnotError(f"{self.store.path(CHECKPOINT)}: no epoch finished; nothing to keep")
        report = self.report
        report.seconds = time.perf_counter() - self.started
        with self.store.change():  # the store as it is now: other writers may have changed it meanwhile
            record = _keep(self.store, self.key, self.best_state, self.vocabulary, self.tag_ids, self.E,
                           self.has_vector, report, self.space)
            report.model_file = record.file.path
            self.store.write_manifest(self.store.manifest().touched(cnnr=record))
            self.store.remove_unreferenced()  # the previous model file, once the manifest no longer names it
        return report


def _start_from(model: CNNR, path: Path, config: CNNRConfig, words: str) -> None:
    """Load the weights of a CNN-R model file (``annot train-cnnr``'s) into ``model``: the same backbone, word
    vectors and regression target, or an error naming the file."""
    from annot.methods.cnnr.network import read_model_file

    try:
        saved = read_model_file(path)
    except AnnotError as exc:
        raise SettingsError("cnnr.init", str(exc)) from None
    meta = dict(saved.get("meta") or {})
    wanted = {"backbone": config.backbone, "dim": model.dim, "words": words, "target": config.target}
    differ = [f"{k} {meta.get(k, 'unset')} there, {v} here" for k, v in wanted.items() if meta.get(k) != v]
    if differ:
        raise SettingsError("cnnr.init", f"{path}: a CNN-R model for other settings ({', '.join(differ)})")
    model.load_state(saved["state"])


def backbone_encoder_shim(backbone: Backbone, size: int | None = None) -> ImageEncoder:
    """Preprocessing settings of a backbone (at ``size``, default its own), for ``iter_batches`` (which only reads
    size and normalisation)."""

    class Shim(ImageEncoder):
        name, dim = backbone.name, backbone.feature_dim
        input_size, mean, std = size or backbone.input_size, backbone.mean, backbone.std

        def encode(self, pixels: Any) -> NDArray[np.float32]:
            raise NotImplementedError

    return Shim()


def _save(path: Path, payload: dict[str, Any]) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda fh: fh.write(buffer.getvalue()) and None)


def _keep(store: StoreDir, key: dict[str, Any], state: dict[str, Any], vocabulary: tuple[str, ...], tag_ids: list[int],
          E: NDArray[np.float32], has_vector: NDArray[np.bool_], report: TrainReport,
          space: tuple[NDArray[np.float64], NDArray[np.float64]]) -> CNNRRecord:
    """Write the best weights with what answering needs (the vocabulary's word vectors) under a new name, and the
    manifest record pointing at them."""
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    model_id = hashlib.sha256(buffer.getvalue()).hexdigest()[:12]
    meta = {**key, "id": model_id, "best_epoch": report.best_epoch,
            "best_validation_loss": round(report.best_validation_loss, 5), "best_validation_f1": report.best_validation_f1}
    payload = io.BytesIO()
    torch.save({"meta": meta, "state": state, "vocabulary": list(vocabulary), "tag_ids": tag_ids, "E": E,
                "has_vector": has_vector, "word_mean": space[0], "word_transform": space[1]}, payload)
    file = store.save_bytes(f"models/cnnr/model-{model_id}.pt", payload.getvalue())
    info = {**key, "best_epoch": report.best_epoch, "validation_loss": round(report.best_validation_loss, 5),
            "validation_f1": report.best_validation_f1, "epochs": len(report.history),
            "train_seconds": round(report.seconds, 1), "device": report.device,
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds")}
    return CNNRRecord(file, info)
