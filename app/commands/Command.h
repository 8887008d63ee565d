// A subcommand of mgpu (train, bench, ...): its name, its lines in `mgpu help`, its flags, and
// what it runs. Each command's file defines one CommandSpec; Commands.def lists them.
#pragma once

#include <any>
#include <cxxopts.hpp>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

namespace mgpu::app {

/// What a command line asks for: help text to print, or a command to run.
struct Command {
  std::string name;  // "train", "bench", ...; "help" when only help is to be printed
  std::string help;  // the text to print (help, or COMMAND --help)
  std::any config;   // the command's parsed flags: train::TrainConfig for train, ...
  std::function<void(std::ostream&)> run;  // runs the command with config; empty for help

  bool is_help() const { return !run; }
  /// The parsed flags as the command's own config type (std::bad_any_cast for another type).
  template <typename Config>
  const Config& as() const {
    return std::any_cast<const Config&>(config);
  }
};

/// One entry of the command table.
struct CommandSpec {
  const char* name;
  const char* usage;                              // its lines in `mgpu help`
  cxxopts::Options (*options)();                  // its flags
  Command (*parse)(const cxxopts::ParseResult&);  // the parsed flags, checked, to a Command
  /// If set: the command line to parse instead, given the first parse of args (args[0] plays
  /// argv[0]); train puts the model's recipe before the flags the user gave.
  std::vector<std::string> (*expand)(const cxxopts::ParseResult&,
                                     const std::vector<std::string>& args) = nullptr;
};

/// A Command that runs fn(config, out).
template <typename Config, typename Fn>
Command make_command(const char* name, Config config, Fn fn) {
  Command c;
  c.name = name;
  c.run = [config, fn](std::ostream& out) { fn(config, out); };
  c.config = std::move(config);
  return c;
}

// One function per command, each defined in its own file: app/commands/<Name>.cpp.
#define MGPU_COMMAND(name, spec) CommandSpec spec();
#include "app/commands/Commands.def"
#undef MGPU_COMMAND

}  // namespace mgpu::app
