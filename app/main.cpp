// mgpu's entry point: parse, run, and turn errors into messages and exit codes.
#include <fmt/core.h>

#include <csignal>
#include <iostream>

#include "app/Cli.h"          // defines: parse_command_line, Command
#include "data/InputError.h"  // defines: InputError (exit code 2)
#include "models/Registry.h"  // defines: models_table
#include "train/Bench.h"      // defines: run_bench
#include "train/Evaluate.h"   // defines: run_evaluate
#include "train/Export.h"     // defines: run_export
#include "train/Predict.h"    // defines: run_predict
#include "train/Run.h"        // defines: run_training, plot_from_csv
#include "train/Signals.h"    // defines: StopRequested, kExitStopped

int main(int argc, char** argv) {
  // Past a file-size limit, a write fails with EFBIG (and is reported) instead of killing us.
  std::signal(SIGXFSZ, SIG_IGN);
  try {
    const auto cmd = mgpu::app::parse_command_line(std::vector<std::string>(argv, argv + argc));
    switch (cmd.kind) {
      case mgpu::app::Command::Kind::kHelp:
        std::cout << cmd.help;
        return 0;
      case mgpu::app::Command::Kind::kTrain:
        mgpu::train::run_training(cmd.train, std::cout);
        return 0;
      case mgpu::app::Command::Kind::kBench:
        mgpu::train::run_bench(cmd.bench, std::cout);
        return 0;
      case mgpu::app::Command::Kind::kModels:
        std::cout << mgpu::models::models_table(mgpu::models::ModelShape{});
        return 0;
      case mgpu::app::Command::Kind::kEvaluate:
        mgpu::train::run_evaluate(cmd.evaluate, std::cout);
        return 0;
      case mgpu::app::Command::Kind::kPredict:
        mgpu::train::run_predict(cmd.predict, std::cout);
        return 0;
      case mgpu::app::Command::Kind::kExport:
        mgpu::train::run_export(cmd.export_weights, cmd.export_to, std::cout);
        return 0;
      case mgpu::app::Command::Kind::kPlot:
        mgpu::train::plot_from_csv(cmd.plot_csv, cmd.plot_output);
        std::cout << "plot: " << cmd.plot_output << "\n";
        return 0;
    }
  } catch (const mgpu::train::StopRequested& e) {
    std::cerr << "mgpu: " << e.what() << "\n";
    return mgpu::train::kExitStopped;
  } catch (const mgpu::data::InputError& e) {
    std::cerr << "mgpu: error: " << e.what() << "\n";
    return 2;
  } catch (const c10::Error& e) {
    std::cerr << "mgpu: error: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "mgpu: error: " << e.what() << "\n";
    return 1;
  }
  return 1;
}
