# Build speed on a small machine (figures and commands: docs/benchmarks.md, "Build time").
# Almost all of a translation unit's time goes to LibTorch's headers: parsing torch/torch.h
# (~200,000 lines) and, at the end of every unit, instantiating the templates those headers
# use (~6 s with GCC even for an empty file). So:
# - one precompiled header of torch/torch.h, built once by mgpu_pch and reused by every
#   target (mgpu_build_fast): the parsing is done once per build. GCC only; clang (the fuzz
#   build) checks a PCH's command-line macros strictly, so it builds without one. Nothing else
#   goes into it: {fmt} and nlohmann/json made every unit ~4 s slower to load it;
# - unity builds (MGPU_UNITY): the sources of each library compiled a few at a time in one
#   unit, so the fixed per-unit cost is paid once per batch (mgpu_unity_sources below);
# - ccache, when installed, in front of the compiler, with paths hashed relative to the
#   source tree and __FILE__ made relative, so that another clone (CI's) hits the same cache;
#   in its depend mode, which takes the headers a unit read from the compiler's own -MD list
#   instead of running the preprocessor before every miss (that made a cold build's compile
#   time 23% longer: 655 s against 534 s without ccache); the sloppiness settings are what
#   ccache needs to cache units that use a PCH;
# - -O2 rather than CMake's -O3 for Release: mgpu's own code is glue around LibTorch's
#   kernels, and -O3 only made each unit slower to compile.
option(MGPU_CCACHE "Compile through ccache when it is installed" ON)
option(MGPU_PCH "Precompile LibTorch's headers once for all targets (GCC)" ON)
option(MGPU_UNITY "Compile each library's sources a few at a time in one unit" ON)
set(MGPU_UNITY_BATCH 8 CACHE STRING "Sources per unity unit")

find_program(MGPU_CCACHE_PROGRAM ccache)
if(MGPU_CCACHE AND MGPU_CCACHE_PROGRAM AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_CXX_COMPILER_LAUNCHER
      ${CMAKE_COMMAND} -E env CCACHE_BASEDIR=${PROJECT_SOURCE_DIR} CCACHE_NOHASHDIR=1 CCACHE_DEPEND=1
      CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
      ${MGPU_CCACHE_PROGRAM})
  message(STATUS "ccache: ${MGPU_CCACHE_PROGRAM}")
endif()

# __FILE__ (GoogleTest's and the NCCL checks' messages) relative to the source tree: a unity
# unit finds its sources through -I <source tree>, an absolute path, so without this every unit
# that expands __FILE__ would hold its clone's path, and another clone's build would miss the
# cache. ccache hashes only the map's new side of the flag.
add_compile_options(-fmacro-prefix-map=${PROJECT_SOURCE_DIR}/=)

if(CMAKE_BUILD_TYPE STREQUAL "Release")
  add_compile_options(-O2)  # after CMAKE_CXX_FLAGS_RELEASE's -O3, so it wins
endif()

if(MGPU_PCH AND NOT CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  message(STATUS "PCH: off for ${CMAKE_CXX_COMPILER_ID} (GCC only)")
  set(MGPU_PCH OFF)
endif()
if(MGPU_PCH)
  add_library(mgpu_pch OBJECT ${PROJECT_SOURCE_DIR}/cmake/Pch.cpp)
  # The same flags as every user of the PCH (mgpu_warnings: -Wpedantic changes predefined
  # macros, and GCC ignores a PCH built with other ones).
  target_link_libraries(mgpu_pch PRIVATE torch mgpu::fmt mgpu_warnings)
  target_precompile_headers(mgpu_pch PRIVATE <torch/torch.h>)
endif()

# Gives target the shared precompiled header and unity batches (each a no-op when off).
function(mgpu_build_fast target)
  if(MGPU_PCH)
    target_precompile_headers(${target} REUSE_FROM mgpu_pch)
  endif()
  if(MGPU_UNITY)
    set_target_properties(${target} PROPERTIES UNITY_BUILD_BATCH_SIZE ${MGPU_UNITY_BATCH})
    # At the end of the directory: its CMakeLists may still change the batch or skip a source.
    cmake_language(EVAL CODE "cmake_language(DEFER CALL mgpu_unity_sources [[${target}]])")
  endif()
endfunction()

# The unity units of target: up to UNITY_BUILD_BATCH_SIZE of its .cpp files a unit, each
# included by its path under the source tree. (CMake's own units, before 3.32, include their
# sources by absolute path, so a unit's text differs between clones: with them another clone
# missed ccache unless ccache ran the preprocessor first, on every miss.) A source that is
# SKIP_UNITY_BUILD_INCLUSION or HEADER_FILE_ONLY, or lies outside the source tree, compiles alone.
function(mgpu_unity_sources target)
  get_target_property(batch ${target} UNITY_BUILD_BATCH_SIZE)
  get_target_property(sources ${target} SOURCES)
  set(included "")
  foreach(source IN LISTS sources)
    get_filename_component(path ${source} ABSOLUTE)
    get_source_file_property(skip ${source} SKIP_UNITY_BUILD_INCLUSION)
    get_source_file_property(header_only ${source} HEADER_FILE_ONLY)
    file(RELATIVE_PATH relative ${PROJECT_SOURCE_DIR} ${path})
    string(FIND "${path}" "${PROJECT_BINARY_DIR}/" in_build_tree)
    if(path MATCHES "\\.cpp$" AND NOT skip AND NOT header_only AND NOT relative MATCHES "^\\.\\."
       AND NOT in_build_tree EQUAL 0)
      set_source_files_properties(${source} PROPERTIES HEADER_FILE_ONLY ON)
      list(APPEND included ${relative})
    endif()
  endforeach()
  list(LENGTH included count)
  set(start 0)
  set(unit 0)
  while(start LESS count)
    list(SUBLIST included ${start} ${batch} part)
    list(TRANSFORM part REPLACE "(.+)" "#include \"\\1\"")
    list(JOIN part "\n" text)
    set(file ${CMAKE_CURRENT_BINARY_DIR}/${target}_unity/unity_${unit}.cpp)
    file(GENERATE OUTPUT ${file} CONTENT "// Generated by cmake/BuildSpeed.cmake\n${text}\n")
    target_sources(${target} PRIVATE ${file})
    math(EXPR start "${start} + ${batch}")
    math(EXPR unit "${unit} + 1")
  endwhile()
  target_include_directories(${target} PRIVATE ${PROJECT_SOURCE_DIR})
endfunction()
