"""TensorRT engines: built here when TensorRT and a CUDA device are present, else on the device itself.

Engines are tied to the GPU architecture and the TensorRT version, so building on the device is the normal
path: the artifact is then recorded ``pending-on-device`` with its ONNX input and the exact ``trtexec``
commands, and ``build_engines.sh`` in the target folder builds every pending engine there. Nothing here
pretends an engine exists.

Precision comes from the variant's ONNX (fp16 weights, or symmetric QDQ for int8). TensorRT 10.x builds
weakly typed networks and needs the FP16/INT8 builder flags (trtexec ``--fp16``/``--int8``); 11.x removed
them and always builds strongly typed networks (``--stronglyTyped`` is accepted and harmless there).
onnxruntime's ``int8-dynamic`` graphs do not parse in TensorRT, so that precision is refused.
"""

from __future__ import annotations

import ctypes
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.manifest import ArtifactEntry, file_sha256
from export.formats import FormatJob, FormatResult
from export.onnx_export import INPUT

ENGINE_NAME = "model.engine"
SCRIPT_NAME = "build_engines.sh"
TRT10_FLAGS: dict[str, tuple[str, ...]] = {"fp32": (), "fp16": ("FP16",), "int8-static": ("INT8",)}
"""TensorRT ≤ 10.x builder flags per precision (trtexec spells them ``--fp16``/``--int8``)."""
TRT11_TRTEXEC_FLAGS: tuple[str, ...] = ("--stronglyTyped",)
DEFAULT_WORKSPACE_MB = 256


@dataclass(frozen=True)
class Shapes:
    """The optimisation profile of the dynamic batch axis."""

    min_batch: int
    opt_batch: int
    max_batch: int
    obs_shape: tuple[int, ...] | int
    """One observation as the model takes it: ``obs_dim`` (an int, flat), or an image task's ``(C, H, W)``."""

    def __post_init__(self) -> None:
        shape = (self.obs_shape,) if isinstance(self.obs_shape, int) else tuple(self.obs_shape)
        object.__setattr__(self, "obs_shape", shape)

    @classmethod
    def from_options(cls, options: dict[str, Any], obs_shape: tuple[int, ...] | int) -> Shapes:
        shapes = cls(
            int(options.get("min_batch", 1)),
            int(options.get("opt_batch", 1)),
            int(options.get("max_batch", 256)),
            obs_shape,
        )
        if not 1 <= shapes.min_batch <= shapes.opt_batch <= shapes.max_batch:
            raise ValueError(f"[formats.tensorrt] needs 1 ≤ min_batch ≤ opt_batch ≤ max_batch, got {shapes}")
        return shapes

    def dims(self, batch: int) -> tuple[int, ...]:
        return (batch, *self.obs_shape)

    def trtexec_args(self) -> list[str]:
        return [
            f"--{which}Shapes={INPUT}:{'x'.join(map(str, self.dims(batch)))}"
            for which, batch in (("min", self.min_batch), ("opt", self.opt_batch), ("max", self.max_batch))
        ]


def precision_flags(precision: str, major: int) -> tuple[str, ...]:
    """trtexec precision flags for a TensorRT major version."""
    if precision not in TRT10_FLAGS:
        raise ValueError(
            f"TensorRT cannot build a {precision} engine (precisions: {', '.join(TRT10_FLAGS)}); "
            f"onnxruntime's dynamic quantization does not parse in TensorRT — use int8-static"
        )
    if major >= 11:
        return TRT11_TRTEXEC_FLAGS
    return tuple(f"--{flag.lower()}" for flag in TRT10_FLAGS[precision])


def trtexec_command(
    onnx: str, engine: str, shapes: Shapes, precision: str, major: int, workspace_mb: int
) -> str:
    """The exact command that builds one engine (paths relative to the target folder)."""
    args = [
        "trtexec",
        f"--onnx={onnx}",
        f"--saveEngine={engine}",
        *shapes.trtexec_args(),
        f"--memPoolSize=workspace:{workspace_mb}M",
        *precision_flags(precision, major),
    ]
    return shlex.join(args)


