"""Encoders side by side, NAME@SIZE, and the registry's errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from annot.errors import EncoderError
from annot.features.cache import encode_paths
from annot.features.encoders import CompositeEncoder, build_encoder, register_encoder
from conftest import FakeEncoder


class SmallFake(FakeEncoder):
    name = "fake8"
    input_size = 8
    dim = 12


register_encoder("fake8", lambda weights: SmallFake())


def test_composite_concatenates_parts_at_their_own_sizes() -> None:
    encoder = build_encoder("fake+fake8")
    assert isinstance(encoder, CompositeEncoder)
    assert (encoder.dim, encoder.input_size, encoder.key) == (60, 16, "fake+fake8-own-sizes")
    pixels = torch.rand(2, 3, 16, 16)
    features = encoder.encode(pixels)
    assert features.shape == (2, 60)
    np.testing.assert_allclose(features[:, :48], FakeEncoder().encode(pixels))
    np.testing.assert_allclose(features[:, 48:].mean(), pixels.mean().item(), rtol=0.05)  # a resize keeps the mean


def test_an_input_size_after_at_resizes_the_images_and_keeps_the_features_apart() -> None:
    encoder = build_encoder("fake@32")
    assert (encoder.name, encoder.key, encoder.input_size, encoder.dim) == ("fake@32", "fake@32", 32, 48)
    assert build_encoder("fake@16").key == "fake"  # the network's own size: the same features, the same cache
    both = build_encoder("fake+fake@32")
    assert isinstance(both, CompositeEncoder) and (both.input_size, both.dim) == (32, 96)
    pixels = torch.rand(2, 3, 32, 32)
    features = both.encode(pixels)
    np.testing.assert_allclose(features[:, 48:], FakeEncoder().encode(pixels))  # decoded at 32, seen at 32
    small = torch.nn.functional.interpolate(pixels, size=(16, 16), mode="bilinear", antialias=True)
    np.testing.assert_allclose(features[:, :48], FakeEncoder().encode(small))
    assert not np.allclose(features[:, :48], features[:, 48:])
    assert build_encoder("fake+fake").key == "fake+fake"  # one size: one decoding, nothing to keep apart


def test_a_composite_part_gets_exactly_its_own_features(synthetic: dict[str, Path]) -> None:
    paths = sorted((synthetic["folder"] / "images").glob("*.jpeg"))[:6]
    assert len(paths) == 6
    alone = [encode_paths(build_encoder(name), paths, batch_size=4)[0] for name in ("fake", "fake@32")]
    both = build_encoder("fake+fake@32")
    assert both.decode_sizes == (32, 16) and both.key == "fake+fake@32-own-sizes"
    X, failed = encode_paths(both, paths, batch_size=4)
    assert not failed
    np.testing.assert_allclose(X, np.hstack(alone), rtol=1e-6)  # each part decoded at its own size


@pytest.mark.parametrize(
    ("name", "weights", "message"),
    [("fake+nope", None, "unknown encoder 'nope'"), ("fake+fake8", "w.pth", "--weights applies to one encoder"),
     ("fake@big", None, "'fake@big': the input size after @ must be a whole number of pixels from 16 to 1024"),
     ("fake@8", None, "from 16 to 1024"), ("nope@64", None, "unknown encoder 'nope'")],
)
def test_registry_errors(name: str, weights: str | None, message: str) -> None:
    with pytest.raises(EncoderError, match=message):
        build_encoder(name, weights)  # type: ignore[arg-type]


@pytest.mark.slow
def test_torchvision_fc7_from_a_weights_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """AlexNet with weights from a file (random here: nothing is downloaded) gives 4,096-d fc7 features."""
    import torchvision

    path = tmp_path / "alexnet.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    encoder = build_encoder("alexnet", path)
    assert (encoder.dim, encoder.input_size) == (4096, 224) and encoder.key.startswith("alexnet-")
    features = encoder.encode(torch.rand(2, 3, 224, 224))
    assert features.shape == (2, 4096) and (features >= 0).all()  # after fc7's ReLU


def test_decoding_ahead_in_a_process_gives_the_same_batches_and_needs_three_cores(
        synthetic: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from torch.utils import data

    from annot.features import images

    paths = sorted((synthetic["folder"] / "images").glob("*.jpeg"))[:10]
    inline = [b.pixels for b in images.iter_batches(paths, FakeEncoder(), 4, workers=0)]
    ahead = [b.pixels for b in images.iter_batches(paths, FakeEncoder(), 4, workers=1)]
    assert [len(b) for b in inline] == [4, 4, 2]
    for a, b in zip(inline, ahead, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)

    made: list[int] = []  # the default: a decoding process only where there are cores for it and the network
    real = data.DataLoader.__init__

    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        made.append(kwargs["num_workers"])
        real(self, *args, **kwargs)

    monkeypatch.setattr(data.DataLoader, "__init__", spy)
    for cores in (2, images.DECODER_MIN_CORES):
        monkeypatch.setattr(images, "_cores", lambda c=cores: c)
        list(images.iter_batches(paths, FakeEncoder(), 4))
        list(images.iter_batches(paths[:3], FakeEncoder(), 4))  # one batch: nothing to decode ahead of
    assert made == [0, 0, 1, 0]
