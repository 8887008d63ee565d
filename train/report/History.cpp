// History CSV writing and parsing, and the history as a tensor for checkpoints.
#include "train/report/History.h"

#include <fmt/core.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "data/InputError.h"
#include "data/ReadFile.h"  // defines: read_file

namespace mgpu::train {
namespace fs = std::filesystem;

namespace {

constexpr const char* kHeader = "epoch,lr,seconds,loss,acc,val_loss,val_acc";

}  // namespace

std::string history_csv(const History& history) {
  std::string csv = std::string(kHeader) + "\n";
  for (const auto& e : history) {
    csv += fmt::format("{},{:.8g},{:.3f},{:.6f},{:.6f},{:.6f},{:.6f}\n", e.epoch, e.lr, e.seconds,
                       e.loss, e.acc, e.val_loss, e.val_acc);
  }
  return csv;
}

History parse_history_csv(const std::string& text, const std::string& source) {
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line) || line != kHeader) {
    throw data::InputError(
        fmt::format("{}: first line is not the header '{}'", source, kHeader));
  }
  History history;
  for (int line_no = 2; std::getline(in, line); ++line_no) {
    if (line.empty()) continue;
    std::istringstream fields(line);
    EpochStats e;
    char c[6];
    fields >> e.epoch >> c[0] >> e.lr >> c[1] >> e.seconds >> c[2] >> e.loss >> c[3] >> e.acc >>
        c[4] >> e.val_loss >> c[5] >> e.val_acc;
    bool commas = true;
    for (char ch : c) commas = commas && ch == ',';
    if (!fields || !commas || !(fields >> std::ws).eof()) {
      throw data::InputError(fmt::format("{}:{}: expected 7 comma-separated numbers, got '{}'",
                                         source, line_no, line));
    }
    history.push_back(e);
  }
  return history;
}

History read_history_csv(const fs::path& file) {
  const std::string text = data::read_file(file, "history file");
  History history = parse_history_csv(text, file.string());
  if (history.empty()) throw data::InputError(fmt::format("{} holds no epochs", file.string()));
  return history;
}

}  // namespace mgpu::train
