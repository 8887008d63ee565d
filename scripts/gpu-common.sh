# The head every scripts/gpu-*.sh shares, sourced after it has cd'ed to the checkout:
# gpu_start NAME collects results in /tmp/NAME (packed into $OUT/results.tar.gz on exit and
# after every part, the device tool bringing back few files), records the machine, and starts
# converting the CIFAR-10 stand-in in the background (convert_pid) while the caller builds.
# plan prints the parts and their budgets first; part NAME BUDGET_S COMMAND... runs one under
# its budget, says how long it took, and packs what there is so far; step prints a timed
# header; pack packs the results so far.
step() { echo "== [$SECONDS s] $*"; }
pack() { tar -C "$OUT" --exclude='*.pt' -czf "$FINAL/results.tar.gz.part" . &&
         mv "$FINAL/results.tar.gz.part" "$FINAL/results.tar.gz"; }
plan() {
  echo "== the parts of this call, in order, with their budgets (s):"
  local p; for p in "$@"; do echo "   - $p"; done
}
part() {
  local name=$1 budget=$2 start=$SECONDS rc
  shift 2
  step "$name (budget ${budget} s)"
  if declare -F "$1" > /dev/null; then  # a function of the script: timeout cannot run it, so a
    # new shell gets every function and the arrays (export -f would lose a function holding a
    # here-document followed by `|| return`, and the functions it calls)
    export B OUT
    timeout "$budget" bash -c "$(declare -f)
$(declare -p DATA SHORT 2>/dev/null)
$*"
  else
    timeout "$budget" "$@"
  fi
  rc=$?
  echo "   $name: rc $rc after $((SECONDS - start)) s$( ((rc == 124)) && echo ' (budget spent)')"
  pack
  return $rc
}

gpu_start() {
  FINAL="${OUT:-/tmp/mgpu-out}"
  OUT="/tmp/$1"
  mkdir -p "$OUT" "$FINAL"
  trap pack EXIT
  step "machine"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/machine.txt"
  { python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
    g++ --version | head -1; cmake --version | head -1; nproc; } 2>&1 | tee -a "$OUT/machine.txt"
  (python3 .deps/cifar10_from_jpeg.py --out .deps/data > "$OUT/cifar.log" 2>&1
   echo "rc $?" >> "$OUT/cifar.log") &
  convert_pid=$!
}
