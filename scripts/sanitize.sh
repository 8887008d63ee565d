#!/usr/bin/env bash
# Builds mgpu and tests with AddressSanitizer and UndefinedBehaviorSanitizer into build-asan/ and
# runs them there. Run after scripts/bootstrap.sh.
#   scripts/sanitize.sh         CI's part (.ci/run): the test files that read files and bytes
#                               from outside, or share memory between threads and processes; of
#                               their tests the suite's and the long ones labelled long-sanitized
#   scripts/sanitize.sh --all   every test file, every test but the four long learning runs below
# LibTorch itself is not instrumented: leak reports from its static state are not ours, so leak
# detection is off; any other ASan or UBSan report aborts the test that caused it.
# Why CI runs a part (docs/reliability.md, "Sanitizers"): on the 2-core development machine the
# plain and the whole sanitized build and suite took 83 minutes of CI's 90.
set -euo pipefail
cd "$(dirname "$0")/.."
CI_FILES="test_atomic_file.cpp;test_augment.cpp;test_bad_inputs.cpp;test_checkpoint.cpp;\
test_checkpoint_binary.cpp;test_checkpoint_ranks.cpp;test_cifar10.cpp;test_cifar100.cpp;test_communicator.cpp;\
test_data_parallel.cpp;test_event_file.cpp;test_gloo_group.cpp;test_history.cpp;test_idx.cpp;test_image.cpp;\
test_image_folder.cpp;test_launcher.cpp;test_overlap_binary.cpp;test_reducer.cpp;test_start_agreement.cpp;\
test_steps_in_flight.cpp;test_workers.cpp"
# Four long learning runs: on the development machine without bfloat16 instructions they are
# 1,200 s of the plain suite's 2,700 s of test time; their code runs sanitized in shorter tests.
LONG='^(CliBinary\.TheReadmesQuickStartLearnsAsItShows|Speed\.Bf16AutocastTrainsKeepsFloat32WeightsAndEndsWithTheStep|Airbench94Binary\.ResumedFromAMidRunCheckpointItEndsAsTheUninterruptedRun|Training\.LearnsPatternsAndTheLossFalls)$'
case "${1:-}" in
  # The other long runs of these files (multi-process drills, whole jobs compared bit for bit)
  # repeat, at length, code that the suite's tests run: 326 of the 633 s of sanitized test time
  # (docs/reliability.md, "Sanitizers").
  "") files="$CI_FILES"; select=(-LE '^long$') ;;
  --all) files=""; select=(-E "$LONG") ;;
  *) echo "sanitize.sh: unknown argument '$1' (expected none or --all)" >&2; exit 2 ;;
esac
# -O1 -g1 (line tables for the reports): a third less compile time than CMake's -O2 -g here,
# which made this build 28 of CI's minutes (docs/reliability.md, "Sanitizers").
cmake -S . -B build-asan -G Ninja -DMGPU_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DMGPU_TEST_FILES="$files" > /dev/null
cmake --build build-asan -j "$(nproc)"
ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j2 "${select[@]}"
