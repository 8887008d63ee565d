// InputError: bad input from the user (a flag, a file, a path). main() exits with code 2 for it.
#pragma once

#include <stdexcept>
#include <string>

namespace mgpu::data {

class InputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace mgpu::data
