// A one-line text progress bar, redrawn in place at most ten times a second: the archive
// download and the decoding of an image folder draw it on standard error.
#pragma once

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <ostream>
#include <string>

namespace mgpu::data {

class TextBar {
 public:
  TextBar(std::ostream& out, std::string label) : out_(out), label_(std::move(label)) {}

  /// "\r<label>: <text> [=====     ]" with fraction (0-1) of the bar filled; the last draw is
  /// never skipped and ends the line.
  void draw(double fraction, const std::string& text, bool last = false) {
    const auto now = std::chrono::steady_clock::now();
    if (!last && now - drawn_ < std::chrono::milliseconds(100)) return;
    drawn_ = now;
    open_ = !last;
    constexpr int kWidth = 30;
    const int filled = std::clamp(static_cast<int>(kWidth * fraction), 0, kWidth);
    out_ << fmt::format("\r{}: {} [{}{}]", label_, text,
                        std::string(static_cast<size_t>(filled), '='),
                        std::string(static_cast<size_t>(kWidth - filled), ' '))
         << (last ? "\n" : "") << std::flush;
  }

  /// Ends the bar's line if it is drawn and not ended, so that what is printed next (an error
  /// message) starts on a line of its own.
  void end_line() {
    if (open_) out_ << "\n" << std::flush;
    open_ = false;
  }

 private:
  std::ostream& out_;
  std::string label_;
  std::chrono::steady_clock::time_point drawn_{};
  bool open_ = false;  // a line is drawn and not ended
};

}  // namespace mgpu::data
