"""OpenVINO IR (``model.xml`` + ``model.bin``) from the variant source's fp32 ONNX.

- fp32: ``save_model(..., compress_to_fp16=False)``; the default would silently halve the weights.
- fp16: the same conversion saved with FP16-compressed weights (decompressed to f32 at load).
- int8-static: ``nncf.quantize`` on the fp32 IR with the MINMAX range estimator and batched calibration
  items: batch-1 items on a 6-feature input clip badly (PITFALLS).

There is no OpenVINO counterpart of onnxruntime's ``int8-dynamic``; asking for it is recorded as a failed
artifact with that reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from export.formats import FormatJob, FormatResult

CALIBRATION_BATCH = 64
"""Samples per NNCF calibration item; all items are used (``subset_size`` = number of items)."""


def _ov() -> Any:
    import openvino

    return openvino


def _convert(job: FormatJob) -> Any:
    return _ov().convert_model(str(job.source_onnx))


def _fp32(job: FormatJob) -> tuple[Any, bool, dict[str, Any]]:
    return _convert(job), False, {}


def _fp16(job: FormatJob) -> tuple[Any, bool, dict[str, Any]]:
    return _convert(job), True, {"compression": "fp16 weights"}


def _int8_static(job: FormatJob) -> tuple[Any, bool, dict[str, Any]]:
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    nncf.set_log_level(logging.ERROR)
    obs = np.ascontiguousarray(job.calib_obs, dtype=np.float32)
    items = [obs[i : i + CALIBRATION_BATCH] for i in range(0, len(obs), CALIBRATION_BATCH)]
    model = nncf.quantize(
        _convert(job),
        nncf.Dataset(items),
        preset=nncf.QuantizationPreset.PERFORMANCE,  # symmetric activations and weights
        subset_size=len(items),
        advanced_parameters=AdvancedQuantizationParameters(
            activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX,
            weights_range_estimator_params=RangeEstimatorParametersSet.MINMAX,
        ),
    )
    info = {"quantization": "nncf int8, MINMAX ranges", "calibration_samples": len(obs)}
    return model, False, info


CONVERTERS: dict[str, Callable[[FormatJob], tuple[Any, bool, dict[str, Any]]]] = {
    "fp32": _fp32,
    "fp16": _fp16,
    "int8-static": _int8_static,
}


def build(job: FormatJob) -> FormatResult:
    try:
        convert = CONVERTERS[job.precision.name]
    except KeyError:
        raise ValueError(
            f"OpenVINO IR has no {job.precision.name} precision (it has {', '.join(CONVERTERS)}); "
            f"drop {job.variant.name} from [formats.openvino] of the target profile"
        ) from None
    model, compress, info = convert(job)
    xml = job.folder / "model.xml"
    _ov().save_model(model, str(xml), compress_to_fp16=compress)
    return FormatResult(path=job.rel(xml), files=[job.rel(xml.with_suffix(".bin"))], extra=info)


def errors() -> tuple[type[BaseException], ...]:
    """OpenVINO raises RuntimeError; NNCF's own errors derive from Exception directly."""
    import nncf.errors

    nncf_errors = tuple(
        cls
        for cls in vars(nncf.errors).values()
        if isinstance(cls, type) and issubclass(cls, Exception) and cls.__module__ == nncf.errors.__name__
    )
    return (RuntimeError, ValueError, *nncf_errors)
