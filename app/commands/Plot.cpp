// mgpu plot: its flags, and the plot redrawn from a history.csv.
#include "app/commands/Plot.h"

#include <ostream>
#include <stdexcept>
#include <string>

#include "app/commands/Command.h"    // defines: CommandSpec, make_command
#include "app/commands/Flags.h"      // defines: get
#include "data/InputError.h"         // defines: InputError
#include "train/files/AtomicFile.h"  // defines: NewDirectories, check_output_file
#include "train/report/History.h"    // defines: read_history_csv
#include "train/report/Plot.h"       // defines: can_plot, plot_history

namespace mgpu::app {

using namespace mgpu::train;  // a command is built from the training library's parts
namespace fs = std::filesystem;

void plot_from_csv(const fs::path& csv, const fs::path& png) {
  check_output_file(png, "--output", "plot.png");
  const History history = read_history_csv(csv);
  std::string why;
  if (!can_plot(&why)) throw std::runtime_error("cannot plot: " + why);
  NewDirectories created;  // a failure leaves no directory it made behind
  if (png.has_parent_path()) created.prepare(png.parent_path(), "--output");
  plot_history(history, png, csv.string());
}

namespace {

cxxopts::Options plot_options() {
  cxxopts::Options o("mgpu plot", "Redraw the loss/accuracy plot from a history.csv.");
  o.positional_help("HISTORY.csv");
  o.add_options()
      ("history", "history.csv written by mgpu train", cxxopts::value<std::string>())
      ("output", "PNG to write", cxxopts::value<std::string>()->default_value("plot.png"))
      ("h,help", "show this help");
  o.parse_positional({"history"});
  return o;
}

}  // namespace

CommandSpec plot_command() {
  return {"plot", "  mgpu plot HISTORY.csv [--output PNG] redraw the loss/accuracy plot from a history.csv\n",
          plot_options, [](const cxxopts::ParseResult& r) {
            if (!r.count("history")) throw data::InputError("mgpu plot: name the history.csv to plot");
            const PlotConfig config{get<std::string>(r, "history"), get<std::string>(r, "output")};
            return make_command("plot", config, [](const PlotConfig& c, std::ostream& out) {
              plot_from_csv(c.history, c.output);
              out << "plot: " << c.output.string() << "\n";
            });
          }};
}

}  // namespace mgpu::app
