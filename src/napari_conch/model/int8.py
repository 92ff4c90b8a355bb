"""The int8 image encoder: exported to ONNX once, quantised (dynamic int8), run by ONNX Runtime.

For CPUs without a GPU. The image encoder (preprocessed images -> projected, unnormalised
embeddings) is exported with torch's ONNX exporter and its weights quantised to int8 with ONNX
Runtime's dynamic quantisation (activations quantised per batch at run time; no calibration
data). The file is made once per weights fingerprint in the user cache folder (``int8/``),
written to a temporary name and renamed, so a killed export leaves nothing half-written. The text
encoder and the captioning decoder stay float32 torch. ONNX Runtime was picked over OpenVINO by
measurement (docs/benchmarks.md, Precision). It is the optional extra ``napari-conch[int8]``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_conch.errors import CheckpointError, NapariConchError
from napari_conch.model.formats import INT8_EXTRA

logger = logging.getLogger("napari_conch")

#: ONNX opset of the export.
OPSET = 17
#: Batch size of the example input traced at export (the batch axis stays dynamic).
EXPORT_BATCH = 2


def require_onnxruntime() -> Any:
    """Import ONNX Runtime (and onnx, which quantisation needs), or one line naming the extra.

    Raises
    ------
    NapariConchError
        When either is not installed.
    """
    try:
        import onnx  # noqa: F401 - quantisation reads and writes onnx models
        import onnxruntime
    except ImportError:
        raise NapariConchError(
            "precision int8 needs ONNX Runtime and onnx, which are not installed here: "
            f"pip install 'napari-conch[{INT8_EXTRA}]'"
        ) from None
    return onnxruntime


class _ImageEncoder(torch.nn.Module):
    """Preprocessed images -> projected, unnormalised embeddings (what is exported)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(images, normalize=False)


def int8_path(loaded: Any) -> Path:
    """Where the int8 encoder of ``loaded`` is kept: ``<user cache>/int8/<fingerprint>-...``.

    Keyed by the weights' fingerprint, the model's input size and architecture, and the
    versions of torch and ONNX Runtime that made it.
    """
    from napari_conch.cache_dir import user_cache_root

    ort = require_onnxruntime()
    key = {
        "config": loaded.config.to_dict(),
        "size": int(loaded.image_size),
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "opset": OPSET,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    return user_cache_root() / "int8" / f"{str(loaded.fingerprint)[:16]}-{digest[:12]}.onnx"


def export_int8(loaded: Any, path: Path) -> Path:
    """Export ``loaded``'s image encoder to ONNX, quantise it to int8, and write ``path``.

    Raises
    ------
    CheckpointError
        When the export or the quantisation fails (named with the model).
    """
    require_onnxruntime()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path.parent.mkdir(parents=True, exist_ok=True)
    size = int(loaded.image_size)
    example = torch.zeros(EXPORT_BATCH, 3, size, size)
    encoder = _ImageEncoder(loaded.model).eval()
    with tempfile.TemporaryDirectory(prefix=".export-", dir=path.parent) as work:
        fp32 = Path(work) / "encoder.onnx"
        int8 = Path(work) / "encoder.int8.onnx"
        try:
            with warnings.catch_warnings(), torch.inference_mode():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    encoder, (example,), str(fp32),
                    input_names=["images"], output_names=["embeddings"],
                    dynamic_axes={"images": {0: "batch"}, "embeddings": {0: "batch"}},
                    opset_version=OPSET, dynamo=False,
                )  # fmt: skip
            with _quiet_logs("root", "onnxruntime"):
                quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
        except Exception as exc:  # the exporter and quantiser raise many kinds
            raise CheckpointError(
                f"{loaded.source}: the image encoder could not be exported to int8 ONNX "
                f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
            ) from exc
        os.replace(int8, path)
    return path


@contextlib.contextmanager
def _quiet_logs(*names: str):
    """The quantiser logs advice ("consider pre-processing") on the root logger: hide it."""
    loggers = [logging.getLogger(n) if n != "root" else logging.getLogger() for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


class Int8Encoder:
    """An ONNX Runtime session of the int8 image encoder: ``[B, 3, S, S]`` -> ``[B, D]``.

    Parameters
    ----------
    path : path
        The int8 ONNX file.
    threads : int, optional
        Intra-op threads (default: torch's, so ``--num-threads`` style settings carry over).
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        ort = require_onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # a damaged file: ONNX Runtime's own error kinds
            raise CheckpointError(
                f"{path}: the int8 encoder cannot be read ({' '.join(str(exc).split())[:200]}); "
                "delete it to export it again"
            ) from exc
        self.path = Path(path)
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(images.detach().to("cpu", torch.float32).numpy())
        (out,) = self.session.run(None, {self.input_name: x})
        return torch.from_numpy(out)


def load_int8_encoder(loaded: Any) -> Int8Encoder:
    """The int8 encoder of ``loaded``: the cached file, exported first when there is none.

    A cached file that ONNX Runtime cannot read is exported again once.
    """
    path = int8_path(loaded)
    if not path.is_file():
        logger.info("exporting the int8 image encoder of %s to %s", loaded.source, path)
        export_int8(loaded, path)
        return Int8Encoder(path)
    try:
        return Int8Encoder(path)
    except CheckpointError:
        logger.warning("the cached int8 encoder %s is damaged; exporting it again", path)
        export_int8(loaded, path)
        return Int8Encoder(path)
