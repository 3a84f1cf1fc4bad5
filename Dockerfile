# syntax=docker/dockerfile:1.7
#
# iMOS Serve images, three targets from one file (docs/operations.md, "Images"):
#
#   docker build -t imos-serve:gpu .                       # default: CUDA 13.0 base, torch CUDA build, TensorRT
#   docker build -t imos-serve:cpu --target cpu .          # ONNX Runtime + CPU torch
#   docker build -t imos-serve:gateway --target gateway .  # `imos gateway` only: no torch, no ONNX Runtime
#
# Every version is pinned: base images by tag below, torch and TensorRT by the ARGs, everything else by
# deploy/docker/constraints.txt (regenerate with deploy/docker/pin_runtime_deps.py) and, for the CUDA
# libraries that torch pulls in, deploy/docker/constraints-gpu.txt. No model weights are baked in except
# the bundled model's (model_repo/imos-lite; .dockerignore keeps every other weights file and every
# build/ folder out). TensorRT engines are built on a worker's first start into a volume (entrypoint.sh).

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm
# torch 2.13.0's Linux wheels on PyPI are built against CUDA 13.0 (cuda-toolkit==13.0.3): keep this base at
# the same CUDA major.minor. The wheels bring their own CUDA libraries; the base brings the container
# toolkit's environment (NVIDIA_VISIBLE_DEVICES, NVIDIA_DRIVER_CAPABILITIES). Needs an NVIDIA driver >= 580.
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-base-ubuntu24.04
ARG TORCH_VERSION=2.13.0
# TensorRT 10.x (the service needs >= 10 and builds FP16 engines); its CUDA 13 wheels come from NVIDIA's index.
ARG TENSORRT_VERSION=10.16.1.11

# ---- wheel: the imos-serve wheel, with the gRPC stubs generated from proto/ --------------------------
FROM ${PYTHON_IMAGE} AS wheel
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY deploy/docker/constraints.txt /tmp/constraints.txt
RUN pip install -c /tmp/constraints.txt setuptools grpcio-tools
COPY pyproject.toml README.md ./
COPY proto/ proto/
COPY service/ service/
RUN python -m service.gateway.protos \
    && pip wheel --no-deps --no-build-isolation -w /wheels .

# ---- cpu-build: virtual environment with CPU torch and the service's dependencies ---------------------
FROM ${PYTHON_IMAGE} AS cpu-build
ARG TORCH_VERSION
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
COPY deploy/docker/constraints.txt /tmp/constraints.txt
# PyPI's Linux torch wheels are CUDA builds; the CPU build comes from PyTorch's own index.
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}+cpu"
COPY pyproject.toml /tmp/pyproject.toml
RUN python -c "import tomllib; print(*tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
        > /tmp/requirements.txt \
    && pip install -c /tmp/constraints.txt -r /tmp/requirements.txt

# ---- cpu: the CPU image ------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS cpu
LABEL org.opencontainers.image.title="iMOS Serve (CPU)" \
      org.opencontainers.image.description="Propagate one mask through a medical video or volume; ONNX Runtime on CPU" \
      org.opencontainers.image.licenses="see the repository"
RUN groupadd --system --gid 10001 imos \
    && useradd --system --uid 10001 --gid imos --create-home --home-dir /home/imos --shell /usr/sbin/nologin imos \
    && mkdir -p /var/cache/imos/engines /var/lib/imos/gpu-claims \
    && chown -R imos:imos /var/cache/imos /var/lib/imos
COPY --from=cpu-build /opt/venv /opt/venv
# the service itself in a small layer of its own, above the dependencies' (which change rarely)
RUN --mount=type=bind,from=wheel,source=/wheels,target=/tmp/wheels \
    /opt/venv/bin/pip install --no-cache-dir --no-deps /tmp/wheels/imos_serve-*.whl
COPY --chown=10001:10001 model_repo/ /opt/imos/model_repo/
COPY --chmod=0755 deploy/docker/entrypoint.sh deploy/docker/healthcheck.py deploy/docker/smoke.py \
     deploy/docker/session_memory.py /opt/imos/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/imos \
    IMOS_HTTP_HOST=0.0.0.0 \
    IMOS_MODEL_REPO=/opt/imos/model_repo \
    IMOS_BACKEND=onnx \
    IMOS_DEVICE=cpu \
    ENGINE_CACHE_DIR=/var/cache/imos/engines
USER 10001:10001
WORKDIR /home/imos
EXPOSE 8000 50051
# /healthz on this container's REST port (roles serve and gateway; see docs/operations.md for workers)
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 CMD ["python", "/opt/imos/healthcheck.py"]
ENTRYPOINT ["/opt/imos/entrypoint.sh"]
CMD ["serve"]

# ---- gateway-build: the dependencies without torch and ONNX Runtime (the gateway owns no model) --------
FROM ${PYTHON_IMAGE} AS gateway-build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
COPY deploy/docker/constraints.txt /tmp/constraints.txt
COPY pyproject.toml /tmp/pyproject.toml
COPY deploy/docker/requirements.py /tmp/requirements.py
RUN python /tmp/requirements.py /tmp/pyproject.toml --without torch onnx onnxruntime > /tmp/requirements.txt \
    && pip install -c /tmp/constraints.txt -r /tmp/requirements.txt