def cuda_devices() -> tuple[int, str]:
    """Number of CUDA devices, asked of the driver directly (torch here may be a CPU build)."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    else:
        return 0, "no CUDA driver (libcuda) on this machine"
    rc = lib.cuInit(0)
    if rc != 0:
        return 0, f"the CUDA driver is installed but cuInit failed (CUresult {rc})"
    count = ctypes.c_int(0)
    rc = lib.cuDeviceGetCount(ctypes.byref(count))
    if rc != 0 or count.value == 0:
        return 0, "the CUDA driver reports no device"
    return count.value, ""


def tensorrt_here() -> tuple[Any | None, str]:
    """(the tensorrt module, "") when engines can be built here, else (None, why not)."""
    try:
        import tensorrt
    except ImportError:
        return None, "tensorrt is not installed here"
    # `import tensorrt` can succeed without a GPU; trt.Builder would then fail on CUDA init (PITFALLS).
    count, why = cuda_devices()
    if count == 0:
        return None, why
    return tensorrt, ""


def _major(trt: Any) -> int:
    return int(str(trt.__version__).split(".")[0])


def build_engine(
    trt: Any, onnx: Path, engine: Path, precision: str, shapes: Shapes, workspace_mb: int
) -> dict[str, Any]:
    """Build and serialise one engine with the Python builder (TensorRT 10.x flags or 11.x strong typing)."""
    major = _major(trt)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if major >= 11:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    profile = builder.create_optimization_profile()
    profile.set_shape(
        INPUT, shapes.dims(shapes.min_batch), shapes.dims(shapes.opt_batch), shapes.dims(shapes.max_batch)
    )
    config.add_optimization_profile(profile)
    if major < 11:
        for flag in TRT10_FLAGS[precision]:
            config.set_flag(getattr(trt.BuilderFlag, flag))
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT {trt.__version__} failed to build an engine from {onnx.name}")
    engine.write_bytes(bytes(serialized))
    return {"tensorrt": str(trt.__version__), "strongly_typed": major >= 11}


def build(job: FormatJob) -> FormatResult:
    shapes = Shapes.from_options(job.options, job.input_shape or job.obs_dim)
    workspace_mb = int(job.settings.get("workspace_mb", DEFAULT_WORKSPACE_MB))
    engine = job.folder / ENGINE_NAME
    onnx_rel, engine_rel = job.rel(job.onnx), job.rel(engine)
    commands = {
        f"tensorrt-{major}": trtexec_command(
            onnx_rel, engine_rel, shapes, job.precision.name, major, workspace_mb
        )
        for major in (10, 11)
    }
    extra: dict[str, Any] = {
        "onnx": onnx_rel,
        "onnx_sha256": file_sha256(job.onnx),
        "shapes": {"min": shapes.min_batch, "opt": shapes.opt_batch, "max": shapes.max_batch},
        "build_commands": commands,
    }
    trt, why_not = tensorrt_here()
    if trt is None:
        reason = f"engines are built on the device: run {SCRIPT_NAME} there ({why_not})"
        return FormatResult(path=engine_rel, status="pending-on-device", reason=reason, extra=extra)
    extra.update(build_engine(trt, job.onnx, engine, job.precision.name, shapes, workspace_mb))
    return FormatResult(path=engine_rel, extra=extra)


def errors() -> tuple[type[BaseException], ...]:
    return (RuntimeError, ValueError, OSError)


_SCRIPT_HEAD = """\
#!/bin/sh
# Builds this export's TensorRT engines on the device that runs them: an engine is tied to its GPU and
# TensorRT version, so it cannot be built elsewhere. Written by `python -m export --target {target}`.
#   sh {script}            (from anywhere; TRT_MAJOR=10|11 overrides the detected version)
set -eu
cd "$(dirname "$0")"

