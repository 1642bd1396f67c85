"""Encoder combinators (flip and crop averaging, several encoders side by side) and the registry's errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tests.conftest import FakeEncoder

from annot.errors import EncoderError
from annot.features.encoders import (
    CompositeEncoder,
    CropAveraged,
    FlipAveraged,
    build_encoder,
    encoder_of_manifest,
    register_encoder,
)
from annot.indexer.features import encode_paths


class SmallFake(FakeEncoder):
    name = "fake8"
    input_size = 8
    dim = 12


register_encoder("fake8", lambda weights: SmallFake())


def test_flip_averaged_features_are_mirror_invariant() -> None:
    pixels = torch.rand(3, 3, 16, 16)
    encoder = build_encoder("fake", flip=True)
    assert isinstance(encoder, FlipAveraged) and encoder.key == "fake-flip"
    np.testing.assert_allclose(encoder.encode(pixels), encoder.encode(pixels.flip(3)), atol=1e-6)
    plain = FakeEncoder().encode(pixels)
    assert not np.allclose(plain, FakeEncoder().encode(pixels.flip(3)))


def test_crop_averaged_features_are_the_mean_over_the_whole_image_and_five_crops() -> None:
    encoder = build_encoder("fake", crops=True)
    assert isinstance(encoder, CropAveraged)
    assert (encoder.key, encoder.dim, encoder.input_size) == ("fake-crops", 48, 18)  # decoded at 16 / 0.875
    pixels = torch.rand(2, 3, 18, 18)
    inner = FakeEncoder()
    whole = torch.nn.functional.interpolate(pixels, size=(16, 16), mode="bilinear", antialias=True)
    crops = [pixels[..., y:y + 16, x:x + 16] for y in (0, 2) for x in (0, 2)] + [pixels[..., 1:17, 1:17]]
    expected = np.mean([inner.encode(v) for v in [whole, *crops]], axis=0)
    np.testing.assert_allclose(encoder.encode(pixels), expected, rtol=1e-5)


def test_crops_and_flip_compose_and_round_trip_through_a_manifest() -> None:
    encoder = encoder_of_manifest({"name": "fake", "flip": True, "crops": True})
    assert isinstance(encoder, FlipAveraged) and isinstance(encoder.inner, CropAveraged)
    assert (encoder.key, encoder.input_size) == ("fake-crops-flip", 18)
    pixels = torch.rand(2, 3, 18, 18)
    np.testing.assert_allclose(encoder.encode(pixels), encoder.encode(pixels.flip(3)), atol=1e-6)
    assert encoder_of_manifest({"name": "fake"}).key == "fake"  # manifests from before crops existed


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
    cropped = build_encoder("fake@32", crops=True)
    assert (cropped.key, cropped.input_size) == ("fake@32-crops", round(32 / 0.875))


def test_a_composite_part_gets_exactly_its_own_features_and_old_stores_keep_theirs(synthetic: dict[str, Path]) -> None:
    paths = sorted((synthetic["folder"] / "images").glob("*.jpeg"))[:6]
    assert len(paths) == 6
    alone = [encode_paths(build_encoder(name), paths, batch_size=4)[0] for name in ("fake", "fake@32")]
    both = build_encoder("fake+fake@32", flip=True)
    assert both.decode_sizes == (32, 16) and both.key == "fake+fake@32-own-sizes-flip"
    X, failed = encode_paths(both, paths, batch_size=4)
    assert not failed
    flipped = [encode_paths(build_encoder(name, flip=True), paths, batch_size=4)[0] for name in ("fake", "fake@32")]
    np.testing.assert_allclose(X, np.hstack(flipped), rtol=1e-6)  # each part decoded at its own size, then mirrored
    plain = encode_paths(build_encoder("fake+fake@32"), paths, batch_size=4)[0]
    np.testing.assert_allclose(plain, np.hstack(alone), rtol=1e-6)
    # a store made before: decoded once at 32 and resized to 16 for the smaller part, under the old key
    old = encoder_of_manifest({"name": "fake+fake@32", "key": "fake+fake@32"})
    assert old.key == "fake+fake@32" and old.decode_sizes == (32,)
    resized = encode_paths(old, paths, batch_size=4)[0]
    np.testing.assert_allclose(resized[:, 48:], alone[1], rtol=1e-6)
    assert not np.allclose(resized[:, :48], alone[0], atol=1e-3)
    assert isinstance(both, FlipAveraged)  # a store of now records own_sizes, and rebuilds the same composite
    assert encoder_of_manifest({"name": "fake+fake@32", "own_sizes": True}).key == both.inner.key


@pytest.mark.parametrize(
    ("name", "weights", "message"),
    [("fake+nope", None, "unknown encoder 'nope'"), ("fake+fake8", "w.pth", "--weights applies to one encoder"),
     ("fake@big", None, "'fake@big': the input size after @ must be a whole number of pixels from 16 to 1024"),
     ("fake@8", None, "from 16 to 1024"), ("nope@64", None, "unknown encoder 'nope'")],
)
def test_registry_errors(name: str, weights: str | None, message: str) -> None:
    with pytest.raises(EncoderError, match=message):
        build_encoder(name, weights)  # type: ignore[arg-type]


def test_torchvision_fc7_from_a_weights_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """AlexNet with weights from a file (random here: nothing is downloaded) gives 4,096-d fc7 features."""
    import torchvision

    path = tmp_path / "alexnet.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    encoder = build_encoder("alexnet", path)
    assert (encoder.dim, encoder.input_size) == (4096, 224) and encoder.key.startswith("alexnet-")
    features = encoder.encode(torch.rand(2, 3, 224, 224))
    assert features.shape == (2, 4096) and (features >= 0).all()  # after fc7's ReLU
