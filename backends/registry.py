"""Backend name → ``"module:Class"``, imported on first use (MiniGrid's entry points, tinygrad's devices).

This mapping is the only list of backend names; capabilities live on the classes.
"""

from __future__ import annotations

import importlib

from backends.base import Backend

REGISTRY: dict[str, str] = {
    "onnxruntime": "backends.ort:OnnxRuntimeBackend",
    "openvino": "backends.ov:OpenVINOBackend",
    "tensorrt": "backends.trt:TensorRTBackend",
    "torch": "backends.torch_ref:TorchBackend",
    "numpy": "backends.numpy_ref:NumpyBackend",
}


def backend_names() -> list[str]:
    return list(REGISTRY)


def get_backend(name: str) -> type[Backend]:
    """Import and return the backend class; an unknown name lists the valid ones."""
    try:
        target = REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; valid backends: {', '.join(REGISTRY)}") from None
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)