# ---- gateway: REST + gRPC only, no torch (a few hundred MB instead of GBs); `imos gateway` --------------
FROM ${PYTHON_IMAGE} AS gateway
LABEL org.opencontainers.image.title="iMOS Serve (gateway)" \
      org.opencontainers.image.description="The iMOS Serve gateway: REST and gRPC in front of the workers; no model" \
      org.opencontainers.image.licenses="see the repository"
RUN groupadd --system --gid 10001 imos \
    && useradd --system --uid 10001 --gid imos --create-home --home-dir /home/imos --shell /usr/sbin/nologin imos
COPY --from=gateway-build /opt/venv /opt/venv
RUN --mount=type=bind,from=wheel,source=/wheels,target=/tmp/wheels \
    /opt/venv/bin/pip install --no-cache-dir --no-deps /tmp/wheels/imos_serve-*.whl
# the gateway reads model.yaml (limits, /v1/models) and never loads the weights
COPY --chown=10001:10001 model_repo/ /opt/imos/model_repo/
COPY --chmod=0755 deploy/docker/entrypoint.sh deploy/docker/healthcheck.py deploy/docker/smoke.py /opt/imos/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/imos \
    IMOS_HTTP_HOST=0.0.0.0 \
    IMOS_MODEL_REPO=/opt/imos/model_repo
USER 10001:10001
WORKDIR /home/imos
EXPOSE 8000 50051
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["python", "/opt/imos/healthcheck.py"]
ENTRYPOINT ["/opt/imos/entrypoint.sh"]
CMD ["gateway"]

# ---- gpu-build: virtual environment with torch (CUDA 13.0 build), TensorRT and the dependencies -------
FROM ${CUDA_IMAGE} AS gpu-build
ARG TORCH_VERSION
ARG TENSORRT_VERSION
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 PATH=/opt/venv/bin:$PATH
# Ubuntu 24.04's Python 3.12 (the project needs >= 3.11); apt versions are pinned by the base image tag.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.12 python3.12-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3.12 -m venv /opt/venv
COPY deploy/docker/constraints.txt deploy/docker/constraints-gpu.txt /tmp/
RUN pip install -c /tmp/constraints.txt -c /tmp/constraints-gpu.txt "torch==${TORCH_VERSION}"
# Separate layers on purpose: torch (several GB) stays cached while TensorRT or the service change.
# hadolint ignore=DL3059
RUN pip install --extra-index-url https://pypi.nvidia.com -c /tmp/constraints.txt -c /tmp/constraints-gpu.txt \
        "tensorrt-cu13==${TENSORRT_VERSION}"
COPY pyproject.toml /tmp/pyproject.toml
RUN python -c "import tomllib; print(*tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
        > /tmp/requirements.txt \
    && pip install -c /tmp/constraints.txt -c /tmp/constraints-gpu.txt -r /tmp/requirements.txt

# ---- gpu: the GPU image (default target) -------------------------------------------------------------
FROM ${CUDA_IMAGE} AS gpu
LABEL org.opencontainers.image.title="iMOS Serve (GPU)" \
      org.opencontainers.image.description="Propagate one mask through a medical video or volume; torch CUDA and TensorRT" \
      org.opencontainers.image.licenses="see the repository"
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.12 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 imos \
    && useradd --system --uid 10001 --gid imos --create-home --home-dir /home/imos --shell /usr/sbin/nologin imos \
    && mkdir -p /var/cache/imos/engines /var/lib/imos/gpu-claims \
    && chown -R imos:imos /var/cache/imos /var/lib/imos
COPY --from=gpu-build /opt/venv /opt/venv
# the service itself in a small layer of its own, above the dependencies' (which change rarely)
RUN --mount=type=bind,from=wheel,source=/wheels,target=/tmp/wheels \
    /opt/venv/bin/pip install --no-cache-dir --no-deps /tmp/wheels/imos_serve-*.whl
COPY --chown=10001:10001 model_repo/ /opt/imos/model_repo/
COPY --chmod=0755 deploy/docker/entrypoint.sh deploy/docker/healthcheck.py deploy/docker/smoke.py \
     deploy/docker/session_memory.py /opt/imos/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/imos \
    CUDA_DEVICE_ORDER=PCI_BUS_ID \
    IMOS_HTTP_HOST=0.0.0.0 \
    IMOS_MODEL_REPO=/opt/imos/model_repo \
    IMOS_BACKEND=tensorrt \
    IMOS_DEVICE=cuda \
    ENGINE_CACHE_DIR=/var/cache/imos/engines
USER 10001:10001
WORKDIR /home/imos
EXPOSE 8000 50051
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 CMD ["python", "/opt/imos/healthcheck.py"]
ENTRYPOINT ["/opt/imos/entrypoint.sh"]
CMD ["serve"]
