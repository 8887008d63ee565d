// History CSV writing and parsing; atomic writes.
#include "train/History.h"

#include <fmt/core.h>

#include <fstream>
#include <sstream>

#include "data/InputError.h"

namespace mgpu::train {
namespace fs = std::filesystem;

namespace {
constexpr const char* kHeader = "epoch,lr,seconds,loss,acc,val_loss,val_acc";
}

void write_atomically(const fs::path& path, const std::function<void(const fs::path&)>& write) {
  fs::path tmp = path;
  tmp += ".tmp";
  try {
    write(tmp);
    std::error_code ec;
    fs::rename(tmp, path, ec);
    if (ec) throw std::runtime_error(fmt::format("cannot rename {} to {}: {}", tmp.string(),
                                                 path.string(), ec.message()));
  } catch (...) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw;
  }
}

void write_text_atomically(const fs::path& path, const std::string& text) {
  write_atomically(path, [&](const fs::path& tmp) {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    if (!out) throw std::runtime_error(fmt::format("cannot write {}", tmp.string()));
  });
}

std::string history_csv(const History& history) {
  std::string csv = std::string(kHeader) + "\n";
  for (const auto& e : history) {
    csv += fmt::format("{},{:.8g},{:.3f},{:.6f},{:.6f},{:.6f},{:.6f}\n", e.epoch, e.lr, e.seconds,
                       e.loss, e.acc, e.val_loss, e.val_acc);
  }
  return csv;
}

History read_history_csv(const fs::path& file) {
  std::ifstream in(file);
  if (!in) throw data::InputError(fmt::format("cannot open history file {}", file.string()));
  std::string line;
  if (!std::getline(in, line) || line != kHeader) {
    throw data::InputError(
        fmt::format("{}: first line is not the header '{}'", file.string(), kHeader));
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
      throw data::InputError(
          fmt::format("{}:{}: expected 7 comma-separated numbers, got '{}'", file.string(),
                      line_no, line));
    }
    history.push_back(e);
  }
  if (history.empty()) throw data::InputError(fmt::format("{} holds no epochs", file.string()));
  return history;
}

}  // namespace mgpu::train
