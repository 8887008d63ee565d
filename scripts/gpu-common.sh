# The head every scripts/gpu-*.sh shares, sourced after it has cd'ed to the checkout:
# gpu_start NAME collects results in /tmp/NAME (packed into $OUT/results.tar.gz on exit, the
# device tool bringing back few files), records the machine, and starts converting the CIFAR-10
# stand-in in the background (convert_pid) while the caller builds. step prints a timed header;
# pack packs the results so far.
step() { echo "== [$SECONDS s] $*"; }
pack() { tar -C "$OUT" --exclude='*.pt' -czf "$FINAL/results.tar.gz" .; }

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
