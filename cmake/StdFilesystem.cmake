# mgpu_stdfs: libstdc++'s std::filesystem, compiled into each executable that links it.
#
# PyPI's LibTorch exports a private copy of std::filesystem from libtorch.so and
# libtorch_cpu.so (pytorch/pytorch#133437). A call of ours that the dynamic linker binds to that
# copy crashes (remove_all, directory iterators), and which copy wins depends on the order of
# the executable's needed libraries, which the toolchain chooses (it went wrong on Ubuntu 24.04
# with g++ 13). Object files taken from the compiler's own libstdc++.a and linked into the
# executable itself define every std::filesystem function we call, so the static linker
# resolves our calls to them and no library order can redirect them (docs/architecture.md;
# tested by Toolchain.StdFilesystemIsCompiledIntoTheBinary).
execute_process(COMMAND ${CMAKE_CXX_COMPILER} -print-file-name=libstdc++.a
                OUTPUT_VARIABLE MGPU_LIBSTDCXX_A OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT IS_ABSOLUTE "${MGPU_LIBSTDCXX_A}" OR NOT EXISTS "${MGPU_LIBSTDCXX_A}")
  message(FATAL_ERROR "libstdc++.a not found (${CMAKE_CXX_COMPILER} -print-file-name gave "
          "'${MGPU_LIBSTDCXX_A}'): install the compiler's libstdc++ development package "
          "(Debian: libstdc++-12-dev)")
endif()
set(MGPU_STDFS_OBJECTS fs_dir.o fs_ops.o fs_path.o)
set(mgpu_stdfs_dir ${CMAKE_BINARY_DIR}/stdfs)
file(MAKE_DIRECTORY ${mgpu_stdfs_dir})
execute_process(COMMAND ${CMAKE_AR} x ${MGPU_LIBSTDCXX_A} ${MGPU_STDFS_OBJECTS}
                WORKING_DIRECTORY ${mgpu_stdfs_dir} RESULT_VARIABLE mgpu_stdfs_result
                ERROR_VARIABLE mgpu_stdfs_error)
list(TRANSFORM MGPU_STDFS_OBJECTS PREPEND ${mgpu_stdfs_dir}/)
foreach(object ${MGPU_STDFS_OBJECTS})
  if(NOT mgpu_stdfs_result EQUAL 0 OR NOT EXISTS ${object})
    message(FATAL_ERROR "cannot take ${object} out of ${MGPU_LIBSTDCXX_A}: ${mgpu_stdfs_error}")
  endif()
endforeach()
add_library(mgpu_stdfs OBJECT IMPORTED)
set_target_properties(mgpu_stdfs PROPERTIES IMPORTED_OBJECTS "${MGPU_STDFS_OBJECTS}")
message(STATUS "std::filesystem from ${MGPU_LIBSTDCXX_A}, linked into each executable")
