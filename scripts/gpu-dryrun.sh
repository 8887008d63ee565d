#!/usr/bin/env bash
# Runs every GPU call of the plan (docs/benchmarks.md, "The GPU calls") here, without a GPU, with
# the tools the scripts call replaced by stubs (nvidia-smi, cmake, ctest, python3, dpkg, the
# built binaries), so that a mistake shows here rather than in the GPU machine's scarce minutes.
# For each call it checks that
#   - the script runs to its end without a bash error (an unbound variable, a function a part
#     cannot see, a here-document lost on its way into a part's shell, arithmetic on a string);
#   - its plan's budgets, x 1.25, fit the call's limit as this file gives it (300 s for the
#     first call, 360 s for the others), whatever limit the script claims;
#   - what comes back fits the device tool: at most 8 files, none over 16 MiB or more than 2
#     folders down, results.tar.gz at most 8 MiB, with the stubs writing files of realistic size
#     (a profiler trace of ~0.9 MB a step, weights and checkpoints of random bytes, logs);
#   - its ctest runs select the right tests: the GPU tests (the launch-queue probe among them)
#     in the first call, everything else in the suite's call, and the dry run itself in none;
# and, once for all of them, that no real results folder (/tmp/gpu-check and the others, where
# a real run writes) was touched: the dry run gives the scripts a folder of its own.
# It checks the scripts' control flow only: what the stubs print is not a result.
# Exits 1 naming the call and the check.
# Usage: scripts/gpu-dryrun.sh   (a CTest test: GpuScripts.RunToTheEndWithStubbedTools;
# MGPU_DRYRUN_KEEP=1 keeps its folder, the scripts' logs and results, to read)
# shellcheck disable=SC2016  # the stubs' bodies, in single quotes, expand when they run
set -uo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
work=$(mktemp -d)
status=0
fail() { echo "FAILED: $*"; status=1; }

# The calls, in the plan's order, each with its limit in seconds.
calls=("300 gpu-check.sh" "360 gpu-bench.sh" "360 gpu-speed.sh" "360 gpu-airbench.sh 1"
       "360 gpu-fidelity.sh s1" "360 gpu-airbench.sh 2" "360 gpu-suite.sh 1" "360 gpu-suite.sh 2"
       "360 gpu-overlap.sh")
# Where a real run writes (gpu-common.sh's GPU_TMP on the GPU machine, and gpu-build.sh's deps,
# gpu-airbench.sh's package): the dry run must leave these alone.
real=(/tmp/gpu-check /tmp/gpu-bench /tmp/gpu-speed /tmp/gpu-airbench /tmp/gpu-fidelity
      /tmp/gpu-suite /tmp/gpu-overlap /tmp/deps /tmp/airbench /tmp/mgpu-out)
mib=$((1024 * 1024))

# A stand-in real results folder at each of those places, with a sentinel file of known
# content, and a fingerprint of each (every name, size and time under it) to compare after.
# One dry run at a time on a machine: two would see each other's stand-ins.
exec 9> /tmp/mgpu-gpu-dryrun.lock
flock 9
sentinel=".real-results-sentinel"
known="a real run's results, $$"
made=()
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  local dir
  for dir in "${real[@]}"; do rm -f "$dir/$sentinel"; done
  for dir in "${made[@]}"; do rm -rf "$dir"; done  # made by this dry run, under its lock
  if [[ -n ${MGPU_DRYRUN_KEEP:-} ]]; then echo "kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
for dir in "${real[@]}"; do
  if [[ ! -e $dir ]]; then mkdir "$dir" && made+=("$dir"); fi
  echo "$known" > "$dir/$sentinel"
done
fingerprint() { find "${real[@]}" -printf '%p %y %s %T@\n' 2> /dev/null | sort; }
fingerprint > "$work/real-before.txt"

# A copy of what the scripts read, with an empty .deps/ of the files gpu-prepare.sh fetches.
mkdir -p "$work/repo/.deps" "$work/bin"
cp -r "$src/scripts" "$src/benchmarks" "$work/repo/"
touch "$work/repo/.deps/libstub.deb" "$work/repo/.deps/cifar10_from_jpeg.py"
tar -czf "$work/repo/.deps/airbench-0.1.8.tar.gz" -C "$work/repo/.deps" libstub.deb