if ! command -v trtexec >/dev/null 2>&1; then
    for dir in /usr/src/tensorrt/bin /usr/local/tensorrt/bin /opt/tensorrt/bin; do
        if [ -x "$dir/trtexec" ]; then PATH="$dir:$PATH"; export PATH; break; fi
    done
fi
if ! command -v trtexec >/dev/null 2>&1; then
    echo "{script}: trtexec not found; install TensorRT (JetPack ships it in /usr/src/tensorrt/bin)" >&2
    exit 1
fi

detect_version() {{
    v=$(trtexec --help 2>&1 | sed -n 's/.*TensorRT v\\([0-9][0-9]*\\).*/\\1/p' | head -n 1)
    if [ -n "$v" ]; then echo "$((v / 10000)).$((v / 100 % 100)).$((v % 100))"; return 0; fi
    v=$(python3 -c 'import tensorrt; print(tensorrt.__version__)' 2>/dev/null || true)
    if [ -n "$v" ]; then echo "$v"; return 0; fi
    v=$(dpkg-query -W -f='${{Version}}' libnvinfer-bin 2>/dev/null || true)
    if [ -n "$v" ]; then echo "${{v%%-*}}"; return 0; fi
    echo ""
}}
TRT_VERSION=${{TRT_VERSION:-$(detect_version)}}
TRT_MAJOR=${{TRT_MAJOR:-${{TRT_VERSION%%.*}}}}
case "$TRT_MAJOR" in
    ''|*[!0-9]*) echo "{script}: cannot tell the TensorRT version; set TRT_MAJOR=10 or 11" >&2; exit 1 ;;
esac
echo "TensorRT ${{TRT_VERSION:-$TRT_MAJOR.x}}: building {count} engine(s)"

# Each engine built is logged in {log} (engine, TensorRT version, the command): `./run.sh
# --register-engines` enters them into the manifest from it.
: > {log}
build() {{
    engine=$1
    shift
    "$@"
    printf '%s\\t%s\\t%s\\n' "$engine" "${{TRT_VERSION:-$TRT_MAJOR}}" "$*" >> {log}
}}

checksum() {{
    if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1"; else shasum -a 256 "$1"; fi
}}

if [ "$TRT_MAJOR" -ge 11 ]; then
    # strongly typed: the precision comes from the ONNX (fp16 weights, Q/DQ nodes)
{trt11}
else
    # TensorRT <= 10.x: weak typing, precision enabled by flags
{trt10}
fi

for engine in {engines}; do
    checksum "$engine"
done
echo "next: ./run.sh --register-engines (from the bundle's folder) enters them into the manifest"
"""
BUILD_LOG = "engines.built"
"""Written by ``build_engines.sh`` beside the manifest: ``<engine path>\t<TensorRT version>\t<command>`` per
engine it built (read by ``deploy.engines``)."""


def _indent(commands: list[tuple[str, str]]) -> str:
    return "\n".join(f"    build {shlex.quote(engine)} {command}" for engine, command in commands)


def render_script(target: str, pending: list[ArtifactEntry]) -> str:
    """``build_engines.sh`` for the pending engines: the very commands recorded in their manifest entries."""
    return _SCRIPT_HEAD.format(
        target=target,
        script=SCRIPT_NAME,
        count=len(pending),
        log=BUILD_LOG,
        trt11=_indent([(e.path, e.extra["build_commands"]["tensorrt-11"]) for e in pending]),
        trt10=_indent([(e.path, e.extra["build_commands"]["tensorrt-10"]) for e in pending]),
        engines=" ".join(shlex.quote(e.path) for e in pending),
    )


def finish(root: Path, target: str, entries: list[ArtifactEntry]) -> list[str]:
    """Write ``build_engines.sh`` when engines are pending; return the files written (relative)."""
    pending = [e for e in entries if e.format == "tensorrt" and e.status == "pending-on-device"]
    if not pending:
        return []
    script = root / SCRIPT_NAME
    script.write_text(render_script(target, pending))
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return [SCRIPT_NAME]
