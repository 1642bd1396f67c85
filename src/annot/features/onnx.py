"""Running an encoder's network with ONNX Runtime on the CPU: the same features as torch (to 1e-4) several times
faster on this project's machines (BENCHMARKS.md, "Feature extraction").

The torch module is exported once to an ONNX file (batch, height and width left free) kept under the user's cache
(``$ANNOT_CACHE``, default ``$XDG_CACHE_HOME/annot`` or ``~/.cache/annot``, in ``onnx/``; named by the encoder, a digest of its weights and torch's
version), and run
by an ONNX Runtime session with as many threads as torch would use. ``ANNOT_ENCODER_BACKEND=torch`` keeps torch; so
does a GPU, and so does any network that fails to export (with a warning).
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from annot.caches import cache_home

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

BACKENDS = ("onnx", "torch")


def wanted_backend() -> str:
    backend = os.environ.get("ANNOT_ENCODER_BACKEND", "onnx").strip().lower()
    return backend if backend in BACKENDS else "onnx"


def cache_dir() -> Path:
    return cache_home() / "onnx"


class OnnxRunner:
    """An ONNX Runtime session for a torch module, exported on first use (or read from the cache)."""

    def __init__(self, module: torch.nn.Module, key: str, input_size: int) -> None:
        import onnxruntime as ort
        import torch

        name = f"{key.replace('/', '_').replace(':', '_')}-{_weights_digest(module)}"
        path = cache_dir() / f"{name}-torch{torch.__version__.split('+')[0]}.onnx"
        if not path.is_file():
            path = _export(module, path, input_size)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, pixels: torch.Tensor) -> NDArray[np.float32]:
        out = self.session.run(None, {self.input: np.ascontiguousarray(pixels.numpy(), np.float32)})[0]
        return np.asarray(out, np.float32)


def _weights_digest(module: torch.nn.Module) -> str:
    """A digest of the module's weights and buffers: an export is reused only for the very same network."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def _export(module: torch.nn.Module, path: Path, input_size: int) -> Path:
    """Export ``module`` to ``path`` (atomically; to a temporary folder where the cache cannot be written)."""
    import torch

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
    except OSError:
        path = Path(tempfile.mkdtemp(prefix="annot-onnx-")) / path.name
        handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
    os.close(handle)
    example = torch.zeros(1, 3, input_size, input_size)
    axes: dict[str, Any] = {"pixels": {0: "batch", 2: "height", 3: "width"}, "features": {0: "batch"}}
    try:
        with warnings.catch_warnings(), torch.inference_mode(False):
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (example,), tmp, input_names=["pixels"], output_names=["features"],
                              dynamic_axes=axes, opset_version=17, dynamo=False)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def runner_for(module: torch.nn.Module, key: str, input_size: int, device: torch.device) -> OnnxRunner | None:
    """An ONNX Runtime runner for the module where that is the backend to use, else None (torch runs it)."""
    if device.type != "cpu" or wanted_backend() != "onnx":
        return None
    try:
        return OnnxRunner(module, key, input_size)
    except ImportError:
        return None
    except Exception as exc:  # noqa: BLE001 - any export or load failure leaves torch to run the network
        log.warning("%s: running with torch, not ONNX Runtime (%s)", key, str(exc).splitlines()[0][:200])
        return None


__all__ = ["BACKENDS", "OnnxRunner", "runner_for", "wanted_backend"]
