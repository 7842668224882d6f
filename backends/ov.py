"""OpenVINO backend: runs IR artifacts (``model.xml`` + ``model.bin``; fp32, fp16 or NNCF INT8) on the CPU.

Torch-free and lazy. Two compiled models share one IR: the dynamic-batch one serves :meth:`infer`, and a
copy reshaped to a static ``[1, obs_dim]`` with a single infer request, whose input tensor is written in
place, serves :meth:`infer_one` (the per-frame path; PITFALLS: ~14 µs against ~74 µs for ``req.infer(x)``
with default settings).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from backends.base import Backend, BackendUnavailable
from backends.manifest import LOADABLE, ArtifactEntry, Manifest, ManifestError, file_sha256


def _ov() -> Any:
    try:
        import openvino
    except ImportError as err:
        raise BackendUnavailable(
            f"the openvino backend needs the openvino package: pip install openvino ({err})"
        ) from err
    return openvino


def verify_companions(manifest: Manifest, entry: ArtifactEntry) -> None:
    """Check the files an artifact carries besides its main path (the IR's ``.bin``) against the manifest.

    The manifest's ``sha256`` covers ``model.xml`` only; the weights live in ``model.bin``, listed with their
    own hash under ``extra["files"]`` so that a tampered weights file is refused like a tampered graph.
    """
    for rel, meta in dict(entry.extra.get("files", {})).items():
        path = manifest.companion_path(entry, rel)
        fix = f"re-run `make export TARGET={manifest.target}`"
        if not path.is_file():
            raise ManifestError(f"{path}: file of artifact {entry.name} missing; {fix}")
        digest = file_sha256(path)
        if digest != meta.get("sha256"):
            raise ManifestError(
                f"{path}: sha256 {digest[:12]}… does not match the manifest "
                f"({str(meta.get('sha256'))[:12]}…); the file was modified or corrupted — {fix}"
            )


class OpenVINOBackend(Backend):
    name: ClassVar[str] = "openvino"
    formats: ClassVar[tuple[str, ...]] = ("openvino",)
    needs_gpu: ClassVar[bool] = False
    package: ClassVar[str] = "openvino"

    @classmethod
    def check_available(cls) -> None:
        _ov()

    @classmethod
    def from_manifest(
        cls,
        manifest: Manifest,
        entry: ArtifactEntry,
        settings: dict[str, Any] | None = None,
        allowed: tuple[str, ...] = LOADABLE,
    ) -> Backend:
        """Verify the ``.bin`` as well as the ``.xml`` before loading."""
        if entry.status in allowed:  # the base class refuses other statuses with the reason
            verify_companions(manifest, entry)
        return super().from_manifest(manifest, entry, settings, allowed)

    def _compile_config(self) -> dict[str, Any]:
        # f32 precision hint: CPUs with AVX512-BF16 otherwise run in bf16 and parity drifts ~1e-3.
        return {
            "PERFORMANCE_HINT": str(self.settings.get("performance_hint", "LATENCY")),
            "INFERENCE_NUM_THREADS": int(self.settings.get("threads", 1)),
            "INFERENCE_PRECISION_HINT": str(self.settings.get("precision_hint", "f32")),
        }

    def load(self) -> None:
        ov = _ov()
        core = ov.Core()
        device = str(self.settings.get("device", "CPU"))
        config = self._compile_config()
        xml = str(self.path)
        if not Path(xml).with_suffix(".bin").is_file():
            raise ValueError(
                f"{self.path}: the IR's weights file {Path(xml).with_suffix('.bin').name} is missing"
            )
        try:
            model = core.read_model(xml)
            self._check_signature(ov, model)
            self.compiled = core.compile_model(model, device, config)
            single = core.read_model(xml)
            single.reshape([1, *self.input_shape])
            self.compiled_one = core.compile_model(single, device, config)
        except RuntimeError as err:  # OpenVINO reports every load/compile failure as RuntimeError
            raise RuntimeError(f"{self.path}: OpenVINO could not load the model on {device} ({err})") from err
        self._batch_request = self.compiled.create_infer_request()
        self._one_request = self.compiled_one.create_infer_request()
        self._one_in = self._one_request.get_input_tensor(0).data  # numpy view into the request's input
        # ... and of its output: the batch-1 request's buffers stay put across infer() calls, so the view is
        # taken once (get_output_tensor(0).data per frame cost ~2.8 µs of a ~14 µs frame).
        self._one_out = self._one_request.get_output_tensor(0).data[0]

    def _check_signature(self, ov: Any, model: Any) -> None:
        """Refuse an IR that is not ``[N, *input_shape] → [N, n_actions]`` of the right element types."""
        if len(model.inputs) != 1:
            raise ValueError(f"{self.path}: expected one input, found {len(model.inputs)}")
        kind = {"float32": ov.Type.f32, "uint8": ov.Type.u8}[self.input_dtype.name]
        for port, dims, element, what in (
            (model.inputs[0], self.input_shape, kind, "input"),
            (model.outputs[0], (self.n_actions,), ov.Type.f32, "output"),
        ):
            shape = port.get_partial_shape()
            ok = (
                port.get_element_type() == element
                and shape.rank.is_static
                and shape.rank.get_length() == len(dims) + 1
                and all(shape[i + 1].is_dynamic or shape[i + 1].get_length() == d for i, d in enumerate(dims))
            )
            if not ok:
                raise ValueError(
                    f"{self.path}: {what} {port.get_any_name()!r} is {port.get_element_type()} {shape}, "
                    f"expected {element} [N, {', '.join(map(str, dims))}]"
                )

    def infer(self, obs: np.ndarray) -> np.ndarray:
        self._batch_request.infer({0: self.as_input(obs)})
        return self._batch_request.get_output_tensor(0).data.copy()

    def infer_one(self, obs: np.ndarray) -> np.ndarray:
        self._one_in[0] = obs
        self._one_request.infer()
        return self._one_out  # valid until the next call (Backend.infer_one)

    def runtime_version(self) -> str:
        return str(_ov().get_version())

    def close(self) -> None:
        self._batch_request = self._one_request = self._one_in = self._one_out = None
        self.compiled = self.compiled_one = None
