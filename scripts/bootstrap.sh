#!/usr/bin/env bash
# Installs what mgpu needs on Debian 12 (apt packages; PyPI torch 2.11.0 in a virtual
# environment under ~/.cache/mgpu, reused when already there) and builds into build/.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.11.0
VENV="${MGPU_VENV:-$HOME/.cache/mgpu/venv}"
APT_PACKAGES=(build-essential cmake ninja-build ccache python3 python3-venv zlib1g-dev libcxxopts-dev
  nlohmann-json3-dev libgtest-dev libgloo-dev libcurl4-openssl-dev libarchive-dev libssl-dev
  libstb-dev libgnuplot-iostream-dev libboost-iostreams-dev
  libboost-filesystem-dev libboost-system-dev gnuplot-nox dataset-fashion-mnist)

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing Debian packages: ${missing[*]}"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

have_torch() {
  [ -x "$VENV/bin/python" ] &&
    [ "$("$VENV/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null)" = "$TORCH_VERSION" ]
}
if have_torch; then
  echo "== torch $TORCH_VERSION already in $VENV"
else
  echo "== installing torch $TORCH_VERSION from PyPI into $VENV (several GB, once)"
  # The venv needs a python with the venv module; pyenv's or Debian's python3 both work.
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --progress-bar off "torch==$TORCH_VERSION" numpy pillow
  have_torch || { echo "torch $TORCH_VERSION did not install into $VENV" >&2; exit 1; }
fi

# TensorBoard: to view the runs' logs, and for the tests that read them with its own reader.
if ! "$VENV/bin/python" -c 'import tensorboard' 2>/dev/null; then
  echo "== installing tensorboard from PyPI into $VENV"
  "$VENV/bin/pip" install --quiet --progress-bar off "tensorboard==2.21.0"
fi

BUILD_DIR="${MGPU_BUILD_DIR:-build}"
mkdir -p "$BUILD_DIR"
echo "== configuring $BUILD_DIR (log: $BUILD_DIR/configure.log)"
# shellcheck disable=SC2086  # MGPU_CMAKE_ARGS holds several words on purpose
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMGPU_PYTHON="$VENV/bin/python" \
  ${MGPU_CMAKE_ARGS:-} > "$BUILD_DIR/configure.log" 2>&1 || { cat "$BUILD_DIR/configure.log"; exit 1; }
echo "== building $BUILD_DIR"
# Two jobs: each LibTorch translation unit takes about 1.5 GB to compile.
cmake --build "$BUILD_DIR" -j "${MGPU_JOBS:-2}"
