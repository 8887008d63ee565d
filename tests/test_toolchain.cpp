// The toolchain's std::filesystem is compiled into our binaries (cmake/StdFilesystem.cmake), so
// no library order can bind our calls to PyPI LibTorch's private copy, whose remove_all and
// directory iterators crash.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "Fixtures.h"

namespace fs = std::filesystem;

namespace {

void marker() {}  // a function of this executable, for its load address

// The object (executable or shared library) that defines the function at address.
Dl_info object_of(void* address) {
  Dl_info info{};
  EXPECT_NE(dladdr(address, &info), 0);
  return info;
}

}  // namespace

TEST(Toolchain, StdFilesystemIsCompiledIntoTheBinary) {
  const Dl_info self = object_of(reinterpret_cast<void*>(&marker));
  using RemoveAll = std::uintmax_t (*)(const fs::path&, std::error_code&);
  using CreateDirectories = bool (*)(const fs::path&, std::error_code&);
  using Status = fs::file_status (*)(const fs::path&, std::error_code&);
  using Rename = void (*)(const fs::path&, const fs::path&, std::error_code&);
  const std::pair<const char*, void*> functions[] = {
      {"remove_all", reinterpret_cast<void*>(static_cast<RemoveAll>(&fs::remove_all))},
      {"create_directories",
       reinterpret_cast<void*>(static_cast<CreateDirectories>(&fs::create_directories))},
      {"status", reinterpret_cast<void*>(static_cast<Status>(&fs::status))},
      {"rename", reinterpret_cast<void*>(static_cast<Rename>(&fs::rename))},
  };
  for (const auto& [name, address] : functions) {
    const Dl_info found = object_of(address);
    EXPECT_EQ(found.dli_fbase, self.dli_fbase)
        << "std::filesystem::" << name << " binds to " << (found.dli_fname ? found.dli_fname : "?")
        << ", not to this executable (" << self.dli_fname
        << "): see docs/architecture.md on PyPI LibTorch and std::filesystem";
  }
}

TEST(Toolchain, StdFilesystemListsAndRemovesTrees) {
  // What crashed when bound to LibTorch's copy: directory iterators and remove_all.
  mgpu::testing::TempDir tmp;
  const fs::path root = tmp.path() / "tree";
  fs::create_directories(root / "a" / "b");
  std::ofstream(root / "a" / "one.txt") << "1";
  std::ofstream(root / "a" / "b" / "two.txt") << "2";
  int entries = 0;
  for (const auto& entry : fs::recursive_directory_iterator(root)) entries += entry.exists();
  EXPECT_EQ(entries, 4);  // a, a/b, a/one.txt, a/b/two.txt
  int top = 0;
  for (const auto& entry : fs::directory_iterator(root / "a")) top += !entry.path().empty();
  EXPECT_EQ(top, 2);
  EXPECT_EQ(fs::remove_all(root), 5u);  // the four and root itself
  EXPECT_FALSE(fs::exists(root));
}
