# shellcheck shell=bash
# The head every scripts/gpu-*.sh shares, sourced after it has cd'ed to the checkout:
# gpu_start NAME collects results in $GPU_TMP/NAME (made afresh; packed into $OUT/results.tar.gz
# on exit and after every part, the device tool bringing back few files), records the machine,
# and starts converting the CIFAR-10 stand-in in the background (convert_pid) while the caller
# builds. plan LIMIT "PART=BUDGET"... prints the parts and their budgets first and refuses a plan
# without a quarter to spare; part PART COMMAND... runs one under its planned budget, says how
# long it took, and packs what there is so far; step prints a timed header; pack packs the
# results so far; run_ctest runs CTest with each test's threads bounded.

# Where a run writes on the GPU machine: /tmp. The dry run (scripts/gpu-dryrun.sh) gives the
# scripts a folder of its own here, so that a dry run can never write where a real run writes
# (issue 37: the stubbed scripts, run by the real call's ctest, overwrote its results).
GPU_TMP="${MGPU_GPU_TMP:-/tmp}"
export GPU_TMP

# The GPU tests, by name: suites named *Gpu (StepGraphGpu, SpeedGpu, RecipeGpu, Fp16Gpu),
# NcclGroup, CudaLaunchQueue (the launch-queue probe), and the tests that clone a model onto a
# GPU. Names that only mention a GPU are not among them: CliBinary.AGpuAskedFor... refuses on
# the CPU, and GpuScripts.RunToTheEndWithStubbedTools is the dry run, which must never run on
# the GPU machine (NOT_THERE keeps it out of the rest of the suite too).
GPU_TESTS='^(NcclGroup|CudaLaunchQueue|[A-Za-z0-9]*Gpu)\.|OntoA?Gpu$'
NOT_THERE='^GpuScripts\.'
export GPU_TESTS NOT_THERE

# The build's budgets (s) on a fresh machine, every call's first part: mgpu and the tests, mgpu
# and the test files that hold GPU tests (the first call), or mgpu alone. The projection behind them is in docs/benchmarks.md ("Build time on the GPU machine");
# gpu-build.sh brings back each unit's times (ninja-log.txt) to replace it with a measurement.
# shellcheck disable=SC2034  # read by the scripts that source this file
BUILD_ALL_S=230
# shellcheck disable=SC2034
BUILD_GPU_S=175
# shellcheck disable=SC2034
BUILD_MGPU_S=150

step() { echo "== [$SECONDS s] $*"; }
pack() { tar -C "$OUT" --exclude='*.pt' -czf "$FINAL/results.tar.gz.part" . &&
         mv "$FINAL/results.tar.gz.part" "$FINAL/results.tar.gz"; }

