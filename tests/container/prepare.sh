#!/usr/bin/env bash
# What the image build needs and no registry gives on this machine, made once and cached:
#   1. a Debian base image with python3 and libjemalloc2 (debootstrap --variant=minbase), imported
#      into podman (so that the build's jemalloc step needs no apt index);
#   2. a wheelhouse of torch and gradci's dependencies (`pip download`) for a build without an index.
# Idempotent and quick once cached. Prints two lines for the tests: BASE_IMAGE=... and WHEELHOUSE=...
#
#   GRADCI_CI_CACHE    where the debootstrap tarball and the wheelhouse live (default /var/cache/gradci-ci)
#   GRADCI_BASE_IMAGE  the name the base image gets in podman (default localhost/gradci-base:bookworm-jemalloc)
#   DEBIAN_MIRROR      debootstrap's mirror (default http://deb.debian.org/debian)
#   PYTHON             the interpreter whose pip downloads the wheels (default: python3); it must match
#                      the base image's Python (3.11 on bookworm)
#   TORCH_VERSION      the torch of the wheelhouse (default 2.13.0, the CPU build on this machine's disk;
#                      2.14.1 is a CUDA build, with its nvidia wheels: the image's cuda variant)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cache=${GRADCI_CI_CACHE:-/var/cache/gradci-ci}
base=${GRADCI_BASE_IMAGE:-localhost/gradci-base:bookworm-jemalloc}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
python=${PYTHON:-python3}
torch_version=${TORCH_VERSION:-2.13.0}
mkdir -p "$cache"

log() { echo "prepare: $*" >&2; }

# 1. The base image.
tarball=$cache/bookworm-minbase-jemalloc.tar
if ! podman image exists "$base"; then
  if [ ! -s "$tarball" ]; then
    [ "$(id -u)" = 0 ] || { log "debootstrap needs root"; exit 77; }
    rootfs=$(mktemp -d "$cache/rootfs.XXXXXX")
    trap 'rm -rf "$rootfs"' EXIT
    log "debootstrap bookworm (minbase + python3, libjemalloc2) from $mirror"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,libjemalloc2 \
      bookworm "$rootfs" "$mirror" >&2
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
      "$rootfs"/usr/share/doc "$rootfs"/usr/share/man "$rootfs"/usr/share/locale
    tar -C "$rootfs" -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
    rm -rf "$rootfs"
    trap - EXIT
  fi
  log "importing $tarball as $base"
  podman import --change 'CMD ["/bin/bash"]' "$tarball" "$base" >&2
fi

# 2. The wheelhouse: torch and every runtime dependency in pyproject.toml, plus the build backend.
# `pip download` skips what is already there, so a changed dependency list costs only the new wheels.
# One per torch version (the default's keeps its old name), so that a build's context holds only its own.
wheelhouse=$cache/wheelhouse${TORCH_VERSION:+-torch$TORCH_VERSION}
mkdir -p "$wheelhouse"
mapfile -t deps < <("$python" - "$repo/pyproject.toml" <<'PY'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))
print(*[d for d in project["project"]["dependencies"] if not d.startswith("torch")], sep="\n")
print(*project["build-system"]["requires"], sep="\n")
PY
)
log "wheelhouse: torch==$torch_version ${deps[*]}"
# (The grep drops this machine's pip.conf noise about local index folders that lack a package.)
"$python" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
  --dest "$wheelhouse" "torch==$torch_version" "${deps[@]}" 2>&1 \
  | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2

echo "BASE_IMAGE=$base"
echo "WHEELHOUSE=$wheelhouse"
