# syntax=docker/dockerfile:1
# NeuroQuant edge images, one per target:  make docker TARGET=x86|arm64|jetson
#   = docker build --platform linux/amd64|linux/arm64 --build-arg TARGET=<target> -t neuroquant-edge:<target> .
# Stages:
#   build           python slim with the train/export extras (torch CPU wheels): exports artifacts/<target>
#                   from the checkpoints in runs/ and the dataset in data/ (make train distill first) and
#                   packs the device bundle with `python -m deploy.bundle`; runs on the build machine's
#                   platform (the artifacts are platform-independent files).
#   runtime-<target>  the base of the edge image: python slim (x86, arm64); NVIDIA L4T JetPack (jetson:
#                   CUDA, cuDNN, TensorRT and its Python bindings come from it).
#   edge (default)  runtime-<TARGET> + the unpacked bundle, installed by the bundle's install_edge.sh, the
#                   same script a device runs: a venv with the `edge` extra and the target's runtimes only.
# Run:  docker run --rm -v "$PWD/results:/opt/neuroquant/results" neuroquant-edge:x86 --variant float --fps 10
#       (jetson: add --runtime nvidia; build with BuildKit on the Jetson, or elsewhere with QEMU for arm64)
ARG TARGET=x86

FROM --platform=$BUILDPLATFORM python:3.11.13-slim-bookworm AS build
ARG TARGET
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY . .
# torch from its CPU index: the default one pulls a multi-GB CUDA build that export does not use.
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu -c constraints.txt ".[train,export]" \
    && python -m export --target "$TARGET" --quiet \
    && python -m deploy.bundle --target "$TARGET" --out /dist \
    && mkdir /bundle \
    && tar -xzf "/dist/neuroquant-$TARGET.tar.gz" -C /bundle --strip-components=1

FROM python:3.11.13-slim-bookworm AS runtime-x86

FROM python:3.11.13-slim-bookworm AS runtime-arm64

# JetPack 6.1 (L4T r36.4.0): Ubuntu 22.04, Python 3.10, CUDA 12.6, TensorRT 10.3 with its Python bindings.
# Only python3-venv is added; TensorRT is never pip-installed (requirements-edge.txt lists cuda-python only).
FROM nvcr.io/nvidia/l4t-jetpack:r36.4.0 AS runtime-jetson
# The Ubuntu release is fixed by the L4T tag; its python3-venv follows that release's updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv \
    && rm -rf /var/lib/apt/lists/*

# The stage picked by TARGET (hadolint cannot resolve the build argument; each runtime stage is tagged above).
# hadolint ignore=DL3006
FROM runtime-${TARGET} AS edge
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /opt/neuroquant
COPY --from=build /bundle/ ./
RUN ./install_edge.sh \
    && useradd --system --uid 10001 --no-create-home --groups video neuroquant \
    && mkdir -p results \
    && chown neuroquant results
# video: the group of Jetson's GPU device nodes
USER 10001
ENTRYPOINT ["./run.sh"]
CMD ["--fps", "10"]
