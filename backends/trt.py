"""The TensorRT backend: runs a serialized engine built on the device, with cuda-python for device memory.

Why cuda-python and not pycuda or torch: it is NVIDIA's maintained binding, small, and keeps torch out of
the edge path. Engines are tied to the GPU architecture and TensorRT version, so export records TensorRT
artifacts as ``pending-on-device`` with the build command; the engine file this loads is built on the
device (``trtexec --onnx=… --saveEngine=…``) and then entered in the manifest.

API notes (TensorRT 10.x on JetPack 6, 11.x on desktop): the name-based I/O API used here
(``num_io_tensors``/``get_tensor_name``/``set_input_shape``/``set_tensor_address``/``execute_async_v3``)
exists in both; 11.x removed weak typing (builder flags) and ``device_memory_size``, neither of which the
runtime side needs. cuda-python moved its runtime module from ``cuda.cudart`` to ``cuda.bindings.runtime``
(12.6+); both are accepted. Its functions return ``(error, *values)`` tuples instead of raising.
"""

from __future__ import annotations

import ctypes
import math
from typing import Any, ClassVar

import numpy as np

from backends.base import Backend, BackendUnavailable

_INSTALL = (
    "tensorrt (JetPack ships it; on a desktop: pip install tensorrt from NVIDIA's index) and cuda-python "
    "(pip install cuda-python), plus an NVIDIA GPU with its driver"
)


def _import_runtime() -> tuple[Any, Any]:
    """Import ``tensorrt`` and cuda-python's runtime module, or say what to install."""
    try:
        import tensorrt as trt
    except ImportError as err:
        raise BackendUnavailable(
            f"backend 'tensorrt' needs {_INSTALL}: cannot import tensorrt ({err})"
        ) from err
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python < 12.6
        except ImportError as err:
            raise BackendUnavailable(
                f"backend 'tensorrt' needs {_INSTALL}: cannot import cuda-python ({err})"
            ) from err
    return trt, cudart


