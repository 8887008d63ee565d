# mgpu::fmt: the {fmt} library. LibTorch ships its own fmt headers (12.x) on its include path,
# and they shadow any system fmt (Debian's 9.x) in every file that also includes torch, so we
# use LibTorch's copy header-only; a LibTorch without fmt headers falls back to find_package.
find_path(MGPU_TORCH_FMT_DIR fmt/format-inl.h PATHS ${TORCH_INCLUDE_DIRS} NO_DEFAULT_PATH)
add_library(mgpu_fmt INTERFACE)
add_library(mgpu::fmt ALIAS mgpu_fmt)
if(MGPU_TORCH_FMT_DIR)
  message(STATUS "fmt: header-only, from LibTorch's ${MGPU_TORCH_FMT_DIR}")
  target_include_directories(mgpu_fmt SYSTEM INTERFACE ${MGPU_TORCH_FMT_DIR})
  target_compile_definitions(mgpu_fmt INTERFACE FMT_HEADER_ONLY=1)
else()
  find_package(fmt REQUIRED)
  target_link_libraries(mgpu_fmt INTERFACE fmt::fmt)
endif()
