// Nodes on one machine (scripts/nodes.sh): network namespaces joined by a switch, with links of
// their own; mgpu's processes on two nodes, started by hand and by torchrun, train the model
// that one process's replicas train, bit for bit (failures: test_nodes_failures.cpp). Needs
// root; skips, saying why, without it.
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <csignal>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "Fixtures.h"
#include "Nodes.h"

namespace fs = std::filesystem;
using mgpu::testing::TempDir;
using namespace mgpu::testing::nodes;
using mgpu::testing::read_text;

TEST(Nodes, TheScriptSaysWhyItCannotRunWithoutRoot) {
  TempDir tmp;
  const auto r = shell("setpriv --reuid=65534 --regid=65534 --clear-groups bash " +
                           nodes_script() + " --check",
                       tmp.path() / "log");
  if (r.output.find("setpriv") != std::string::npos) GTEST_SKIP() << r.output;
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("nodes.sh: cannot make network namespaces here: it needs root"),
            std::string::npos)
      << r.output;
}

// Three nodes, each link shaped: every node reaches every other at its own address; 4 MiB
// over a 20 Mbit/s link take at least 1.5 s of its 1.68 s (the shaper lets a burst of 32 KB
// through at once); the command's status is the script's; and
// afterwards no namespace or interface of the run is left.
TEST(Nodes, NodesReachEachOtherOverTheirShapedLinksAndAreRemovedAfterwards) {
  SKIP_WITHOUT_NODES();
  TempDir tmp;
  const std::string before = namespaces_and_links();
  // The receiver times the bytes from the first to the last (the sender's buffers and the
  // shaper's queue let it finish early).
  const std::string receive =
      "import socket,sys,time\n"
      "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
      "s.bind((sys.argv[1],5000)); s.listen(1); c,_=s.accept(); n=0; t=None\n"
      "while True:\n  d=c.recv(1<<20)\n  t=t or time.time()\n  n+=len(d)\n  if not d: break\n"
      "print('received',n); print('seconds %.2f'%(time.time()-t))\n";
  const std::string send =
      "import socket,sys\n"
      "s=socket.create_connection((sys.argv[1],5000)); s.sendall(b'x'*(4<<20)); s.close()\n";
  std::ofstream(tmp.path() / "receive.py") << receive;
  std::ofstream(tmp.path() / "send.py") << send;
  const std::string body = fmt::format(
      "echo \"nodes $MGPU_NODES: $MGPU_NODE_NS_0 $MGPU_NODE_NS_1 $MGPU_NODE_NS_2\"\n"
      "for to in 0 1 2; do from=$(( (to + 1) % 3 ))\n"
      "  eval ns_to=\\$MGPU_NODE_NS_$to ns_from=\\$MGPU_NODE_NS_$from addr=\\$MGPU_NODE_ADDR_$to\n"
      "  ip netns exec $ns_to python3 {0}/receive.py $addr &\n"
      "  sleep 0.5\n"
      "  ip netns exec $ns_from python3 {0}/send.py $addr || exit 1\n"
      "  wait $! || exit 1\n"
      "done\nexit 7\n",
      tmp.path().string());
  const auto r = on_nodes(tmp.path(), "--nodes 3 --rate 20mbit", body);
  EXPECT_EQ(r.code, 7) << r.output;
  int received = 0;
  std::istringstream lines(r.output);
  for (std::string line; std::getline(lines, line);) {
    if (line == "received 4194304") ++received;
    if (line.rfind("seconds ", 0) == 0) {
      EXPECT_GE(std::stod(line.substr(8)), 1.5) << r.output;
    }
  }
  EXPECT_EQ(received, 3) << r.output;
  EXPECT_EQ(namespaces_and_links(), before);
}

