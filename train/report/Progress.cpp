// Progress bar and epoch lines in the format Keras prints.
#include "train/report/Progress.h"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>

namespace mgpu::train {

namespace {

constexpr int kBarWidth = 30;

std::string seconds_text(double s) {
  return s >= 10 ? fmt::format("{:.0f}s", s) : fmt::format("{:.1f}s", s);
}

// Draws line over the bar's line, drawn (then `end`: "" to stay on it, "\n" to leave it).
void redraw(std::ostream& out, std::string& drawn, const std::string& line, const char* end = "") {
  // Blanks wipe what is left of a longer line drawn before.
  const size_t blanks = drawn.size() > line.size() ? drawn.size() - line.size() : 0;
  out << '\r' << line << std::string(blanks, ' ') << end << std::flush;
  drawn = *end == '\n' ? std::string() : line;
}

}  // namespace

Progress::Progress(int verbose, std::ostream& out, std::ostream& err)
    : verbose_(verbose), out_(out), err_(err) {}

void Progress::info(const std::string& line) {
  if (verbose_ > 0) out_ << line << '\n' << std::flush;
}

void Progress::warn(const std::string& line) { err_ << "warning: " << line << '\n' << std::flush; }

void Progress::epoch_begin(int64_t epoch, int64_t epochs, int64_t steps) {
  epoch_ = epoch;
  epochs_ = epochs;
  steps_ = steps;
  epoch_start_ = last_draw_ = Clock::now();
  if (verbose_ == 1) out_ << fmt::format("Epoch {}/{}\n", epoch, epochs) << std::flush;
}

bool Progress::due(int64_t step) {
  if (verbose_ != 1) return false;
  if (step == steps_) return true;
  return Clock::now() - last_draw_ >= std::chrono::milliseconds(100);
}

std::string Progress::bar(int64_t step) const {
  const int width = static_cast<int>(std::to_string(steps_).size());
  const auto filled = static_cast<int>(kBarWidth * step / std::max<int64_t>(steps_, 1));
  std::string bar(static_cast<size_t>(kBarWidth), '.');
  for (int i = 0; i < filled; ++i) bar[static_cast<size_t>(i)] = '=';
  if (filled > 0 && filled < kBarWidth) bar[static_cast<size_t>(filled - 1)] = '>';
  return fmt::format("{:>{}}/{} [{}]", step, width, steps_, bar);
}

void Progress::update(int64_t step, double loss, double acc) {
  if (verbose_ != 1) return;
  last_draw_ = Clock::now();
  const double elapsed = std::chrono::duration<double>(last_draw_ - epoch_start_).count();
  const double eta = step > 0 ? elapsed / static_cast<double>(step) *
                                    static_cast<double>(steps_ - step)
                              : 0.0;
  redraw(out_, line_,
         fmt::format("{} - {} - ETA: {} - loss: {:.4f} - acc: {:.4f}", bar(step),
                     seconds_text(elapsed), seconds_text(eta), loss, acc));
}

void Progress::evaluating(int64_t images) {
  if (verbose_ != 1) return;
  const double elapsed = std::chrono::duration<double>(Clock::now() - epoch_start_).count();
  redraw(out_, line_,
         fmt::format("{} - {} - evaluating {} test images...", bar(steps_), seconds_text(elapsed),
                     images));
}

void Progress::epoch_end(const EpochStats& s) {
  const std::string metrics = fmt::format("loss: {:.4f} - acc: {:.4f} - val_loss: {:.4f} - "
                                          "val_acc: {:.4f}",
                                          s.loss, s.acc, s.val_loss, s.val_acc);
  if (verbose_ == 1) {
    const double ms_per_step = 1000.0 * s.seconds / static_cast<double>(std::max<int64_t>(steps_, 1));
    redraw(out_, line_,
           fmt::format("{} - {} {:.0f}ms/step - {}", bar(steps_), seconds_text(s.seconds),
                       ms_per_step, metrics),
           "\n");
  } else if (verbose_ == 2) {
    out_ << fmt::format("Epoch {}/{} - {} - {}\n", s.epoch, epochs_, seconds_text(s.seconds),
                        metrics)
         << std::flush;
  }
}

}  // namespace mgpu::train