# Every test's name, as CTest lists them: the GoogleTest tests of tests/*.cpp and the add_test()
# tests of tests/CMakeLists.txt, and the launch-queue probe's (which the first call must run).
probe=CudaLaunchQueue.StalledStreamAcceptsLaunchesUntilOneBlocks
{ cat "$src"/tests/*.cpp | tr '\n' ' ' |
    grep -oE "\bTEST(_F|_P)?\( *[A-Za-z0-9_]+, *[A-Za-z0-9_]+" | sed -E 's/^TEST(_F|_P)? *\( *//; s/, */./'
  grep -oE "add_test\(NAME [A-Za-z0-9_.]+" "$src/tests/CMakeLists.txt" | sed 's/add_test(NAME //'
  echo "$probe"; } | sort -u > "$work/tests.txt"

stub() {  # stub NAME [BODY]: a command that logs its call, runs BODY and succeeds
  printf '#!/usr/bin/env bash\necho "[stub] %s $*" >> "%s/calls.log"\n%s\nexit 0\n' \
    "$1" "$work" "${2:-}" > "$work/bin/$1"
  chmod +x "$work/bin/$1"
}
stub nvidia-smi 'if [[ "$*" == -L ]]; then echo "GPU 0: stub"; else echo "stub GPU, 1 MiB, 0"; fi'
# python3: the benchmarks write their CSV or JSON where asked.
stub python3 'cat > /dev/null 2>&1 < /dev/null
while (($#)); do
  [[ $1 == --csv || $1 == --json ]] && echo "level,mode,images_per_second" > "$2"
  shift
done'
stub dpkg
stub readelf
# cmake --build makes the binaries the scripts run: a stub mgpu that leaves a run directory's
# files, the same for every run (so the scripts' comparisons pass), wherever --out-dir points,
# of realistic size: MiniGoogLeNet's weights (1.65 M floats, 6.6 MB) and a checkpoint of twice
# that, in random bytes (they do not compress); a line an epoch in history.csv and the log; and
# with --trace, a profiler trace of every timed step (CPU operators, runtime calls, kernels and
# their flow events: ~3000 JSON events of ~300 bytes a step of MiniGoogLeNet).
cat > "$work/bin/fake-binary" <<'STUB'
#!/usr/bin/env bash
command=${1:-} out="" steps=20 epochs=70 trace=0
echo "mgpu $*"
while (($#)); do
  case $1 in
    --out-dir) out=$2 ;;
    --steps) steps=$2 ;;
    --epochs) epochs=${2%.*} ;;
    --trace) trace=1 ;;
  esac
  shift
done
[[ -n $out ]] || exit 0
mkdir -p "$out"
if [[ $command == train ]]; then
  for ((e = 1; e <= epochs; e++)); do
    echo "Epoch $e/$epochs - 1.2s - loss: 0.5000 - acc: 0.8000 - val_loss: 0.5000 - val_acc: 0.8000"
  done | tee "$out/history.csv"
  echo "total wall time: 84.0s; training throughput 40000.0 images/s"
  echo "{\"model\": \"minigooglenet\", \"epochs\": $epochs}" > "$out/summary.json"
  mkdir -p "$out/checkpoints"
  head -c 6600000 /dev/urandom > "$out/model.pt"
  head -c 13200000 /dev/urandom > "$out/checkpoints/ckpt-e0070-s000000.pt"
  head -c 12288 /dev/urandom > "$out/mean.pt"
