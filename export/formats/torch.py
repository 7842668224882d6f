"""The variant's torch network as a NeuroQuant ``.safetensors`` checkpoint, for the ``torch`` backend.

The torch backend is the reference the other runtimes are measured against (docs/contracts.md#backends);
exporting the same network in this format puts it into the manifest, so the benchmark matrix times torch side
by side with onnxruntime, OpenVINO and numpy on the very same variant. Only fp32: torch runs the network
exactly as training (or pruning, or distillation) left it. The file is weights plus the network config, no
pickle.
"""

from __future__ import annotations

from export.formats import FormatJob, FormatResult

FILE = "model.safetensors"


def build(job: FormatJob) -> FormatResult:
    if job.precision.label != "fp32":
        raise ValueError(
            f"the torch format holds fp32 networks only, not {job.precision.label}; "
            f"drop {job.variant.name} from [formats.torch] of the target profile"
        )
    if job.source is None:
        raise ValueError(f"no torch network was built for {job.variant.name}")
    from train.checkpoint import save_checkpoint

    path = job.folder / FILE
    info = {"variant": job.variant.name, "derived_from": job.source.checkpoint, **job.source.info}
    save_checkpoint(path, job.source.model, job.source.config, info)
    return FormatResult(path=job.rel(path), extra={"file": "safetensors: weights + network config"})


def errors() -> tuple[type[BaseException], ...]:
    return (OSError, ValueError)
