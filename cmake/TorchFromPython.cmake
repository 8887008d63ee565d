# Finds LibTorch inside a Python `torch` package: asks the interpreter for
# torch.utils.cmake_prefix_path and appends it to CMAKE_PREFIX_PATH.
# Skipped when the caller already gave Torch_DIR or a prefix path that holds Torch.

set(MGPU_PYTHON "$ENV{HOME}/.cache/mgpu/venv/bin/python" CACHE FILEPATH
    "Python interpreter whose torch package supplies LibTorch")

if(NOT Torch_DIR)
  if(NOT EXISTS "${MGPU_PYTHON}")
    find_program(MGPU_PYTHON_FALLBACK NAMES python3 python)
    set(MGPU_PYTHON "${MGPU_PYTHON_FALLBACK}")
  endif()
  execute_process(
    COMMAND "${MGPU_PYTHON}" -c "import torch; print(torch.utils.cmake_prefix_path, end='')"
    OUTPUT_VARIABLE mgpu_torch_prefix
    RESULT_VARIABLE mgpu_torch_result
    ERROR_QUIET)
  if(mgpu_torch_result EQUAL 0 AND mgpu_torch_prefix)
    message(STATUS "LibTorch from ${MGPU_PYTHON}: ${mgpu_torch_prefix}")
    list(APPEND CMAKE_PREFIX_PATH "${mgpu_torch_prefix}")
  else()
    message(STATUS "No torch package under ${MGPU_PYTHON}; relying on Torch_DIR/CMAKE_PREFIX_PATH")
  endif()
endif()
