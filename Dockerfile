# syntax=docker/dockerfile:1
#
# llmserve image. Two variants from one file, chosen with a build argument:
#
#   docker build -t llmserve:0.1.0 .                                  # portable CPU (x86-64)
#   docker build --build-arg VARIANT=cuda -t llmserve:0.1.0-cuda .    # NVIDIA GPUs (CUDA 12)
#
# The CPU image runs on any x86-64 machine: llama.cpp is built without -march=native and with
# every CPU kernel variant (SSE4.2 ... AVX-512) as a loadable backend; at start ggml loads the
# best one the machine supports. The builder stage compiles llama-cpp-python; the runtime stage
# receives only the virtualenv. Needs BuildKit (the default builder since Docker 23), which
# builds only the stages of the chosen variant.

ARG VARIANT=cpu
ARG PYTHON_VERSION=3.12
ARG DEBIAN_RELEASE=bookworm
ARG CUDA_VERSION=12.6.3
ARG UBUNTU_RELEASE=24.04
# The variant's stages, by name (a stage name is not an image: it takes no tag).
ARG BUILD_STAGE=build-${VARIANT}
ARG RUNTIME_STAGE=runtime-${VARIANT}

# ---- the stages that differ between variants: a toolchain and a Python, and what runs them

# The full python image carries gcc, g++ and make; cmake and ninja come from PyPI through
# llama-cpp-python's build backend (scikit-build-core).
FROM python:${PYTHON_VERSION}-${DEBIAN_RELEASE} AS build-cpu
ENV GGML_VARIANT_ARGS=""

FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu${UBUNTU_RELEASE} AS build-cuda
# Distribution packages are not version-pinned: the archive keeps only the current build of
# each, so a pin breaks the build at the next security update. The base image tag pins them.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential python3 python3-dev python3-venv \
    && rm -rf /var/lib/apt/lists/*
ENV GGML_VARIANT_ARGS="-DGGML_CUDA=on"

FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS runtime-cpu
# libgomp1: llama.cpp's CPU kernels use OpenMP threads. Not pinned: see build-cuda.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu${UBUNTU_RELEASE} AS runtime-cuda
# The same Python as build-cuda's (the virtualenv links to /usr/bin/python3). Not pinned: see
# build-cuda.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 python3 \
    && rm -rf /var/lib/apt/lists/*
# Every layer offloaded; the GPU comes from the container runtime (docker run --gpus all).
ENV LLM_ENGINE_DEVICE=gpu

# ---- builder: llama-cpp-python, then llmserve, into /opt/venv

FROM ${BUILD_STAGE} AS builder
# Keep equal to the llama-cpp-python pin in pyproject.toml (tests/deploy checks it).
ARG LLAMA_CPP_PYTHON_VERSION=0.3.36
# The extras `make serve` installs: the demo model (Gemma 3 270M) is served when no model is
# configured. `--build-arg LLMSERVE_EXTRAS=` builds an image without it (about 250 MB less).
ARG LLMSERVE_EXTRAS=demo
# CUDA only: e.g. "89-real;90-real" builds for those GPUs alone, much faster than the default
# set (every architecture from Maxwell to Hopper).
ARG CUDA_ARCHITECTURES=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH

# llama.cpp first and alone: the slow layer (many minutes) stays cached while llmserve changes.
# GGML_BACKEND_DIR is where ggml looks for its loadable backends when llama.cpp initialises;
# the CPU variants (and the CUDA backend) are installed there, inside the virtualenv.
RUN python3 -m venv /opt/venv \
    && CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON \
           -DGGML_BACKEND_DIR=/opt/venv/lib/ggml ${GGML_VARIANT_ARGS} \
           ${CUDA_ARCHITECTURES:+-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES}}" \
       pip install --no-cache-dir "llama-cpp-python==${LLAMA_CPP_PYTHON_VERSION}"

WORKDIR /src
COPY pyproject.toml README.md ./
COPY llmserve ./llmserve
# "/src[demo]", or plain "/src" when LLMSERVE_EXTRAS is empty (pip refuses "/src[]").
RUN pip install --no-cache-dir "/src${LLMSERVE_EXTRAS:+[${LLMSERVE_EXTRAS}]}"

# ---- runtime: the virtualenv and a non-root user, nothing else

FROM ${RUNTIME_STAGE} AS runtime
RUN groupadd --system --gid 10001 llmserve \
    && useradd --system --uid 10001 --gid llmserve --home-dir /home/llmserve --create-home \
        --shell /usr/sbin/nologin llmserve \
    && mkdir /models \
    && chown llmserve:llmserve /models
COPY --from=builder /opt/venv /opt/venv

# LLM_ENGINE_HOST: the server's default (127.0.0.1) is unreachable from outside a container.
# Every other LLM_ENGINE_* variable is read by llmserve itself: pass them with `docker run -e`.
# LLM_ENGINE_MODELS_DIR: the model store of `llmserve pull`, on the /models volume.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/llmserve \
    LLM_ENGINE_HOST=0.0.0.0 \
    LLM_ENGINE_MODELS_DIR=/models

WORKDIR /home/llmserve
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
VOLUME ["/models"]
EXPOSE 8080

# /livez answers as soon as the server listens, while the model still loads (/readyz waits
# for the model). Python instead of curl: the slim image has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/livez' % os.environ.get('LLM_ENGINE_PORT', '8080'), timeout=4)"]

ENTRYPOINT ["llmserve"]
CMD ["serve"]
