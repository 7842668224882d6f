"""OpenVINO IR (``model.xml`` + ``model.bin``) from the variant source's fp32 ONNX.

- fp32: ``save_model(..., compress_to_fp16=False)``; the default would silently halve the weights.
- fp16: the same conversion saved with FP16-compressed weights (decompressed to f32 at load).
- int8-static: ``nncf.quantize`` on the fp32 IR with the MINMAX range estimator and batched calibration
  items: batch-1 items on a 6-feature input clip badly (PITFALLS). The output layer (the MatMul computing
  the Q-values) is left float through NNCF's ignored scope, as the ONNX int8 precisions do
  (``export.quantize``): it lifts the CQL policy's reachable-state agreement from 98.73 % (failing its
  gate) to 100 % (measurements: docs/export.md#openvino-int8-nncf).

There is no OpenVINO counterpart of onnxruntime's ``int8-dynamic``; asking for it is recorded as a failed
artifact with that reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from export.formats import FormatJob, FormatResult
from export.onnx_export import model_array

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


WEIGHTED = ("MatMul", "Convolution")


def output_layers(model: Any) -> list[str]:
    """Friendly names of the weighted ops (MatMul/Convolution) that compute the model's results, found by
    walking back from each result through unweighted ops (the bias Add OpenVINO splits off a Gemm)."""
    found = []
    for result in model.get_results():
        node = result.input_value(0).get_node()
        while node is not None and node.get_type_name() not in WEIGHTED:
            inputs = [v.get_node() for v in node.input_values()]
            node = next((n for n in inputs if n.get_type_name() != "Constant"), None)
        if node is not None:
            found.append(node.get_friendly_name())
    return found


def input_layers(model: Any, calib_obs: np.ndarray) -> list[str]:
    """The MatMul fed by the model's only input, when the observation's features are uneven enough to keep
    it float (``export.quantize.float_input_layers``, whose reasons and spread threshold apply here too).
    Its other rule, a small first layer kept float, is not applied: with NNCF it did not help (both networks
    tried still failed the 0.5 bound; measurements: docs/export.md#the-first-layer-stays-float)."""
    from export.quantize import INPUT_SPREAD_MIN, feature_spread

    spread = feature_spread(calib_obs)
    if len(model.inputs) != 1 or spread is None or spread <= INPUT_SPREAD_MIN:
        return []
    users = [t.get_node() for t in model.inputs[0].get_target_inputs()]
    if len(users) != 1 or users[0].get_type_name() != "MatMul":
        return []
    return [users[0].get_friendly_name()]


def _int8_static(job: FormatJob) -> tuple[Any, bool, dict[str, Any]]:
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    nncf.set_log_level(logging.ERROR)
    obs = model_array(job.calib_obs)  # uint8 frames of an image task stay uint8, as the model takes them
    items = [obs[i : i + CALIBRATION_BATCH] for i in range(0, len(obs), CALIBRATION_BATCH)]
    fp32 = _convert(job)
    last = [*input_layers(fp32, obs), *output_layers(fp32)]
    model = nncf.quantize(
        fp32,
        nncf.Dataset(items),
        preset=nncf.QuantizationPreset.PERFORMANCE,  # symmetric activations and weights
        subset_size=len(items),
        ignored_scope=nncf.IgnoredScope(names=last),
        advanced_parameters=AdvancedQuantizationParameters(
            # 7-bit weights in every layer (NNCF's default fixes the first only): int8 dot products on
            # AVX2/AVX-512 without VNNI add u8 × s8 pairs in int16, which 8-bit weights overflow (the test
            # teacher on an AMD EPYC without VNNI: 100 % agreement instead of 76 %; measurements:
            # docs/export.md#openvino-int8-nncf)
            overflow_fix=OverflowFix.ENABLE,
            activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX,
            weights_range_estimator_params=RangeEstimatorParametersSet.MINMAX,
        ),
    )
    info = {
        "quantization": "nncf int8, MINMAX ranges, 7-bit weights (overflow fix), output layer (and a "
        "first layer fed uneven features) float",
        "float_layers": last,
        "calibration_samples": len(obs),
    }
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
