// Launcher variables: parsed and cross-checked, every problem named.
#include "train/comm/Launcher.h"

#include <fmt/core.h>

#include <charconv>
#include <cstdlib>

#include "data/InputError.h"

namespace mgpu::train {

namespace {

using data::InputError;

int parse_int(const std::string& name, const std::string& text, int min) {
  int v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < min) {
    throw InputError(fmt::format("environment variable {}='{}': expected an integer >= {}", name,
                                 text, min));
  }
  return v;
}

class Env {
 public:
  explicit Env(const GetEnv& getenv) : getenv_(getenv) {}
  bool has(const std::string& name) const { return getenv_(name).has_value(); }
  std::optional<std::string> get(const std::string& name) const { return getenv_(name); }
  int require_int(const std::string& name, int min, const std::string& launcher) const {
    const auto v = getenv_(name);
    if (!v) throw InputError(fmt::format("{} launch: environment variable {} is missing", launcher, name));
    return parse_int(name, *v, min);
  }
  int int_or(const std::string& name, int min, int fallback) const {
    const auto v = getenv_(name);
    return v ? parse_int(name, *v, min) : fallback;
  }

 private:
  const GetEnv& getenv_;
};

}  // namespace

std::string first_slurm_host(const std::string& nodelist) {
  const auto comma = nodelist.find(',');
  const auto bracket = nodelist.find('[');
  if (bracket == std::string::npos || (comma != std::string::npos && comma < bracket)) {
    return nodelist.substr(0, comma);
  }
  // prefix[03-05,9]: the first number of the range keeps its zero padding.
  const std::string prefix = nodelist.substr(0, bracket);
  const auto end = nodelist.find_first_of("-,]", bracket + 1);
  if (end == std::string::npos || end == bracket + 1) {
    throw InputError(fmt::format("SLURM_JOB_NODELIST='{}': cannot read its first host", nodelist));
  }
  return prefix + nodelist.substr(bracket + 1, end - bracket - 1);
}

ProcessInfo read_launcher_env(const GetEnv& getenv) {
  const Env env(getenv);
  ProcessInfo p;
  if (env.has("RANK") || env.has("WORLD_SIZE")) {
    p.launcher = env.has("TORCHELASTIC_RUN_ID") ? "torchrun" : "RANK/WORLD_SIZE";
    p.rank = env.require_int("RANK", 0, p.launcher);
    p.world_size = env.require_int("WORLD_SIZE", 1, p.launcher);
    p.local_rank = env.int_or("LOCAL_RANK", 0, 0);
    p.local_world_size = env.int_or("LOCAL_WORLD_SIZE", 1, 1);
    p.agent_store = env.get("TORCHELASTIC_USE_AGENT_STORE") == std::optional<std::string>("True");
    p.restart = env.int_or("TORCHELASTIC_RESTART_COUNT", 0, 0);
  } else if (env.has("SLURM_PROCID")) {
    p.launcher = "slurm";
    p.rank = env.require_int("SLURM_PROCID", 0, p.launcher);
    p.world_size = env.require_int("SLURM_NTASKS", 1, p.launcher);
    p.local_rank = env.int_or("SLURM_LOCALID", 0, 0);
    // SLURM_NTASKS_PER_NODE may read "4" or "4(x2)"; the count before '(' is what we need.
    if (auto per_node = env.get("SLURM_NTASKS_PER_NODE")) {
      p.local_world_size =
          parse_int("SLURM_NTASKS_PER_NODE", per_node->substr(0, per_node->find('(')), 1);
    }
    if (auto nodes = env.get("SLURM_JOB_NODELIST")) p.master_addr = first_slurm_host(*nodes);
  } else if (env.has("OMPI_COMM_WORLD_RANK")) {
    p.launcher = "mpirun";
    p.rank = env.require_int("OMPI_COMM_WORLD_RANK", 0, p.launcher);
    p.world_size = env.require_int("OMPI_COMM_WORLD_SIZE", 1, p.launcher);
    p.local_rank = env.int_or("OMPI_COMM_WORLD_LOCAL_RANK", 0, 0);
    p.local_world_size = env.int_or("OMPI_COMM_WORLD_LOCAL_SIZE", 1, 1);
  }
  if (auto addr = env.get("MASTER_ADDR")) p.master_addr = *addr;
  p.master_port = env.int_or("MASTER_PORT", 1, p.master_port);
  if (p.master_port > 65535) {
    throw InputError(fmt::format("MASTER_PORT={}: expected a port from 1 to 65535", p.master_port));
  }
  if (p.rank >= p.world_size) {
    throw InputError(fmt::format("{} launch: rank {} is not below the world size {}", p.launcher,
                                 p.rank, p.world_size));
  }
  if (p.local_rank >= p.local_world_size) {
    throw InputError(fmt::format("{} launch: local rank {} is not below the local world size {}",
                                 p.launcher, p.local_rank, p.local_world_size));
  }
  if (p.world_size > 1 && p.master_addr.empty()) {
    throw InputError(fmt::format(
        "{} launch with {} processes: MASTER_ADDR is not set (the host where rank 0 listens)",
        p.launcher, p.world_size));
  }
  if (p.world_size == 1 && p.master_addr.empty()) p.master_addr = "127.0.0.1";
  return p;
}

ProcessInfo read_launcher_env() {
  return read_launcher_env([](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    return v ? std::optional<std::string>(v) : std::nullopt;
  });
}

}  // namespace mgpu::train
