#!/usr/bin/env bash
# Run here, before a session's GPU check: gathers what the GPU machine lacks into .deps/
# (ignored by git, carried by the device tool): Debian's header-only or small libraries as
# .deb files, the CIFAR-10 stand-in with its converter, and airbench's PyPI package.
set -euo pipefail
cd "$(dirname "$0")/.." || exit 1
grep -qx '/.deps/' .git/info/exclude 2>/dev/null || echo '/.deps/' >> .git/info/exclude
mkdir -p .deps
(cd .deps && apt-get download libcxxopts-dev nlohmann-json3-dev libgtest-dev googletest zlib1g-dev libgloo-dev libstb-dev)
cp ../shared/data/cifar10-jpeg.tar.gz ../shared/data/cifar10_from_jpeg.py .deps/
# airbench's own package (issue 26's comparison; its source distribution, unpacked there)
[ -f .deps/airbench-0.1.8.tar.gz ] ||
  "${MGPU_VENV:-$HOME/.cache/mgpu/venv}/bin/pip" download --quiet --no-deps --no-binary :all: \
    -d .deps airbench==0.1.8
du -sh .deps
