"""Output formats, one module each, found by name (like ``backends.registry``): no if/elif over formats.

A format module exposes ``build(job) -> FormatResult`` and ``errors() -> tuple[type, ...]`` (what its
toolchain raises on a model it cannot convert, caught at the pipeline's one boundary and recorded as the
artifact's reason); it may expose ``finish(root, target, entries) -> list[str]`` to write files that
cover all its artifacts (TensorRT's ``build_engines.sh``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from export.quantize import Precision
from export.variants import Variant

FORMATS: dict[str, str] = {
    "onnx": "export.formats.onnx",
    "openvino": "export.formats.openvino",
    "tensorrt": "export.formats.tensorrt",
    "torch": "export.formats.torch",
}


@dataclass
class FormatJob:
    """One variant to write in one format."""

    variant: Variant
    precision: Precision
    root: Path
    """The target folder being written; artifact paths are relative to it."""
    source_onnx: Path
    """fp32 ONNX of the variant's torch source (what converters that quantize themselves start from)."""
    onnx: Path
    """The variant's own ONNX (its precision applied), always ``<root>/<variant>/model.onnx``."""
    calib_obs: np.ndarray
    """Calibration observations as the model takes them (float32 rows, or an image task's uint8 frames)."""
    obs_dim: int
    n_actions: int
    input_shape: tuple[int, ...] | None = None
    """One observation as the model takes it, when not the flat ``[obs_dim]`` (an image task's frames)."""
    options: dict[str, Any] = field(default_factory=dict)
    """The target profile's ``[formats.<name>]`` options (e.g. TensorRT batch range)."""
    settings: dict[str, Any] = field(default_factory=dict)
    """The target profile's settings of the format's first backend."""
    source: Any = None
    """The variant's torch network (``export.sources.SourceModel``), for formats that save it as it is."""

    @property
    def folder(self) -> Path:
        return self.onnx.parent

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


@dataclass
class FormatResult:
    path: str
    """Main file, relative to the target folder (hashed into the manifest entry)."""
    status: str = "ok"
    reason: str | None = None
    files: list[str] = field(default_factory=list)
    """Companion files (relative), hashed into ``extra["files"]`` (OpenVINO's ``.bin``)."""
    extra: dict[str, Any] = field(default_factory=dict)


def get_format(name: str) -> ModuleType:
    """Import the module that writes format ``name``; an unknown name lists the valid ones."""
    try:
        module = FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown format {name!r}; valid formats: {', '.join(FORMATS)}") from None
    return importlib.import_module(module)
