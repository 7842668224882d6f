"""The one inference interface every runtime implements (docs/contracts.md#backends).

A backend loads one artifact (after its sha256 is checked against the manifest) and maps a batch of
observations as the model takes them — float32 ``[N, obs_dim]``, or uint8 ``[N, C, H, W]`` frames of an
image task (``input_shape``, ``input_dtype``: ``Manifest.model_input``) — to Q-values/logits
``[N, n_actions]`` (or actions); the caller takes the argmax.
Capabilities are class attributes, so no list of names elsewhere needs to know them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from backends.manifest import LOADABLE, ArtifactEntry, Manifest, verify_artifact


class BackendUnavailable(RuntimeError):
    """The runtime a backend needs is not installed or has no usable device; says what to install."""


class Backend(ABC):
    name: ClassVar[str]
    """Registry name (``onnxruntime``, ``openvino`` …)."""
    formats: ClassVar[tuple[str, ...]]
    """Artifact formats it can load (``onnx``, ``openvino``, ``tensorrt``, ``torch``)."""
    needs_gpu: ClassVar[bool] = False
    on_device: ClassVar[bool] = True
    """Whether device bundles and images ship this runtime (False: a workstation-only reference)."""
    precisions: ClassVar[tuple[str, ...] | None] = None
    """Precisions it can run (``fp32``, ``fp16``, ``int8``); None means any its formats can hold."""
    package: ClassVar[str]
    """What to ``pip install`` (or otherwise install) when the runtime is missing."""

    def __init__(
        self,
        path: Path,
        obs_dim: int,
        n_actions: int,
        settings: dict[str, Any] | None = None,
        input_shape: tuple[int, ...] | None = None,
        input_dtype: str = "float32",
    ):
        self.path = Path(path)
        self.obs_dim = obs_dim
        self.n_actions = n_actions
        self.settings = dict(settings or {})
        self.input_shape = tuple(input_shape) if input_shape is not None else (obs_dim,)
        """One observation as the model takes it (without the batch axis)."""
        self.input_dtype = np.dtype(input_dtype)

    def as_input(self, obs: np.ndarray) -> np.ndarray:
        """A batch as the model takes it (contiguous, its dtype); ``ValueError`` on another shape."""
        obs = np.ascontiguousarray(obs, dtype=self.input_dtype)
        if obs.shape[1:] != self.input_shape or obs.ndim != len(self.input_shape) + 1:
            raise ValueError(
                f"expected observations [N, {', '.join(map(str, self.input_shape))}], got {obs.shape}"
            )
        return obs

    @classmethod
    def runs(cls, fmt: str, precision: str) -> bool:
        """Whether an artifact of this format and precision can run here (export lists only those)."""
        return fmt in cls.formats and (cls.precisions is None or precision in cls.precisions)

    @classmethod  # noqa: B027 (an optional hook: most runtimes need no check beyond their import)
    def check_available(cls) -> None:
        """Raise :class:`BackendUnavailable` if the runtime cannot be used here (import is lazy)."""

    @classmethod
    def from_manifest(
        cls,
        manifest: Manifest,
        entry: ArtifactEntry,
        settings: dict[str, Any] | None = None,
        allowed: tuple[str, ...] = LOADABLE,
    ) -> Backend:
        """Verify the artifact's status (one of ``allowed``) and hash, then load it."""
        if entry.format not in cls.formats:
            raise ValueError(f"backend {cls.name} loads {cls.formats}, not {entry.format} ({entry.name})")
        cls.check_available()
        path = verify_artifact(manifest, entry, allowed)
        shape, dtype = manifest.model_input
        backend = cls(path, manifest.obs_dim, manifest.output_dim, settings, shape, dtype)
        backend.load()
        return backend

    @abstractmethod
    def load(self) -> None:
        """Create the runtime session; refuse a model whose input/output shapes do not fit."""

    @abstractmethod
    def infer(self, obs: np.ndarray) -> np.ndarray:
        """``[N, *input_shape]`` of ``input_dtype`` → ``[N, n_actions]``."""

    def infer_one(self, obs: np.ndarray) -> np.ndarray:
        """One observation (``input_shape``) → ``[n_actions]``; backends override this for the per-frame path.

        The result may be a view of an output buffer the backend reuses (onnxruntime's I/O binding,
        OpenVINO's output tensor): valid until the next call — copy it to keep it. The per-frame loop
        reads it at once, and a copy per frame would cost ~0.3 µs of a ~20 µs frame.
        """
        return self.infer(np.asarray(obs, dtype=self.input_dtype).reshape(1, *self.input_shape))[0]

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release the runtime's resources."""

    def runtime_version(self) -> str:
        return "unknown"

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
