// Where this process stands in a multi-process job, read from the variables that torchrun,
// Slurm and Open MPI's mpirun set.
#pragma once

#include <functional>
#include <optional>
#include <string>

namespace mgpu::train {

struct ProcessInfo {
  std::string launcher = "none";  // "none", "torchrun", "RANK/WORLD_SIZE" (by hand), "slurm"
                                  // or "mpirun"
  int rank = 0;                   // this process among all processes
  int world_size = 1;             // number of processes
  int local_rank = 0;             // this process among those on its node
  int local_world_size = 1;
  std::string master_addr;        // where rank 0's store listens
  int master_port = 29500;
  bool agent_store = false;  // torchrun's agent hosts the store (TORCHELASTIC_USE_AGENT_STORE)
  int restart = 0;           // torchrun's restarts of the job so far (TORCHELASTIC_RESTART_COUNT)
};

using GetEnv = std::function<std::optional<std::string>(const std::string&)>;

/// Reads torchrun's RANK / WORLD_SIZE (a launch by hand that sets them without torchrun's
/// TORCHELASTIC_RUN_ID is called "RANK/WORLD_SIZE", not "torchrun") / LOCAL_RANK / LOCAL_WORLD_SIZE / MASTER_ADDR /
/// MASTER_PORT, else Slurm's SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID /
/// SLURM_NTASKS_PER_NODE and the first host of SLURM_JOB_NODELIST, else Open MPI's
/// OMPI_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK / _LOCAL_SIZE (with MASTER_ADDR from the
/// environment). MASTER_ADDR and MASTER_PORT override what a launcher implies. No launcher:
/// one process. Throws data::InputError naming the variable when one is malformed, missing or
/// inconsistent.
ProcessInfo read_launcher_env(const GetEnv& getenv);
ProcessInfo read_launcher_env();  // from the process environment

/// The first host of a Slurm node list: "gpu[03-05,9],cpu1" -> "gpu03".
std::string first_slurm_host(const std::string& nodelist);

}  // namespace mgpu::train
