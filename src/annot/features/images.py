"""Decoding and preprocessing images for an encoder, in a worker process ahead of the network where there are cores
for both.

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
import os
import stat
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import numpy as np
from numpy.typing import NDArray

from annot.inputs import file_kind

if TYPE_CHECKING:
    import torch
    from PIL import Image as PILImage

    from annot.features.encoders import ImageEncoder

# a decoding process runs ahead of the network only with this many cores: with two, the network's threads use both and
# a process beside them saves nothing (BENCHMARKS.md, "Speed": 122.7 images/s decoding in line, 79.3 beside it)
DECODER_MIN_CORES = 3
MAX_FILE_BYTES = 4 << 30  # an image file over 4 GiB is refused before it is read (the pixel limit comes later)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".heic", ".heif"}
UPRIGHT_SUFFIX = "-exif"  # on a feature cache key: its images were turned upright by their EXIF orientation


class UnreadableImage(ValueError):
    """A file that is not an image annot can decode (or one over the pixel limit)."""


class TooManyPixels(UnreadableImage):
    """An image over the pixel limit (a decompression bomb, or just too large), refused before it is decoded."""


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
        from pillow_heif import register_heif_opener
    except ImportError:
        return
    register_heif_opener()


Source = Path | BinaryIO  # an image file, or its bytes (an upload)


def image_files(folder: Path) -> Iterator[Path]:
    """The image files under ``folder`` (by suffix), sorted, without following symbolic links to folders (a link
    that loops is listed, and fails to read like any unreadable image)."""
    for top, dirs, files in os.walk(folder, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                yield Path(top) / name


def image_file(path: Path) -> os.stat_result:
    """The status of an image file (links followed); ``FileNotFoundError``, or :class:`UnreadableImage` for what
    must not be read as one: a named pipe or a device (reading would block or never end), a directory, a file over
    :data:`MAX_FILE_BYTES`, a symlink loop."""
    try:
        status = Path(path).stat()
    except FileNotFoundError:
        raise
    except (OSError, RuntimeError) as exc:
        raise UnreadableImage(f"cannot read the file ({getattr(exc, 'strerror', None) or exc})") from None
    if not stat.S_ISREG(status.st_mode):
        raise UnreadableImage(f"not a regular file ({file_kind(status.st_mode)}); not read")
    if status.st_size > MAX_FILE_BYTES:
        raise UnreadableImage(f"{status.st_size:,} bytes, over the {MAX_FILE_BYTES:,} an image file may have")
    return status


def open_image(path: Source, max_pixels: int | None = None) -> PILImage.Image:
    """Open an image file (or stream) with PIL; :class:`UnreadableImage` (with a one-line reason) for anything PIL
    cannot open, a file that is not a regular one (:func:`image_file`), or more pixels than ``max_pixels`` (default
    ``Image.MAX_IMAGE_PIXELS``), checked on the header before anything is decoded."""
    from PIL import Image

    _register_heif()
    if isinstance(path, Path):
        image_file(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(path)
        except FileNotFoundError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise TooManyPixels(f"over the pixel limit ({_bomb_message(exc)})") from None
        except (OSError, ValueError, SyntaxError) as exc:
            why = _first_line(exc) if isinstance(path, Path) else "no image format recognised in its bytes"
            raise UnreadableImage(f"not a readable image ({why})") from None
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    if limit and image.width * image.height > limit:  # PIL checks at 2x its limit
        image.close()
        raise TooManyPixels(f"over the pixel limit ({image.width:,} x {image.height:,} pixels; at most {limit:,})")
    return image


def probe_image(path: Path) -> ImageInfo:
    """Hash a file and read its image header (size as shown: after its EXIF orientation); raises
    ``FileNotFoundError`` or :class:`UnreadableImage`."""
    digest = content_hash(Path(path))
    width, height = image_size(Path(path))
    return ImageInfo(digest, width, height)


def image_size(path: Path) -> tuple[int, int]:
    """An image's width and height as shown (after its EXIF orientation), from its header alone."""
    with open_image(path) as image:
        width, height = image.size
        if _orientation(image) in (5, 6, 7, 8):  # turned a quarter: shown the other way round
            width, height = height, width
    return int(width), int(height)


EXIF_IFD, DATE_TAKEN, DATE_DIGITIZED, MAKE, MODEL = 0x8769, 0x9003, 0x9004, 0x010F, 0x0110


