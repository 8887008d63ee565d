# One interface target that carries the project's warning flags.
add_library(mgpu_warnings INTERFACE)
target_compile_options(mgpu_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wno-unused-parameter>)
