"""Decoding and preprocessing images for an encoder, in worker processes so decoding overlaps the network.

Preprocessing follows the paper (§3.1): every image is resized to the network's square input regardless of its
aspect ratio, then normalised with the network's mean and standard deviation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    import torch

    from annot.features.encoders import ImageEncoder


@dataclass(frozen=True)
class ImageInfo:
    sha256: str
    width: int
    height: int


def probe_image(path: Path) -> ImageInfo:
    """Hash a file and read its image header; raises ``OSError``/``ValueError`` when it is not an image."""
    from PIL import Image

    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    with Image.open(path) as image:
        width, height = image.size
    return ImageInfo(digest, int(width), int(height))


def load_pixels(path: Path, size: int) -> NDArray[np.uint8]:
    """Decode an image to RGB and resize it to ``size`` x ``size`` (aspect ratio ignored, as in the paper)."""
    from PIL import Image

    with Image.open(path) as image:
        image.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when it is much larger
        rgb = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(rgb, dtype=np.uint8)


Decoded = tuple[list[NDArray[np.uint8]], bool, str]


class _ImageDataset:
    """A map-style dataset of image paths, each decoded at every one of ``sizes`` (as ``load_pixels`` would at that
    size alone); a file that cannot be decoded yields ``ok=False`` and zeros."""

    def __init__(self, paths: Sequence[Path], sizes: Sequence[int]) -> None:
        self.paths = list(paths)
        self.sizes = list(sizes)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Decoded:
        try:
            return [load_pixels(self.paths[i], size) for size in self.sizes], True, ""
        except Exception as exc:  # noqa: BLE001 - any decoder failure marks the image unreadable
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return [np.zeros((size, size, 3), np.uint8) for size in self.sizes], False, message


def _collate(items: list[Decoded]) -> tuple[list[NDArray[np.uint8]], list[bool], list[str]]:
    stacked = [np.stack([pixels[j] for pixels, _, _ in items]) for j in range(len(items[0][0]))]
    return stacked, [ok for _, ok, _ in items], [m for _, _, m in items]


@dataclass(frozen=True)
class DecodedBatch:
    """A batch of preprocessed images: ``pixels`` (b, 3, s, s) float tensor at the encoder's input size, the same
    images at each of its ``decode_sizes`` (``sized``), which rows decoded, and why not."""

    pixels: torch.Tensor
    ok: list[bool]
    errors: list[str]
    sized: dict[int, torch.Tensor]


def iter_batches(
    paths: Sequence[Path], encoder: ImageEncoder, batch_size: int = 32, workers: int | None = None
) -> Iterator[DecodedBatch]:
    """Decode ``paths`` in order, in batches, at each of ``encoder.decode_sizes``, with decoding in ``workers``
    processes ahead of the network."""
    import torch
    from torch.utils.data import DataLoader

    if workers is None:
        workers = 1 if len(paths) > batch_size else 0
    sizes = list(dict.fromkeys([encoder.input_size, *encoder.decode_sizes]))
    loader: DataLoader[Any] = DataLoader(
        cast(Any, _ImageDataset(paths, sizes)),  # map-style: __len__ and __getitem__
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
    )
    mean = torch.tensor(encoder.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(encoder.std, dtype=torch.float32).view(1, 3, 1, 1)
    for stacked, ok, errors in loader:
        sized = {size: (torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div_(255.0) - mean) / std
                 for size, pixels in zip(sizes, stacked, strict=True)}
        yield DecodedBatch(sized[encoder.input_size], ok, errors, sized)

