"""ONNX for onnxruntime: the variant's ONNX is already the artifact, so this format only records it."""

from __future__ import annotations

from export.formats import FormatJob, FormatResult


def build(job: FormatJob) -> FormatResult:
    return FormatResult(path=job.rel(job.onnx), extra={"opset": _opset(job)})


def _opset(job: FormatJob) -> int:
    import onnx

    model = onnx.load_model(str(job.onnx), load_external_data=False)
    return max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def errors() -> tuple[type[BaseException], ...]:
    return (OSError, ValueError)
