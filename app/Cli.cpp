// The command table and the dispatch from argv[1] to a command's flags.
#include "app/Cli.h"

#include <fmt/core.h>

#include "app/commands/Flags.h"  // defines: parse
#include "data/InputError.h"     // defines: InputError
#include "train/Signals.h"       // defines: kExitStopped, kExitInterrupted

namespace mgpu::app {

const std::vector<CommandSpec>& command_table() {
  static const std::vector<CommandSpec> table = {
#define MGPU_COMMAND(name, spec) spec(),
#include "app/commands/Commands.def"
#undef MGPU_COMMAND
  };
  return table;
}

namespace {

Command help_command(std::string text) {
  Command c;
  c.name = "help";
  c.help = std::move(text);
  return c;
}

}  // namespace

std::string top_help() {
  std::string text =
      "mgpu: data-parallel CNN training with LibTorch (MiniGoogLeNet on CIFAR-10,\n"
      "after the PyImageSearch multi-GPU Keras tutorial).\n\nUsage:\n";
  for (const auto& spec : command_table()) text += spec.usage;
  text +=
      "  mgpu help | --help                   this text; `mgpu COMMAND --help` explains each flag\n"
      + fmt::format(
            "\nExit codes:\n"
            "  0    success\n"
            "  1    failure while running\n"
            "  2    bad usage or input\n"
            "  {:<4} mgpu train stopped by SIGINT, SIGTERM or SIGUSR1 after writing a checkpoint\n"
            "       (continue with --resume auto and the same --out-dir)\n"
            "  {:<4} a second SIGINT: stopped at once, without a checkpoint\n",
            train::kExitStopped, train::kExitInterrupted);
  return text;
}

Command parse_command_line(const std::vector<std::string>& args) {
  if (args.size() < 2 || args[1] == "help" || args[1] == "--help" || args[1] == "-h") {
    return help_command(top_help());
  }
  const std::string& name = args[1];
  const std::vector<std::string> rest(args.begin() + 1, args.end());  // rest[0] plays argv[0]
  std::string names;
  for (const auto& spec : command_table()) {
    names += fmt::format("{}{}", names.empty() ? "" : ", ", spec.name);
    if (name != spec.name) continue;
    auto options = spec.options();
    const auto r = parse(options, rest);
    if (r.count("help")) return help_command(options.help());
    if (!spec.expand) return spec.parse(r);
    auto full_options = spec.options();
    return spec.parse(parse(full_options, spec.expand(r, rest)));
  }
  throw data::InputError(fmt::format("unknown command '{}' (expected {} or help)", name, names));
}

}  // namespace mgpu::app