fi
[[ $command == bench ]] || exit 0
echo "level          replicas   batch   ms/step  images/s  s/epoch"
echo "level,replicas,ms_per_step" > "$out/bench.csv"
((trace)) || exit 0
awk -v n=$((steps * 3000)) 'BEGIN {
  srand(1); ts = 1733500000000; print "{\"traceEvents\": ["
  for (i = 0; i < n; i++) {
    ts += rand() * 20
    printf "{\"ph\": \"X\", \"cat\": \"kernel\", \"name\": \"void cudnn::kernel_%d<float, 128>\", " \
      "\"pid\": 0, \"tid\": %d, \"ts\": %.3f, \"dur\": %.3f, \"args\": {\"External id\": %d, " \
      "\"device\": 0, \"context\": 1, \"stream\": %d, \"correlation\": %d, \"registers per " \
      "thread\": %d, \"shared memory\": %d, \"grid\": [%d, 1, 1], \"block\": [256, 1, 1]}},\n",
      i % 60, 7 + i % 3, ts, rand() * 30, i, 7 + i % 3, i + 100000, 32 + int(rand() * 96),
      1024 * int(rand() * 48), 1 + int(rand() * 512)
  }
  print "{}]}"
}' > "$out/trace.json"
STUB
stub cmake 'if [[ "${1:-}" == --build ]]; then
  mkdir -p "$2/tests" && cp "$(dirname "$0")/fake-binary" "$2/mgpu" &&
    cp "$(dirname "$0")/fake-binary" "$2/tests/mgpu_tests"
  for ((i = 1; i <= 60; i++)); do echo "[$i/60] Building CXX object some/unit_$i.cxx.o"; done
  for ((i = 0; i < 60; i++)); do echo "$i $((i + 30000)) 0 unit-$i.o 0123456789abcdef"; done \
    > "$2/.ninja_log"
