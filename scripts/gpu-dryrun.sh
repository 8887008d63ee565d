#!/usr/bin/env bash
# Runs every scripts/gpu-*.sh here, without a GPU, with the tools they call replaced by stubs
# that log their arguments and succeed (nvidia-smi, cmake, ctest, python3, dpkg, the built
# binaries), so that a bash mistake (an unbound variable, a function a part cannot see, a
# here-document that does not survive the trip into a part's shell, arithmetic on a string)
# shows here rather than in the GPU machine's scarce minutes. It checks the scripts' control
# flow only: what the stubs print is not a result. Exits 1 naming the script and the line.
# Usage: scripts/gpu-dryrun.sh   (a CTest test: GpuScripts.RunToTheEndWithStubbedTools)
set -uo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A copy of what the scripts read, with an empty .deps/ of the files gpu-prepare.sh fetches.
mkdir -p "$work/repo/.deps" "$work/bin"
cp -r "$src/scripts" "$src/benchmarks" "$work/repo/"
touch "$work/repo/.deps/libstub.deb" "$work/repo/.deps/cifar10_from_jpeg.py"
tar -czf "$work/repo/.deps/airbench-0.1.8.tar.gz" -C "$work/repo/.deps" libstub.deb

stub() {  # stub NAME [BODY]: a command that logs its call, runs BODY and succeeds
  printf '#!/usr/bin/env bash\necho "[stub] %s $*" >> "%s/calls.log"\n%s\nexit 0\n' \
    "$1" "$work" "${2:-}" > "$work/bin/$1"
  chmod +x "$work/bin/$1"
}
stub nvidia-smi 'if [[ "$*" == -L ]]; then echo "GPU 0: stub"; else echo "stub GPU, 1 MiB, 0"; fi'
stub python3 'cat > /dev/null 2>&1 < /dev/null'
stub dpkg
stub readelf
# cmake --build makes the binaries the scripts run: a stub that leaves a run directory's files
# (identical for every run, so the scripts' comparisons pass) wherever --out-dir points.
stub fake-binary 'while (($#)); do
  if [[ $1 == --out-dir ]]; then mkdir -p "$2" && echo "epoch,seconds" > "$2/history.csv" &&
    touch "$2/model.pt" "$2/summary.json" "$2/trace.json"; fi
  shift
done'
stub cmake 'if [[ "${1:-}" == --build ]]; then
  mkdir -p "$2/tests" && cp "$(dirname "$0")/fake-binary" "$2/mgpu" &&
    cp "$(dirname "$0")/fake-binary" "$2/tests/mgpu_tests"
fi'
stub ctest

status=0
for script in gpu-check.sh gpu-speed.sh gpu-overlap.sh gpu-airbench.sh "gpu-fidelity.sh 600 s1"; do
  name=${script%% *}
  log="$work/${name%.sh}.log"
  # shellcheck disable=SC2086
  (cd "$work/repo" && PATH="$work/bin:$PATH" OUT="$work/out-${name%.sh}" \
     timeout 120 bash scripts/$script > "$log" 2>&1)
  bash_errors="unbound variable|command not found|syntax error|error importing function"
  bash_errors+="|bad substitution|integer expression expected|invalid arithmetic"
  if grep -nE "$bash_errors" "$log"; then
    echo "$name: a bash error (above), in $log:"
    tail -n 20 "$log"
    status=1
  elif ! grep -q "^== \[[0-9]* s\] done" "$log"; then
    echo "$name: did not reach its end:"
    tail -n 20 "$log"
    status=1
  else
    echo "$name: ran to its end ($(grep -c '^== ' "$log") steps)"
  fi
done
exit $status
