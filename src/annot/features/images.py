"""Decoding and preprocessing images for an encoder, in worker processes so decoding overlaps the network.

Preprocessing follows the paper (§3.1): every image is resized to the network's square input regardless of its
aspect ratio, then normalised with the network's mean and standard deviation. Images are turned upright by their
EXIF orientation first (``upright``; a phone photo stored sideways is seen as it is shown), except for stores made
before that, whose cached features were decoded as stored. An image over the pixel limit (PIL's guard against
decompression bombs, ``Image.MAX_IMAGE_PIXELS``) is refused like any unreadable image, without PIL's warning.
HEIC/HEIF photos decode where the ``pillow-heif`` package is installed (``pip install 'annot[heif]'``).
"""

from __future__ import annotations

import functools
import hashlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    import torch
    from PIL import Image as PILImage

    from annot.features.encoders import ImageEncoder

UPRIGHT_SUFFIX = "-exif"  # on a feature cache key: its images were turned upright by their EXIF orientation


class UnreadableImage(ValueError):
    """A file that is not an image annot can decode (or one over the pixel limit)."""


@dataclass(frozen=True)
class ImageInfo:
    sha256: str
    width: int
    height: int


def feature_key(encoder_key: str, upright: bool) -> str:
    """The feature-cache key of an encoder's features decoded upright or as stored (version-1 stores)."""
    return f"{encoder_key}{UPRIGHT_SUFFIX}" if upright else encoder_key


@functools.cache
def _register_heif() -> None:
    try:
        from pillow_heif import register_heif_opener  # type: ignore[import-not-found]
    except ImportError:
        return
    register_heif_opener()


def open_image(path: Path) -> PILImage.Image:
    """Open an image file with PIL; :class:`UnreadableImage` (with a one-line reason) for anything PIL cannot open,
    a symlink loop, or more pixels than ``Image.MAX_IMAGE_PIXELS``."""
    from PIL import Image

    _register_heif()
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(path)
        except FileNotFoundError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise UnreadableImage(f"over the pixel limit ({_bomb_message(exc)})") from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise UnreadableImage(f"not a readable image ({_first_line(exc)})") from None
    limit = Image.MAX_IMAGE_PIXELS
    if limit and image.width * image.height > limit:  # PIL checks at 2x its limit
        image.close()
        raise UnreadableImage(f"over the pixel limit ({image.width:,} x {image.height:,} pixels; at most {limit:,})")
    return image


def probe_image(path: Path) -> ImageInfo:
    """Hash a file and read its image header (size as shown: after its EXIF orientation); raises
    ``FileNotFoundError`` or :class:`UnreadableImage`."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise UnreadableImage(f"cannot read the file ({exc.strerror or exc})") from None
    digest = hashlib.sha256(data).hexdigest()
    with open_image(path) as image:
        width, height = image.size
        if _orientation(image) in (5, 6, 7, 8):  # turned a quarter: shown the other way round
            width, height = height, width
    return ImageInfo(digest, int(width), int(height))


def _orientation(image: PILImage.Image) -> int:
    try:
        return int(image.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a damaged EXIF block is no orientation
        return 1


def load_image(path: Path, size: int | None = None, upright: bool = True) -> PILImage.Image:
    """An image decoded to RGB (JPEG at a reduced scale when it is much larger than ``size``), turned upright by its
    EXIF orientation when ``upright``."""
    from PIL import ImageOps

    with open_image(path) as image:
        try:
            if size is not None:
                image.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when it is much larger
            shown = ImageOps.exif_transpose(image) if upright else image
            return shown.convert("RGB")
        except (OSError, ValueError, SyntaxError) as exc:
            raise UnreadableImage(f"not a readable image ({_first_line(exc)})") from None


def load_pixels(path: Path, size: int, upright: bool = True) -> NDArray[np.uint8]:
    """Decode an image to RGB and resize it to ``size`` x ``size`` (aspect ratio ignored, as in the paper)."""
    from PIL import Image

    rgb = load_image(path, size, upright).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


Decoded = tuple[list[NDArray[np.uint8]], bool, str]


class _ImageDataset:
    """A map-style dataset of image paths, each decoded at every one of ``sizes`` (as ``load_pixels`` would at that
    size alone); a file that cannot be decoded yields ``ok=False`` and zeros."""

    def __init__(self, paths: Sequence[Path], sizes: Sequence[int], upright: bool) -> None:
        self.paths = list(paths)
        self.sizes = list(sizes)
        self.upright = upright

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Decoded:
        try:
            return [load_pixels(self.paths[i], size, self.upright) for size in self.sizes], True, ""
        except FileNotFoundError:
            return self._failed("no such file")
        except UnreadableImage as exc:
            return self._failed(str(exc))
        except Exception as exc:  # noqa: BLE001 - any other decoder failure marks the image unreadable
            return self._failed(f"not a readable image ({_first_line(exc)})")

    def _failed(self, why: str) -> Decoded:
        return [np.zeros((size, size, 3), np.uint8) for size in self.sizes], False, why


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
    paths: Sequence[Path], encoder: ImageEncoder, batch_size: int = 32, workers: int | None = None,
    upright: bool = True,
) -> Iterator[DecodedBatch]:
    """Decode ``paths`` in order, in batches, at each of ``encoder.decode_sizes``, with decoding in ``workers``
    processes ahead of the network."""
    import torch
    from torch.utils.data import DataLoader

    if workers is None:
        workers = 1 if len(paths) > batch_size else 0
    sizes = list(dict.fromkeys([encoder.input_size, *encoder.decode_sizes]))
    loader: DataLoader[Any] = DataLoader(
        cast(Any, _ImageDataset(paths, sizes, upright)),  # map-style: __len__ and __getitem__
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


def _bomb_message(exc: BaseException) -> str:
    return _first_line(exc).split(", could be")[0].removesuffix(".")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