fi'
# ctest selects its tests from every test's name as CTest does (-I START,,STRIDE by number, -R,
# then -E), adds them to ctest-selected.txt for the checks below, and prints the probe's line
# when it runs the probe.
cat > "$work/bin/ctest" <<STUB
#!/usr/bin/env bash
include=. exclude='^\$' first=1 stride=1
while ((\$#)); do
  case \$1 in
    -R) include=\$2 ;;
    -E) exclude=\$2 ;;
    -I) first=\${2%%,*} stride=\${2##*,} ;;
  esac
  shift
done
awk -v first="\$first" -v stride="\$stride" 'NR >= first && (NR - first) % stride == 0' \\
  "$work/tests.txt" | grep -E -- "\$include" | grep -vE -- "\$exclude" > "$work/selected.txt"
cat "$work/selected.txt" >> "$work/ctest-selected.txt"
grep -q "^CudaLaunchQueue\\." "$work/selected.txt" &&
  echo "7: launch queue: a stalled stream accepted 1024 kernel launches (stub)"
echo "100% tests passed, 0 tests failed out of \$(wc -l < "$work/selected.txt")"
STUB
chmod +x "$work/bin/fake-binary" "$work/bin/ctest"

for call in "${calls[@]}"; do
  read -r limit script args <<< "$call"
  label="${script%.sh}${args:+-$args}"
  log="$work/$label.log"
  out="$work/out-$label"
  rm -f "$work/ctest-selected.txt"
  # shellcheck disable=SC2086
  (cd "$work/repo" && PATH="$work/bin:$PATH" OUT="$out" MGPU_GPU_TMP="$work/tmp" \
     timeout 120 bash "scripts/$script" $args > "$log" 2>&1)
  mv "$work/ctest-selected.txt" "$work/selected-$label.txt" 2> /dev/null ||
    touch "$work/selected-$label.txt"

  bash_errors="unbound variable|command not found|syntax error|error importing function"
  bash_errors+="|bad substitution|integer expression expected|invalid arithmetic"
  if grep -nE "$bash_errors" "$log"; then
    fail "$label: a bash error (above), in $log:"; tail -n 20 "$log"
  elif ! grep -q "^== \[[0-9]* s\] done" "$log"; then
    fail "$label: did not reach its end:"; tail -n 20 "$log"
  fi

  planned=$(sed -nE 's/^== plan: ([0-9]+) s of budgets.*/\1/p' "$log")
  if [[ -z $planned ]]; then
    fail "$label: no plan line ('== plan: N s of budgets ...')"
  elif ((planned * 5 > limit * 4)); then
    fail "$label: its budgets add up to $planned s; x 1.25 = $((planned * 5 / 4)) s, over its $limit s"
  fi

  files=$(find "$out" -type f | wc -l)
  ((files <= 8)) || fail "$label: $files files in \$OUT; the device tool brings back 8"
  find "$out" -mindepth 4 -type f | grep . && fail "$label: files above more than 2 folders down"
  find "$out" -type f -size +$((16 * mib))c | grep . && fail "$label: files above over 16 MiB"
  archive=$(stat -c %s "$out/results.tar.gz" 2> /dev/null || echo missing)
  if [[ $archive == missing ]]; then
    fail "$label: no results.tar.gz"
  elif ((archive > 8 * mib)); then
    fail "$label: results.tar.gz is $((archive / mib)) MiB, over 8 MiB"
    tar -tvzf "$out/results.tar.gz" | sort -k3 -n | tail -n 3
  fi

  grep -qx "GpuScripts.RunToTheEndWithStubbedTools" "$work/selected-$label.txt" &&
    fail "$label: its ctest runs the GPU scripts' dry run (it would run inside the real call)"
  echo "$label: $(grep -c '^== ' "$log") steps, budgets ${planned:-?} s of $limit s," \
    "results.tar.gz $((${archive/missing/0} / 1024)) KiB, $files files," \
    "$(wc -l < "$work/selected-$label.txt") tests selected"
done

# The first call: the probe and every test of a *Gpu suite; the suite's two calls: the rest;
# together every test but the dry run, each once.
gpu_selected="$work/selected-gpu-check.txt"
grep -qx "$probe" "$gpu_selected" || fail "gpu-check: the launch-queue probe ($probe) is not run"
while read -r t; do
  grep -qx "$t" "$gpu_selected" || fail "gpu-check: the GPU test $t is not run"
done < <(grep -E '^[A-Za-z0-9]*Gpu\.' "$work/tests.txt")
# ... and the first call builds only the test files of tests/CMakeLists.txt's
# MGPU_GPU_TESTS_ONLY list: every test its filter selects must be in one of them.
gpu_files=$(sed -n '/if(MGPU_GPU_TESTS_ONLY)/,/endif()/p' "$src/tests/CMakeLists.txt" |
  grep -oE 'test_[a-z0-9_]+\.cpp' | sort -u)
[[ -n $gpu_files ]] || fail "tests/CMakeLists.txt: no MGPU_GPU_TESTS_ONLY list of test files"
(source "$src/scripts/gpu-common.sh"
 for f in "$src"/tests/test_*.cpp; do
   name=$(basename "$f")
   grep -qx "$name" <<< "$gpu_files" && continue
   tr '\n' ' ' < "$f" | grep -oE "\bTEST(_F|_P)?\( *[A-Za-z0-9_]+, *[A-Za-z0-9_]+" |
     sed -E 's/^TEST(_F|_P)? *\( *//; s/, */./' | grep -E "$GPU_TESTS" | sed "s|^|$name: |"
 done) > "$work/gpu-tests-elsewhere.txt"
if [[ -s $work/gpu-tests-elsewhere.txt ]]; then
  fail "GPU tests in files the first call does not build (add them to MGPU_GPU_TESTS_ONLY):"
  cat "$work/gpu-tests-elsewhere.txt"
fi
sort "$gpu_selected" "$work"/selected-gpu-suite-[12].txt > "$work/selected-all.txt"
grep -vx "GpuScripts.RunToTheEndWithStubbedTools" "$work/tests.txt" |
  diff - "$work/selected-all.txt" > "$work/selection.diff" ||
  { fail "the GPU tests' call and the suite's two calls do not run every test once:"
    cat "$work/selection.diff"; }

fingerprint > "$work/real-after.txt"
if ! diff "$work/real-before.txt" "$work/real-after.txt"; then
  fail "the dry run wrote where a real run writes (above: < before, > after)"
fi
for dir in "${real[@]}"; do
  [[ $(cat "$dir/$sentinel" 2> /dev/null) == "$known" ]] || fail "$dir/$sentinel was changed or removed"
done
exit $status
