# Finds NCCL, preferring the copy that PyTorch's own package brings (nvidia-nccl-cu13 in the
# same site-packages), which is the library LibTorch itself loads, and defines NCCL::nccl.
# Sets NCCL_FOUND, NCCL_VERSION.
if(NOT NCCL_ROOT AND MGPU_PYTHON AND EXISTS "${MGPU_PYTHON}")
  execute_process(
    COMMAND "${MGPU_PYTHON}" -c "import nvidia.nccl as n; print(list(n.__path__)[0], end='')"
    OUTPUT_VARIABLE mgpu_nccl_root RESULT_VARIABLE mgpu_nccl_result ERROR_QUIET)
  if(mgpu_nccl_result EQUAL 0)
    set(NCCL_ROOT "${mgpu_nccl_root}")
  endif()
endif()

if(NCCL_ROOT)  # the package's copy first, before any system NCCL
  find_path(NCCL_INCLUDE_DIR nccl.h PATHS ${NCCL_ROOT}/include NO_DEFAULT_PATH)
  find_library(NCCL_LIBRARY NAMES nccl libnccl.so.2 PATHS ${NCCL_ROOT}/lib NO_DEFAULT_PATH)
endif()
find_path(NCCL_INCLUDE_DIR nccl.h PATH_SUFFIXES include PATHS /usr/local/cuda /usr)
find_library(NCCL_LIBRARY NAMES nccl libnccl.so.2 PATH_SUFFIXES lib lib64
             PATHS /usr/local/cuda /usr)

if(NCCL_INCLUDE_DIR AND EXISTS "${NCCL_INCLUDE_DIR}/nccl.h")
  file(STRINGS "${NCCL_INCLUDE_DIR}/nccl.h" mgpu_nccl_lines REGEX "#define NCCL_(MAJOR|MINOR|PATCH) ")
  foreach(line ${mgpu_nccl_lines})
    if(line MATCHES "#define NCCL_(MAJOR|MINOR|PATCH) +([0-9]+)")
      set(NCCL_${CMAKE_MATCH_1} ${CMAKE_MATCH_2})
    endif()
  endforeach()
  set(NCCL_VERSION "${NCCL_MAJOR}.${NCCL_MINOR}.${NCCL_PATCH}")
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(NCCL REQUIRED_VARS NCCL_LIBRARY NCCL_INCLUDE_DIR
                                  VERSION_VAR NCCL_VERSION)

if(NCCL_FOUND AND NOT TARGET NCCL::nccl)
  add_library(NCCL::nccl SHARED IMPORTED)
  set_target_properties(NCCL::nccl PROPERTIES
    IMPORTED_LOCATION "${NCCL_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${NCCL_INCLUDE_DIR}")
endif()
