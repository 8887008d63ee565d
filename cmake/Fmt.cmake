# mgpu::fmt: the {fmt} library. LibTorch ships its own fmt headers (12.1) on its include path,
# and they shadow any system fmt (Debian's 9.x) in every file that also includes torch, so we
# build LibTorch's copy: its headers, and its compiled part once in cmake/Fmt.cpp (header-only
# mode compiled that part into every unit). A LibTorch without fmt headers falls back to
# find_package.
find_path(MGPU_TORCH_FMT_DIR fmt/format-inl.h PATHS ${TORCH_INCLUDE_DIRS} NO_DEFAULT_PATH)
if(MGPU_TORCH_FMT_DIR)
  message(STATUS "fmt: LibTorch's ${MGPU_TORCH_FMT_DIR}, compiled in cmake/Fmt.cpp")
  add_library(mgpu_fmt STATIC ${CMAKE_CURRENT_LIST_DIR}/Fmt.cpp)
  target_include_directories(mgpu_fmt SYSTEM PUBLIC ${MGPU_TORCH_FMT_DIR})
else()
  add_library(mgpu_fmt INTERFACE)
  find_package(fmt REQUIRED)
  target_link_libraries(mgpu_fmt INTERFACE fmt::fmt)
endif()
add_library(mgpu::fmt ALIAS mgpu_fmt)
