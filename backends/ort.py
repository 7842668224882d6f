"""onnxruntime backend: runs ``.onnx`` artifacts (fp32, fp16, int8 dynamic and QDQ) on the CPU or a listed EP.

Torch-free and lazy: ``onnxruntime`` is imported inside the methods, so a device without it gets a
:class:`BackendUnavailable` naming the package instead of an ImportError at import time.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from backends.base import Backend, BackendUnavailable

DEFAULT_PROVIDERS = ("CPUExecutionProvider",)


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as err:
        raise BackendUnavailable(
            f"the onnxruntime backend needs the onnxruntime package: pip install onnxruntime ({err})"
        ) from err
    return onnxruntime


def _ort_errors() -> tuple[type[BaseException], ...]:
    """The exception types a session raises: pybind classes that derive from ``Exception`` directly."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = ("Fail", "InvalidArgument", "InvalidProtobuf", "InvalidGraph", "NoSuchFile", "RuntimeException")
    return tuple(getattr(state, n) for n in names if hasattr(state, n))


#: onnxruntime's type string of a model input, by numpy dtype name.
ONNX_TYPES = {"float32": "tensor(float)", "uint8": "tensor(uint8)"}


def _dim_matches(dim: object, expected: int) -> bool:
    """A fixed dimension must equal ``expected``; a symbolic one (str/None) is accepted."""
    return not isinstance(dim, int) or dim == expected


class OnnxRuntimeBackend(Backend):
    name: ClassVar[str] = "onnxruntime"
    formats: ClassVar[tuple[str, ...]] = ("onnx",)
    needs_gpu: ClassVar[bool] = False
    package: ClassVar[str] = "onnxruntime"

    @classmethod
    def check_available(cls) -> None:
        _ort()

    def load(self) -> None:
        ort = _ort()
        options = ort.SessionOptions()
        # One intra-op thread is fastest for a model this small (PITFALLS: onnxruntime).
        options.intra_op_num_threads = int(self.settings.get("intra_op_threads", 1))
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        available = set(ort.get_available_providers())
        wanted = self.settings.get("providers", DEFAULT_PROVIDERS)
        self.providers = [p for p in wanted if p in available] or list(DEFAULT_PROVIDERS)
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=self.providers)
        except _ort_errors() as err:
            raise RuntimeError(f"{self.path}: onnxruntime could not load the model ({err})") from err
        self._check_signature()
        self._input = self.session.get_inputs()[0].name
        self._outputs = [self.session.get_outputs()[0].name]
        # The per-frame path: an I/O binding whose input and output are these two buffers, so a frame
        # builds no feed dict, no output list and allocates no output array. Measured interleaved on the
        # float policy: session.run p50 18.5 µs / p99 36.7 µs, run_with_iobinding 13.3 / 27.3 (2 loaded
        # cores; benchmarks/edge_loop.py has the figures of a run).
        self._one = np.zeros((1, *self.input_shape), dtype=self.input_dtype)
        self._q_one = np.zeros((1, self.n_actions), dtype=np.float32)
        self._binding = self.session.io_binding()
        self._binding.bind_cpu_input(self._input, self._one)  # binds the array's memory, no copy
        self._binding.bind_output(
            self._outputs[0], "cpu", 0, np.float32, list(self._q_one.shape), self._q_one.ctypes.data
        )

    def _check_signature(self) -> None:
        """Refuse a model that is not ``[N, *input_shape] → [N, n_actions]`` of the right element types
        (wrong env or wrong file)."""
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        want = f"[N, {', '.join(map(str, self.input_shape))}]"
        if len(inputs) != 1:
            raise ValueError(f"{self.path}: expected one input {want}, found {len(inputs)}")
        arg = inputs[0]
        kind = ONNX_TYPES[self.input_dtype.name]
        if (
            arg.type != kind
            or len(arg.shape) != len(self.input_shape) + 1
            or not all(_dim_matches(d, w) for d, w in zip(arg.shape[1:], self.input_shape, strict=True))
        ):
            raise ValueError(
                f"{self.path}: input {arg.name!r} is {arg.type} {arg.shape}, expected {kind} {want}; the "
                f"artifact was exported for another observation mode"
            )
        out = outputs[0]
        if (
            out.type != "tensor(float)"
            or len(out.shape) != 2
            or not _dim_matches(out.shape[1], self.n_actions)
        ):
            raise ValueError(
                f"{self.path}: output {out.name!r} is {out.type} {out.shape}, expected tensor(float) "
                f"[N, {self.n_actions}]"
            )

    def infer(self, obs: np.ndarray) -> np.ndarray:
        return self.session.run(self._outputs, {self._input: self.as_input(obs)})[0]

    def infer_one(self, obs: np.ndarray) -> np.ndarray:
        self._one[0] = obs
        self.session.run_with_iobinding(self._binding)
        return self._q_one[0]  # a view of the bound output: valid until the next call (Backend.infer_one)

    def runtime_version(self) -> str:
        return str(_ort().__version__)

    def close(self) -> None:
        self._binding = None
        self.session = None
