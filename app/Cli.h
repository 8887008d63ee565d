// The command line: finds the command (app/commands/Commands.def) and parses its flags.
#pragma once

#include <string>
#include <vector>

#include "app/commands/Command.h"  // defines: Command

namespace mgpu::app {

/// The commands, in the order of app/commands/Commands.def.
const std::vector<CommandSpec>& command_table();

/// `mgpu help`: what each command does, and the exit codes.
std::string top_help();

/// Parses argv (argv[0] is the program). Throws data::InputError with a message that names
/// the flag for unknown commands, unknown flags, wrong types and out-of-range values.
Command parse_command_line(const std::vector<std::string>& args);

}  // namespace mgpu::app