// SIGTERM while the command runs: the command and what runs on the nodes end, the namespaces
// go, and the script exits 143 at once. Two runs at the same time do not collide.
TEST(Nodes, ASignalEndsTheRunAndRemovesItsNodesAndTwoRunsAtOnceDoNotCollide) {
  SKIP_WITHOUT_NODES();
  TempDir tmp;
  const std::string before = namespaces_and_links();
  std::ofstream(tmp.path() / "body.sh")
      << "ip netns exec $MGPU_NODE_NS_1 sleep 300 &\necho up > " << (tmp.path() / "up").string()
      << "\nwait\n";
  const std::string start = fmt::format(
      "bash {0} -- bash {1}/body.sh > {1}/a.log 2>&1 & echo $! > {1}/a.pid; "
      "bash {0} -- bash -c 'echo $MGPU_NODE_NS_0' > {1}/b.log 2>&1; echo $? > {1}/b.code",
      nodes_script(), tmp.path().string());
  ASSERT_EQ(std::system(start.c_str()), 0);
  for (int i = 0; i < 100 && !fs::exists(tmp.path() / "up"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(fs::exists(tmp.path() / "up")) << read_text(tmp.path() / "a.log");
  EXPECT_EQ(read_text(tmp.path() / "b.code"), "0\n") << read_text(tmp.path() / "b.log");
  const int pid = std::stoi(read_text(tmp.path() / "a.pid"));
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  // The script is not our child (the shell above started it): wait for it to be gone.
  while (kill(pid, 0) == 0 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_NE(kill(pid, 0), 0) << "nodes.sh still runs 20 s after SIGTERM";
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  EXPECT_EQ(namespaces_and_links(), before);
}

// mgpu's processes across two nodes, with the shipped models (MiniGoogLeNet with its dropout,
// ResNet-20), overlapped and not: 2 nodes x 1 process give the weights of one process's 2
// replicas and of one replica accumulating 2; 2 nodes x 2 processes those of 4 replicas, of 4
// micro-batches and of 4 processes on the loopback interface. Gloo finds each node's interface
// from the route to MASTER_ADDR (no GLOO_SOCKET_IFNAME).
class AcrossNodes : public ::testing::TestWithParam<const char*> {};

TEST_P(AcrossNodes, RanksOnTwoNodesTrainWhatOneProcesssReplicasTrainBitForBit) {
  SKIP_WITHOUT_NODES();
  TempDir tmp;
  mgpu::testing::write_cifar_dir(tmp.path() / "data", 20);
  const std::string common = fmt::format(
      "{} train --gpus 0 --threads 1 --model {} --dataset cifar10 --no-download --data-dir {} "
      "--epochs 1 --limit-train 64 --limit-test 16 --batch-per-device 8 --verbose 0 --seed 5 "
      "--comm-timeout 60 --bucket-mb 0.05",
      mgpu::testing::kMgpuBinary, GetParam(), (tmp.path() / "data").string());
  auto one_process = [&](const std::string& name, const std::string& flags) {
    const auto dir = tmp.path() / name;
    const auto r = shell(common + " " + flags + " --out-dir " + dir.string(), tmp.path() / "log");
    EXPECT_EQ(r.code, 0) << name << ": " << r.output;
    return dir / "model.pt";
  };
  auto across = [&](const std::string& name, int world, int per_node, const std::string& flags) {
    const auto dir = tmp.path() / name;
    fs::create_directories(dir);
    const auto r = on_nodes(dir, "", ranks_on_nodes(common + " " + flags, world, per_node, dir));
    EXPECT_EQ(r.code, 0) << name << ": " << r.output;
    EXPECT_FALSE(fs::exists(dir / "node1" / "model.pt")) << "only rank 0 writes";
    return dir / "node0" / "model.pt";
  };
  const auto two = one_process("replicas-2", "--cpu-replicas 2");
  EXPECT_TRUE(same_weights(two, one_process("accumulate-2", "--accumulate 2")));
  EXPECT_TRUE(same_weights(two, across("nodes-2x1", 2, 1, "")));
  EXPECT_TRUE(same_weights(two, across("nodes-2x1-no-overlap", 2, 1, "--no-overlap")));

  const auto four = one_process("replicas-4", "--cpu-replicas 4");
  EXPECT_TRUE(same_weights(four, one_process("accumulate-4", "--accumulate 4")));
  EXPECT_TRUE(same_weights(four, across("nodes-2x2", 4, 2, "")));
  EXPECT_TRUE(same_weights(four, across("nodes-2x2-no-overlap", 4, 2, "--no-overlap")));
  // The same 4 processes on this machine's loopback interface.
  const auto loopback = tmp.path() / "loopback-4";
  const std::string env = fmt::format("WORLD_SIZE=4 MASTER_ADDR=127.0.0.1 MASTER_PORT={}",
                                      mgpu::testing::free_port());
  std::string four_processes;
  for (int rank = 3; rank >= 0; --rank) {
    four_processes += fmt::format("RANK={} {} {} --out-dir {} > {}/rank{}.log 2>&1{}", rank, env,
                                  common, loopback.string(), tmp.path().string(), rank,
                                  rank > 0 ? " & " : "; wait");
  }
  ASSERT_EQ(std::system(four_processes.c_str()), 0) << read_text(tmp.path() / "rank0.log");
  EXPECT_TRUE(same_weights(four, loopback / "model.pt"));
}

INSTANTIATE_TEST_SUITE_P(ShippedModels, AcrossNodes, ::testing::Values("minigooglenet", "resnet20"));

// torchrun on each node, `--nnodes 2 --nproc-per-node 2 --node-rank R`, with the static
// rendezvous (MASTER_ADDR/PORT) and with c10d's: the job's weights are those of 4 replicas.
// `--local-addr`: the node's own address, which torchrun gives the other node (in the
// namespaces every node has this machine's hostname); `--rdzv-conf is_host=1` on node 0:
// torchrun looks for the endpoint among the hostname's addresses only (not a second
// interface's) to decide which node hosts c10d's store.
TEST(AcrossNodesTorchrun, StaticAndC10dRendezvousTrainWhatFourReplicasTrainBitForBit) {
  SKIP_WITHOUT_NODES();
  TempDir tmp;
  mgpu::testing::write_cifar_dir(tmp.path() / "data", 20);
  const std::string args = fmt::format(
      "train --gpus 0 --threads 1 --model minigooglenet --dataset cifar10 --no-download "
      "--data-dir {} --epochs 1 --limit-train 64 --limit-test 16 --batch-per-device 8 "
      "--verbose 2 --seed 5 --comm-timeout 60",
      (tmp.path() / "data").string());
  const auto four = tmp.path() / "replicas-4";
  ASSERT_EQ(shell(fmt::format("{} {} --cpu-replicas 4 --out-dir {}", mgpu::testing::kMgpuBinary,
                              args, four.string()),
                  tmp.path() / "log")
                .code,
            0)
      << read_text(tmp.path() / "log");
  for (const std::string rendezvous :
       {"--master-addr $MGPU_NODE_ADDR_0 --master-port 29500",
        "--rdzv-backend c10d --rdzv-endpoint $MGPU_NODE_ADDR_0:29400 --rdzv-id job "
        "--rdzv-conf is_host=$((NODE == 0))"}) {
    const auto dir = tmp.path() / (rendezvous[2] == 'm' ? "static" : "c10d");
    fs::create_directories(dir);
    std::string body;
    for (int node = 1; node >= 0; --node) {
      body += fmt::format(
          "NODE={0}; ip netns exec $MGPU_NODE_NS_{0} {1} -m torch.distributed.run --nnodes 2 "
          "--nproc-per-node 2 --node-rank {0} {2} --local-addr $MGPU_NODE_ADDR_{0} --no-python "
          "{3} {4} --out-dir {5}/node{0} > {5}/node{0}.log 2>&1{6}\n",
          node, mgpu::testing::kPython, rendezvous, mgpu::testing::kMgpuBinary, args,
          dir.string(), node == 1 ? " &" : " || { cat " + dir.string() + "/node0.log; exit 1; }");
    }
    body += "wait $! || { cat " + dir.string() + "/node1.log; exit 1; }\n";
    const auto r = on_nodes(dir, "", body);
    ASSERT_EQ(r.code, 0) << rendezvous << ": " << r.output;
    // The static rendezvous puts rank 0 on node 0; c10d's on whichever node it orders first.
    const int first = fs::exists(dir / "node0" / "model.pt") ? 0 : 1;
    const std::string log = read_text(dir / fmt::format("node{}.log", first));
    EXPECT_NE(log.find("processes: 4 (torchrun), this is rank 0"), std::string::npos) << log;
    EXPECT_FALSE(fs::exists(dir / fmt::format("node{}", 1 - first) / "model.pt"));
    if (rendezvous[2] == 'm') {
      EXPECT_EQ(first, 0);
    }
    EXPECT_TRUE(same_weights(four / "model.pt", dir / fmt::format("node{}", first) / "model.pt"))
        << rendezvous;
  }
}

// docs/multi-gpu.md's example of two nodes behind a 200 Mbit/s link, run as it is written there
// (from a folder with the project's scripts/ and build/mgpu; as root, so without `sudo`).
TEST(MultiGpuDoc, TheTwoNodeExampleRunsAsShown) {
  SKIP_WITHOUT_NODES();
  if (!fs::exists("/usr/share/datasets/fashion-mnist")) {
    GTEST_SKIP() << "the example trains on /usr/share/datasets/fashion-mnist, absent here";
  }
  const std::string doc =
      read_text(fs::path(mgpu::testing::kSourceDir) / "docs" / "multi-gpu.md");
  const auto begin = doc.find("    sudo scripts/nodes.sh --nodes 2 --rate 200mbit");
  ASSERT_NE(begin, std::string::npos) << "the example is gone from docs/multi-gpu.md";
  const auto end = doc.find("wait -n && wait -n'\n", begin);
  ASSERT_NE(end, std::string::npos);
  std::string block;
  std::istringstream lines(doc.substr(begin, end + 19 - begin));
  for (std::string line; std::getline(lines, line);) block += line.substr(4) + "\n";
  block = block.substr(std::string("sudo ").size());
  TempDir tmp;
  fs::create_directories(tmp.path() / "build");
  fs::create_symlink(fs::path(mgpu::testing::kSourceDir) / "scripts", tmp.path() / "scripts");
  fs::create_symlink(mgpu::testing::kMgpuBinary, tmp.path() / "build" / "mgpu");
  std::ofstream(tmp.path() / "example.sh") << block;
  const auto r = shell("cd " + tmp.path().string() + " && bash example.sh", tmp.path() / "log");
  EXPECT_EQ(r.code, 0) << block << r.output;
  EXPECT_TRUE(fs::exists(tmp.path() / "runs" / "node0" / "model.pt")) << r.output;
  EXPECT_FALSE(fs::exists(tmp.path() / "runs" / "node1" / "model.pt")) << r.output;
}
