# gradci as a container image:
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD:/work" IMAGE run --ops 'add*' --junit /work/out.xml
#
# Build arguments (all optional):
#   VARIANT          cpu (default) or cuda: which torch build goes in
#   PYTHON_VERSION   3.11 (default): picks the python:<version>-slim base
#   TORCH_VERSION    2.13.0 (default)
#   BASE_IMAGE       any Debian-like image with python3 and its venv module (default python:<version>-slim)
#   PIP_INDEX_URL    where gradci's dependencies come from (default PyPI)
#   TORCH_INDEX_URL  where torch comes from (default: PyTorch's CPU index for cpu; PyPI, whose Linux
#                    torch is the CUDA build, for cuda)
#   ALLOCATOR        jemalloc (default): install libjemalloc2 (apt-get) unless the base image has it,
#                    for gradci to preload into its test processes; system: leave it out
#   WHEELHOUSE       a folder of wheels in the build context (made with `pip download`); when set, no index
#                    is used at all. The context passes only ./wheelhouse besides the sources (.dockerignore).
ARG PYTHON_VERSION=3.11
ARG BASE_IMAGE=python:${PYTHON_VERSION}-slim
FROM ${BASE_IMAGE}

ARG VARIANT=cpu
ARG TORCH_VERSION=2.13.0
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG TORCH_INDEX_URL=
ARG WHEELHOUSE=
ARG ALLOCATOR=jemalloc
LABEL org.opencontainers.image.title="gradci" \
      org.opencontainers.image.description="Backward-gradient checks for PyTorch operators, as test_ops_gradients.py runs them" \
      org.opencontainers.image.licenses="BSD-3-Clause" \
      io.github.gradci.variant="${VARIANT}" \
      io.github.gradci.torch="${TORCH_VERSION}"
ENV PATH=/opt/gradci/bin:$PATH \
    HOME=/home/gradci \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# uid 1000 by default, and any other uid works too (--user "$(id -u):$(id -g)"): HOME and /work are
# world-writable with the sticky bit, so a caller's uid needs no entry in /etc/passwd.
RUN useradd --uid 1000 --user-group --no-log-init --home-dir /home/gradci --shell /usr/sbin/nologin gradci \
    && install -d -m 1777 /home/gradci /work

# jemalloc: `gradci run --allocator auto` preloads it into the test processes, which runs the checks
# about 10% faster than glibc's malloc (docs/performance.md). Skipped when the base image has it,
# found as gradci finds it. Unpinned: the base image's distribution release fixes the version.
# hadolint ignore=DL3008
RUN set -eu; \
    case "$ALLOCATOR" in \
        system) ;; \
        jemalloc) \
            if ! python3 -c 'import ctypes.util as u, sys; sys.exit(not u.find_library("jemalloc"))'; then \
                apt-get update; \
                apt-get install -y --no-install-recommends libjemalloc2; \
                rm -rf /var/lib/apt/lists/*; \
            fi ;; \
        *) echo "ALLOCATOR must be jemalloc or system, not '$ALLOCATOR'" >&2; exit 2 ;; \
    esac

# torch first, in a layer of its own: it changes far less often than gradci. The build context is
# mounted, not copied, so a wheelhouse never lands in a layer; pip keeps no cache, and no compiler
# is needed (every dependency is a wheel).
RUN --mount=type=bind,target=/context \
    set -eu; \
    case "$VARIANT" in \
        cpu) torch_index=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu} ;; \
        cuda) torch_index=${TORCH_INDEX_URL:-$PIP_INDEX_URL} ;; \
        *) echo "VARIANT must be cpu or cuda, not '$VARIANT'" >&2; exit 2 ;; \
    esac; \
    if [ -n "$WHEELHOUSE" ]; then export PIP_NO_INDEX=1 PIP_FIND_LINKS="/context/$WHEELHOUSE"; fi; \
    python3 -m venv /opt/gradci; \
    pip install --index-url "$torch_index" "torch==${TORCH_VERSION}"

# The sources are copied (so that a changed file invalidates the layer cache of every engine; a
# mounted context would not) and removed with what pip builds in the same step.
COPY pyproject.toml README.md /tmp/gradci/
COPY gradci /tmp/gradci/gradci
RUN --mount=type=bind,target=/context \
    set -eu; \
    if [ -n "$WHEELHOUSE" ]; then export PIP_NO_INDEX=1 PIP_FIND_LINKS="/context/$WHEELHOUSE"; fi; \
    pip install /tmp/gradci; \
    rm -rf /tmp/gradci; \
    python -c "import torch, gradci; print('torch', torch.__version__, 'gradci', gradci.__version__)"

WORKDIR /work
USER 1000:1000
ENTRYPOINT ["gradci"]
CMD ["--help"]
