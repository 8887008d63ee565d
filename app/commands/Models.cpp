// mgpu models: the models --model can name, with their parameter counts.
#include <ostream>

#include "app/commands/Command.h"  // defines: CommandSpec, make_command
#include "models/Registry.h"       // defines: models_table, ModelShape

namespace mgpu::app {

namespace {

cxxopts::Options models_options() {
  cxxopts::Options o("mgpu models", "List the models mgpu train --model can name.");
  o.add_options()("h,help", "show this help");
  return o;
}

}  // namespace

CommandSpec models_command() {
  return {"models", "  mgpu models                          the models --model can name, with parameter counts\n",
          models_options, [](const cxxopts::ParseResult&) {
            return make_command("models", models::ModelShape{},
                                [](const models::ModelShape& shape, std::ostream& out) {
                                  out << models::models_table(shape);
                                });
          }};
}

}  // namespace mgpu::app