def exif_facts(path: Path) -> tuple[datetime | None, str | None]:
    """When a photo was taken (EXIF ``DateTimeOriginal``, else ``DateTimeDigitized``: the camera's clock, as
    written) and its camera (make and model), from its header; None for what it lacks or cannot be read."""
    try:
        with open_image(path) as image:
            exif = image.getexif()
            inner = exif.get_ifd(EXIF_IFD)
    except (OSError, UnreadableImage, ValueError, SyntaxError):
        return None, None
    taken = None
    for value in (inner.get(DATE_TAKEN), inner.get(DATE_DIGITIZED)):
        try:
            taken = datetime.strptime(str(value).strip("\x00 ")[:19], "%Y:%m:%d %H:%M:%S")
            break
        except ValueError:  # absent, or "0000:00:00 00:00:00" as some cameras write
            continue
    make, model = (str(exif.get(k) or "").strip("\x00 ") for k in (MAKE, MODEL))
    camera = model if make and model.lower().startswith(make.split()[0].lower()) else f"{make} {model}".strip()
    return taken, camera or None


def content_hash(path: Path) -> str:
    """The SHA-256 of an image file's bytes, read in blocks (a regular file only: :func:`image_file`)."""
    image_file(path)
    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise UnreadableImage(f"cannot read the file ({exc.strerror or exc})") from None


def _orientation(image: PILImage.Image) -> int:
    try:
        return int(image.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a damaged EXIF block is no orientation
        return 1


def load_image(path: Source, size: int | None = None, upright: bool = True,
               max_pixels: int | None = None) -> PILImage.Image:
    """An image decoded to RGB (JPEG at a reduced scale when it is much larger than ``size``), turned upright by its
    EXIF orientation when ``upright``."""
    from PIL import ImageOps

    with open_image(path, max_pixels) as image:
        try:
            if size is not None:
                image.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when it is much larger
            shown = ImageOps.exif_transpose(image) if upright else image
            return shown.convert("RGB")
        except (OSError, ValueError, SyntaxError) as exc:
            raise UnreadableImage(f"not a readable image ({_first_line(exc)})") from None


def thumbnail_jpeg(path: str | Path, size: int = 192, upright: bool = True) -> bytes | None:
    """A JPEG thumbnail of an image, turned upright by its EXIF orientation (None when it cannot be read)."""
    import io

    try:
        image = load_image(Path(path), size, upright)
    except (OSError, UnreadableImage):
        return None
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def load_pixels(path: Source, size: int, upright: bool = True, max_pixels: int | None = None) -> NDArray[np.uint8]:
    """Decode an image to RGB and resize it to ``size`` x ``size`` (aspect ratio ignored, as in the paper)."""
    from PIL import Image

    rgb = load_image(path, size, upright, max_pixels).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def decode_bytes(data: bytes, encoder: ImageEncoder, upright: bool = True, max_pixels: int | None = None,
                 ) -> list[NDArray[np.uint8]]:
    """An uploaded image's pixels at each of the encoder's sizes (as :func:`iter_batches` decodes a file);
    :class:`UnreadableImage` for what is not a readable image or is over ``max_pixels``."""
    import io

    image = load_image(io.BytesIO(data), max(_sizes(encoder)), upright, max_pixels)
    from PIL import Image

    return [np.array(image.resize((size, size), Image.Resampling.BILINEAR), np.uint8) for size in _sizes(encoder)]


def _sizes(encoder: ImageEncoder) -> list[int]:
    return list(dict.fromkeys([encoder.input_size, *encoder.decode_sizes]))


def preprocess(encoder: ImageEncoder, stacked: Sequence[NDArray[np.uint8]]) -> dict[int, torch.Tensor]:
    """Decoded batches (b, s, s, 3 uint8, one per size of ``encoder``) as the network's normalised input tensors."""
    import torch

    mean = torch.tensor(encoder.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(encoder.std, dtype=torch.float32).view(1, 3, 1, 1)
    return {size: (torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float().div_(255.0) - mean) / std
            for size, pixels in zip(_sizes(encoder), stacked, strict=True)}


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
    from torch.utils.data import DataLoader

    if workers is None:
        workers = 1 if len(paths) > batch_size and _cores() >= DECODER_MIN_CORES else 0
    sizes = _sizes(encoder)
    loader: DataLoader[Any] = DataLoader(
        cast(Any, _ImageDataset(paths, sizes, upright)),  # map-style: __len__ and __getitem__
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
    )
    for stacked, ok, errors in loader:
        sized = preprocess(encoder, stacked)
        yield DecodedBatch(sized[encoder.input_size], ok, errors, sized)


def _cores() -> int:
    """The CPU cores this process may run on (a container's limit, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _bomb_message(exc: BaseException) -> str:
    return _first_line(exc).split(", could be")[0].removesuffix(".")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