def _check(cudart: Any, result: Any, what: str) -> Any:
    """Unwrap a cuda-python ``(error, *values)`` tuple, raising on a CUDA error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != int(cudart.cudaError_t.cudaSuccess):
        raise RuntimeError(f"CUDA error during {what}: {err!r}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def io_problem(
    in_shape: tuple[int, ...], out_shape: tuple[int, ...], input_shape: tuple[int, ...], n_actions: int
) -> str | None:
    """What is wrong with an engine's input/output shapes (batch first, -1 when dynamic) for observations of
    ``input_shape`` and ``n_actions`` outputs, or None. Without TensorRT, so it is tested everywhere."""
    if len(in_shape) != 1 + len(input_shape) or tuple(in_shape[1:]) != tuple(input_shape):
        return f"input has shape {list(in_shape)}, expected [N, {', '.join(map(str, input_shape))}]"
    if len(out_shape) != 2 or out_shape[1] != n_actions:
        return f"output has shape {list(out_shape)}, expected [N, {n_actions}]"
    return None


class TensorRTBackend(Backend):
    """Deserializes an engine and runs ``execute_async_v3`` on one stream with pre-allocated buffers.

    Buffers are sized for ``settings["max_batch"]`` (default: the engine profile's max, else 256) once, so
    the per-frame path is two async copies, one enqueue and one synchronize — no allocation.
    """

    name: ClassVar[str] = "tensorrt"
    formats: ClassVar[tuple[str, ...]] = ("tensorrt",)
    needs_gpu: ClassVar[bool] = True
    package: ClassVar[str] = "tensorrt (JetPack / NVIDIA's pip index) and cuda-python"

    @classmethod
    def check_available(cls) -> None:
        _, cudart = _import_runtime()
        # `import tensorrt` succeeds on machines without a GPU; detect the device before building anything.
        err, count = cudart.cudaGetDeviceCount()
        if int(err) != int(cudart.cudaError_t.cudaSuccess) or count < 1:
            raise BackendUnavailable(
                f"backend 'tensorrt' needs an NVIDIA GPU with a working driver: cudaGetDeviceCount gave "
                f"{err!r}, {count} device(s)"
            )

    def load(self) -> None:
        trt, cudart = _import_runtime()
        self._trt, self._cudart = trt, cudart
        self._allocations: list[int] = []
        self._host: list[int] = []
        self._stream = None
        self._logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self._logger)
        engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise ValueError(
                f"{self.path}: TensorRT could not deserialize the engine (built for another GPU or TensorRT "
                f"{trt.__version__}?); rebuild it on this device with the command in the manifest"
            )
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(
                f"{self.path}: expected one input and one output tensor, found {inputs} / {outputs}"
            )
        self._in, self._out = inputs[0], outputs[0]
        in_shape, out_shape = (
            tuple(engine.get_tensor_shape(self._in)),
            tuple(engine.get_tensor_shape(self._out)),
        )
        problem = io_problem(in_shape, out_shape, self.input_shape, self.n_actions)
        if problem:
            raise ValueError(f"{self.path}: engine {problem}")
        self._in_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self._in)))
        self._out_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self._out)))
        if in_shape[0] == -1:  # dynamic batch: the optimization profile bounds it
            _, _, profile_max = engine.get_tensor_profile_shape(self._in, 0)
            self.max_batch = int(self.settings.get("max_batch", profile_max[0]))
        else:
            self.max_batch = int(in_shape[0])
        self._dynamic = in_shape[0] == -1
        self.engine, self.context = engine, engine.create_execution_context()
        if self.context is None:
            raise RuntimeError(
                f"{self.path}: could not create a TensorRT execution context (out of GPU memory?)"
            )
        self._stream = _check(cudart, cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._in_size = math.prod(self.input_shape)  # values in one observation: obs_dim, or C·H·W frames
        self._d_in = self._device_alloc(self.max_batch * self._in_size * self._in_dtype.itemsize)
        self._d_out = self._device_alloc(self.max_batch * self.n_actions * self._out_dtype.itemsize)
        self.context.set_tensor_address(self._in, self._d_in)
        self.context.set_tensor_address(self._out, self._d_out)
        # Pinned host staging buffers: async copies from pageable memory silently become synchronous.
        self._h_in = self._pinned(self.max_batch * self._in_size, self._in_dtype)
        self._h_out = self._pinned(self.max_batch * self.n_actions, self._out_dtype)
        self._batch = 0
        self._set_batch(1)

    def _device_alloc(self, nbytes: int) -> int:
        ptr = int(_check(self._cudart, self._cudart.cudaMalloc(nbytes), "cudaMalloc"))
        self._allocations.append(ptr)
        return ptr

    def _pinned(self, count: int, dtype: np.dtype) -> np.ndarray:
        nbytes = count * dtype.itemsize
        ptr = int(_check(self._cudart, self._cudart.cudaMallocHost(nbytes), "cudaMallocHost"))
        self._host.append(ptr)
        buf = (ctypes.c_byte * nbytes).from_address(ptr)
        return np.frombuffer(buf, dtype=dtype, count=count)

    def _set_batch(self, n: int) -> None:
        if n == self._batch:
            return
        if n > self.max_batch:
            raise ValueError(f"batch {n} exceeds the engine's maximum batch {self.max_batch}")
        shape = (n, *self.input_shape)
        if self._dynamic and not self.context.set_input_shape(self._in, shape):
            raise ValueError(f"TensorRT refused input shape {shape} for this engine's profile")
        if not self._dynamic and n != self.max_batch:
            raise ValueError(f"this engine has a static batch of {self.max_batch}, got {n}")
        self._batch = n

    def _run(self, n: int) -> np.ndarray:
        cudart, stream = self._cudart, self._stream
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        in_bytes, out_bytes = (
            n * self._in_size * self._in_dtype.itemsize,
            n * self.n_actions * self._out_dtype.itemsize,
        )
        _check(
            cudart,
            cudart.cudaMemcpyAsync(self._d_in, self._h_in.ctypes.data, in_bytes, h2d, stream),
            "copy in",
        )
        if not self.context.execute_async_v3(int(stream)):
            raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log above)")
        _check(
            cudart,
            cudart.cudaMemcpyAsync(self._h_out.ctypes.data, self._d_out, out_bytes, d2h, stream),
            "copy out",
        )
        _check(cudart, cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        return self._h_out[: n * self.n_actions].reshape(n, self.n_actions).astype(np.float32)

    def infer(self, obs: np.ndarray) -> np.ndarray:
        x = self.as_input(obs)  # [N, *input_shape] of the manifest's dtype, or a ValueError naming both
        results = []
        for start in range(0, len(x), self.max_batch):  # chunks keep a large batch within the profile
            chunk = x[start : start + self.max_batch]
            self._set_batch(len(chunk))
            self._h_in[: chunk.size] = chunk.reshape(-1)
            results.append(self._run(len(chunk)))
        return np.concatenate(results) if len(results) != 1 else results[0]

    def infer_one(self, obs: np.ndarray) -> np.ndarray:
        self._set_batch(1)
        self._h_in[: self._in_size] = np.asarray(obs).reshape(-1)
        return self._run(1)[0]

    def close(self) -> None:
        cudart = getattr(self, "_cudart", None)
        if cudart is None:
            return
        for ptr in getattr(self, "_allocations", []):
            cudart.cudaFree(ptr)
        for ptr in getattr(self, "_host", []):
            cudart.cudaFreeHost(ptr)
        self._allocations, self._host = [], []
        if self._stream is not None:
            cudart.cudaStreamDestroy(self._stream)
            self._stream = None
        self.context = self.engine = None

    def runtime_version(self) -> str:
        trt = getattr(self, "_trt", None)
        return f"tensorrt {trt.__version__}" if trt is not None else "tensorrt (not loaded)"
