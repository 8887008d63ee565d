// Launcher variables of torchrun, Slurm and Open MPI.
#include <gtest/gtest.h>

#include <map>

#include "Fixtures.h"
#include "train/comm/Launcher.h"

using namespace mgpu::train;
using mgpu::testing::error_of;

namespace {

GetEnv env(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    const auto it = vars.find(name);
    return it == vars.end() ? std::nullopt : std::optional<std::string>(it->second);
  };
}

}  // namespace

TEST(Launcher, NoLauncherIsOneProcess) {
  const auto p = read_launcher_env(env({}));
  EXPECT_EQ(p.launcher, "none");
  EXPECT_EQ(p.world_size, 1);
  EXPECT_EQ(p.rank, 0);
  EXPECT_EQ(p.master_addr, "127.0.0.1");
}

TEST(Launcher, Torchrun) {
  const auto p = read_launcher_env(env({{"RANK", "5"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"},
                                        {"LOCAL_WORLD_SIZE", "4"}, {"MASTER_ADDR", "node7"},
                                        {"MASTER_PORT", "1234"}, {"TORCHELASTIC_RUN_ID", "j1"},
                                        {"TORCHELASTIC_RESTART_COUNT", "2"}}));
  EXPECT_EQ(p.launcher, "torchrun");
  EXPECT_EQ(p.restart, 2);
  EXPECT_EQ(p.rank, 5);
  EXPECT_EQ(p.world_size, 8);
  EXPECT_EQ(p.local_rank, 1);
  EXPECT_EQ(p.local_world_size, 4);
  EXPECT_EQ(p.master_addr, "node7");
  EXPECT_EQ(p.master_port, 1234);
}

// RANK and WORLD_SIZE set by hand (or by a script) are not torchrun's doing: named as they are.
TEST(Launcher, RankAndWorldSizeByHandAreNotCalledTorchrun) {
  const auto p = read_launcher_env(
      env({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}}));
  EXPECT_EQ(p.launcher, "RANK/WORLD_SIZE");
  EXPECT_EQ(p.rank, 1);
  EXPECT_EQ(p.restart, 0);
}

TEST(Launcher, Slurm) {
  const auto p = read_launcher_env(env({{"SLURM_PROCID", "6"}, {"SLURM_NTASKS", "8"},
                                        {"SLURM_LOCALID", "2"}, {"SLURM_NTASKS_PER_NODE", "4(x2)"},
                                        {"SLURM_JOB_NODELIST", "gpu[03-04]"}}));
  EXPECT_EQ(p.launcher, "slurm");
  EXPECT_EQ(p.rank, 6);
  EXPECT_EQ(p.world_size, 8);
  EXPECT_EQ(p.local_rank, 2);
  EXPECT_EQ(p.local_world_size, 4);
  EXPECT_EQ(p.master_addr, "gpu03");
  EXPECT_EQ(p.master_port, 29500);
}

TEST(Launcher, SlurmNodeLists) {
  EXPECT_EQ(first_slurm_host("node1"), "node1");
  EXPECT_EQ(first_slurm_host("a1,b2"), "a1");
  EXPECT_EQ(first_slurm_host("gpu[003-010,12],cpu[1-2]"), "gpu003");
  EXPECT_EQ(first_slurm_host("n[7,9]"), "n7");
  EXPECT_EQ(first_slurm_host("x1,gpu[2-3]"), "x1");
}

TEST(Launcher, OpenMpi) {
  const auto p = read_launcher_env(env({{"OMPI_COMM_WORLD_RANK", "3"}, {"OMPI_COMM_WORLD_SIZE", "4"},
                                        {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                                        {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"},
                                        {"MASTER_ADDR", "10.1.2.3"}}));
  EXPECT_EQ(p.launcher, "mpirun");
  EXPECT_EQ(p.rank, 3);
  EXPECT_EQ(p.world_size, 4);
  EXPECT_EQ(p.local_rank, 1);
  EXPECT_EQ(p.local_world_size, 2);
  EXPECT_EQ(p.master_addr, "10.1.2.3");
}

TEST(Launcher, MissingOrInconsistentVariablesAreNamed) {
  const std::vector<std::pair<std::map<std::string, std::string>, std::string>> cases = {
      {{{"RANK", "0"}}, "WORLD_SIZE is missing"},
      {{{"RANK", "x"}, {"WORLD_SIZE", "2"}}, "RANK='x'"},
      {{{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}}, "rank 2 is not below the world size 2"},
      {{{"RANK", "0"}, {"WORLD_SIZE", "2"}}, "MASTER_ADDR is not set"},
      {{{"RANK", "0"}, {"WORLD_SIZE", "0"}}, "WORLD_SIZE='0'"},
      {{{"RANK", "0"}, {"WORLD_SIZE", "1"}, {"MASTER_PORT", "70000"}}, "MASTER_PORT=70000"},
      {{{"RANK", "0"}, {"WORLD_SIZE", "1"}, {"LOCAL_RANK", "1"}}, "local rank 1"},
      {{{"SLURM_PROCID", "0"}}, "SLURM_NTASKS is missing"},
      {{{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "2"}}, "MASTER_ADDR is not set"},
  };
  for (const auto& [vars, needle] : cases) {
    const auto msg = error_of([&] { read_launcher_env(env(vars)); });
    EXPECT_NE(msg.find(needle), std::string::npos) << "expected '" << needle << "', got '" << msg << "'";
  }
}
