"""The ONNX Runtime backend: the same features as torch, one export per network reused from the cache, torch kept
where it is asked for or where the export fails."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from annot.features import onnx
from annot.features.encoders import TorchEncoder


class Pooled(torch.nn.Module):
    """Conv, batch norm, ReLU and a global mean pool: the shape of the real encoders' heads."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, 12, 3, stride=2, padding=1)
        self.norm = torch.nn.BatchNorm2d(12)
        self.norm.running_mean.uniform_(-0.5, 0.5)  # non-trivial statistics: an export that dropped them would show
        self.norm.running_var.uniform_(0.5, 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(self.conv(x))).mean(dim=(2, 3))


class Tiny(TorchEncoder):
    name, dim, input_size = "tiny-onnx", 12, 32
    mean = std = (0.0, 0.0, 0.0)


class Unexportable(torch.nn.Module):
    """A network with no ONNX form: its export fails, as an operator without an ONNX equivalent makes it fail."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            raise RuntimeError("no ONNX form for this network")
        return x.mean(dim=(2, 3))


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ANNOT_CACHE", str(tmp_path))
    monkeypatch.delenv("ANNOT_ENCODER_BACKEND", raising=False)
    return tmp_path / "onnx"


@pytest.mark.slow
def test_onnx_features_match_torch_at_any_batch_size(cache: Path) -> None:
    module = Pooled().eval()
    encoder = Tiny(module, device="cpu")
    for batch in (1, 5, 16):
        pixels = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
        with torch.inference_mode():
            expected = module(pixels).numpy()
        got = encoder.encode(pixels)
        assert isinstance(encoder._runner, onnx.OnnxRunner)  # ONNX Runtime ran it, not torch
        assert got.dtype == np.float32 and got.shape == (batch, 12)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_one_export_per_network_reused_from_the_cache(cache: Path) -> None:
    onnx.OnnxRunner(Pooled(0).eval(), "tiny-onnx", 32)
    files = sorted(cache.glob("*.onnx"))
    assert len(files) == 1 and not list(cache.glob("*.part"))
    stamp = files[0].stat().st_mtime_ns
    onnx.OnnxRunner(Pooled(0).eval(), "tiny-onnx", 32)  # the same weights: the file is read, not written again
    assert sorted(cache.glob("*.onnx")) == files and files[0].stat().st_mtime_ns == stamp
    onnx.OnnxRunner(Pooled(1).eval(), "tiny-onnx", 32)  # other weights under the same name: an export of their own
    assert len(list(cache.glob("*.onnx"))) == 2


def test_torch_where_asked_or_where_the_export_fails(cache: Path, monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("ANNOT_ENCODER_BACKEND", "torch")
    assert onnx.runner_for(Pooled().eval(), "tiny-onnx", 32, torch.device("cpu")) is None
    monkeypatch.delenv("ANNOT_ENCODER_BACKEND")
    assert onnx.runner_for(Pooled().eval(), "tiny-onnx", 32, torch.device("cuda")) is None

    with caplog.at_level(logging.WARNING, logger="annot.features.onnx"):
        encoder = Tiny(Unexportable(), device="cpu")
        pixels = torch.rand(3, 3, 32, 32)
        got = encoder.encode(pixels)
    assert encoder._runner is False and "running with torch" in caplog.text
    np.testing.assert_allclose(got, pixels.numpy().mean(axis=(2, 3)), atol=1e-6)
    assert not list(cache.glob("*.part"))  # a failed export leaves nothing half-written
