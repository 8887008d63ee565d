// Helpers of the tests that run mgpu on nodes of this machine (scripts/nodes.sh: network
// namespaces joined by a switch): a shell with its output, the skip without root, a body run
// under nodes.sh, ranks started on nodes, weights compared from their files.
#pragma once

#include <fmt/core.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "Fixtures.h"
#include "train/files/Weights.h"

namespace mgpu::testing::nodes {

struct Shell {
  int code;
  std::string output;  // standard output and error together
};

inline Shell shell(const std::string& command, const std::filesystem::path& log) {
  const int status = std::system((command + " > " + log.string() + " 2>&1").c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_text(log)};
}

inline std::string nodes_script() {
  return std::string(mgpu::testing::kSourceDir) + "/scripts/nodes.sh";
}

// "" where scripts/nodes.sh can make namespaces here, else its reason.
inline std::string why_no_nodes() {
  TempDir tmp;
  const auto r = shell("bash " + nodes_script() + " --check --rate 1mbit", tmp.path() / "log");
  return r.code == 0 ? "" : r.output;
}

#define SKIP_WITHOUT_NODES()                             \
  do {                                                   \
    if (const auto why = why_no_nodes(); !why.empty()) { \
      GTEST_SKIP() << why;                               \
    }                                                    \
  } while (0)

// Runs `body` (bash) under scripts/nodes.sh with `flags`; its output goes to dir/nodes.log.
inline Shell on_nodes(const std::filesystem::path& dir, const std::string& flags,
                      const std::string& body) {
  std::ofstream(dir / "body.sh") << "set -u\n" << body;
  return shell(
      fmt::format("bash {} {} -- bash {}", nodes_script(), flags, (dir / "body.sh").string()),
      dir / "nodes.log");
}

// bash that starts `world` ranks of `command`, `per_node` on each node in turn (mgpu's own
// variables: RANK, WORLD_SIZE, MASTER_ADDR at node 0), each node writing to out/node<i>, and
// exits 1 if any rank failed (printing that rank's log).
inline std::string ranks_on_nodes(const std::string& command, int world, int per_node,
                                  const std::filesystem::path& out) {
  std::string body = "pids=()\n";
  for (int rank = 0; rank < world; ++rank) {
    const int node = rank / per_node;
    body += fmt::format(
        "ip netns exec \"$MGPU_NODE_NS_{0}\" env RANK={1} WORLD_SIZE={2} "
        "MASTER_ADDR=\"$MGPU_NODE_ADDR_0\" MASTER_PORT=29500 {3} --out-dir {4}/node{0} "
        "> {4}/rank{1}.log 2>&1 &\npids+=($!)\n",
        node, rank, world, command, out.string());
  }
  body += fmt::format(
      "status=0\nfor i in \"${{!pids[@]}}\"; do\n"
      "  wait \"${{pids[$i]}}\" || {{ status=1; echo \"rank $i failed:\"; cat {}/rank$i.log; }}\n"
      "done\nexit $status\n",
      out.string());
  return body;
}

inline bool same_weights(const std::filesystem::path& a, const std::filesystem::path& b) {
  auto x = mgpu::train::load_weights(a, torch::kCPU), y = mgpu::train::load_weights(b, torch::kCPU);
  return mgpu::testing::same_weights(*x.module.ptr(), *y.module.ptr());
}

// The names of this machine's namespaces and its own interfaces, to see that nothing is left.
inline std::string namespaces_and_links() {
  TempDir tmp;
  return shell("ip netns list; ip -br link", tmp.path() / "log").output;
}

}  // namespace mgpu::testing::nodes
