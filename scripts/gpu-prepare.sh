#!/usr/bin/env bash
# Run here, before a session's GPU check: gathers what the GPU machine lacks into .deps/
# (ignored by git, carried by the device tool): Debian's header-only or small libraries as
# .deb files, and the CIFAR-10 stand-in with its converter.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.deps/' .git/info/exclude 2>/dev/null || echo '/.deps/' >> .git/info/exclude
mkdir -p .deps
(cd .deps && apt-get download libcxxopts-dev nlohmann-json3-dev libgtest-dev googletest zlib1g-dev libgloo-dev libstb-dev)
cp ../shared/data/cifar10-jpeg.tar.gz ../shared/data/cifar10_from_jpeg.py .deps/
du -sh .deps