# A part's budget is a timeout, and a call also spends time no part counts (the machine's
# record, packing after every part, up to 10 s for a part to stop after its budget, the tool's
# own start-up), so the budgets must add up to at most 80% of the call's limit: 25% to spare.
declare -A BUDGET
plan() {
  local limit=$1 sum=0 p
  shift
  echo "== the parts of this call, in order, with their budgets (s):"
  for p in "$@"; do
    BUDGET[${p%=*}]=${p##*=}
    sum=$((sum + ${p##*=}))
    echo "   - ${p%=*}: ${p##*=}"
  done
  echo "== plan: ${sum} s of budgets, x 1.25 = $((sum * 5 / 4)) s, for a call of at most ${limit} s"
  if ((sum * 5 > limit * 4)); then
    echo "== plan: over: ${sum} s x 1.25 is more than ${limit} s; cut a budget"
    exit 1
  fi
}

part() {
  local name=$1 budget=${BUDGET[$1]:-} start=$SECONDS rc
  shift
  if [[ -z $budget ]]; then
    echo "== part '$name' is not in the plan, so it has no budget"
    exit 1
  fi
  step "$name (budget ${budget} s)"
  # SIGINT: mgpu train stops at the end of its step with its history and summary written; KILL
  # 10 s later for whatever ignores it.
  if declare -F "$1" > /dev/null; then  # a function of the script: timeout cannot run it, so a
    # new shell gets every function and the variables the scripts' functions read (export -f
    # would lose a function holding a here-document followed by `|| return`, and the functions
    # it calls; an array cannot be exported), and the call's words as its own arguments ("$@":
    # a regular expression's parentheses stay words)
    # shellcheck disable=SC2154  # gpus and the others: set by the scripts, where they use them
    timeout --signal=INT --kill-after=10 "$budget" bash -c "$(declare -f)
$(declare -p B OUT RUN gpus DATA SHORT P FLAGS 2>/dev/null)
"'"$@"' "$name" "$@"
  else
    timeout --signal=INT --kill-after=10 "$budget" "$@"
  fi
  rc=$?
  echo "   $name: rc $rc after $((SECONDS - start)) s$( ((rc == 124)) && echo ' (budget spent)')"
  pack
  return $rc
}

# run_ctest LOG JOBS CTEST_ARGS...: CTest in build-gpu, JOBS tests at a time, each test's CPU
# threads bounded so that together they fill the cores once (LibTorch otherwise starts a
# thread per core in every test: 8 tests x 16 threads on 16 cores).
run_ctest() {
  local log=$1 jobs=$2 threads
  shift 2
  threads=$(($(nproc) / jobs))
  ((threads > 0)) || threads=1
  (cd build-gpu && OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads \
     ctest -j "$jobs" "$@" > "$log" 2>&1)
}

gpu_start() {
  FINAL="${OUT:-$GPU_TMP/mgpu-out}"
  OUT="$GPU_TMP/$1"
  # Afresh: a second call on a warm machine would find the first one's runs, and mgpu train
  # refuses an --out-dir holding another run's checkpoints (those results came back already).
  rm -rf "$OUT"
  mkdir -p "$OUT" "$FINAL"
  trap pack EXIT
  step "machine"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/machine.txt"
  { python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
    g++ --version | head -1; cmake --version | head -1; nproc; } 2>&1 | tee -a "$OUT/machine.txt"
  (python3 .deps/cifar10_from_jpeg.py --out .deps/data > "$OUT/cifar.log" 2>&1
   echo "rc $?" >> "$OUT/cifar.log") &
  # shellcheck disable=SC2034  # the scripts wait for it
  convert_pid=$!
}

# The one-rank NCCL comparison of the first two calls (gpu-check.sh eager, gpu-bench.sh with
# --cuda-graphs): 200 steps of batch 64 and two evaluations, enough for any difference to show in
# the weights; three to five runs at once on the 16 cores, 3 LibTorch threads each. B is the
# binary.
DATA=(--gpus 1 --dataset cifar10 --data-dir .deps/data --verbose 2 --threads 3)
SHORT=(--limit-train 6400 --limit-test 1000 --epochs 2 --deterministic)
run() {  # NAME FLAGS...: one short deterministic run
  local name=$1
  shift
  $B train "${DATA[@]}" "${SHORT[@]}" "$@" --out-dir "$OUT/$name" > "$OUT/$name.log" 2>&1
}
same_run() {  # RUN RUN: the history's losses and accuracies and the weights agree, bit for bit
  cmp -s <(cut -d, -f1,2,4- "$OUT/$1/history.csv") <(cut -d, -f1,2,4- "$OUT/$2/history.csv") &&
    python3 scripts/compare_weights.py "$OUT/$1/model.pt" "$OUT/$2/model.pt"
}
nccl_against_plain() {  # TAG FLAGS...: the plain path, and NCCL with and without overlap, at once
  local tag=$1 pids=() pid rc=0
  shift
  run "plain-$tag" "$@" & pids+=($!)
  run "nccl-$tag" --comm nccl --bucket-mb 1 "$@" & pids+=($!)
  run "nccl-serial-$tag" --comm nccl --no-overlap "$@" & pids+=($!)
  if [[ $tag == eager ]]; then  # the other shipped models: strict --deterministic, no comparison
    run "resnet20-$tag" --model resnet20 & pids+=($!)
    run "airbench94-$tag" --model airbench94 & pids+=($!)
  fi
  for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
  tail -n 2 "$OUT"/*-"$tag".log
  grep -h "deterministic implementation" "$OUT"/*-"$tag".log
  ((rc == 0)) && same_run "plain-$tag" "nccl-$tag" && same_run "plain-$tag" "nccl-serial-$tag"
}
