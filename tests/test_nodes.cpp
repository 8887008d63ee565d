// Nodes on one machine (scripts/nodes.sh): network namespaces joined by a switch, with links of
// their own; mgpu's processes on two nodes, started by hand and by torchrun, train the model
// that one process's replicas train, bit for bit. Needs root; skips, saying why, without it.
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
#include "train/files/Weights.h"

namespace fs = std::filesystem;
using mgpu::testing::TempDir;

namespace {

std::string read_text(const fs::path& file) {
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

struct Shell {
  int code;
  std::string output;  // standard output and error together
};

Shell shell(const std::string& command, const fs::path& log) {
  const int status = std::system((command + " > " + log.string() + " 2>&1").c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_text(log)};
}

std::string nodes_script() { return std::string(mgpu::testing::kSourceDir) + "/scripts/nodes.sh"; }

// "" where scripts/nodes.sh can make namespaces here, else its reason.
std::string why_no_nodes() {
  TempDir tmp;
  const auto r = shell("bash " + nodes_script() + " --check --rate 1mbit", tmp.path() / "log");
  return r.code == 0 ? "" : r.output;
}

#define SKIP_WITHOUT_NODES()                                \
  do {                                                      \
    if (const auto why = why_no_nodes(); !why.empty()) {    \
      GTEST_SKIP() << why;                                  \
    }                                                       \
  } while (0)

// Runs `body` (bash) under scripts/nodes.sh with `flags`; its output goes to dir/nodes.log.
Shell on_nodes(const fs::path& dir, const std::string& flags, const std::string& body) {
  std::ofstream(dir / "body.sh") << "set -u\n" << body;
  return shell(fmt::format("bash {} {} -- bash {}", nodes_script(), flags,
                           (dir / "body.sh").string()),
               dir / "nodes.log");
}

// bash that starts `world` ranks of `command`, `per_node` on each node in turn (mgpu's own
// variables: RANK, WORLD_SIZE, MASTER_ADDR at node 0), each node writing to out/node<i>, and
// exits 1 if any rank failed (printing that rank's log).
std::string ranks_on_nodes(const std::string& command, int world, int per_node,
                           const fs::path& out) {
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

bool same_weights(const fs::path& a, const fs::path& b) {
  auto x = mgpu::train::load_weights(a, torch::kCPU), y = mgpu::train::load_weights(b, torch::kCPU);
  return mgpu::testing::same_weights(*x.module.ptr(), *y.module.ptr());
}

// The names of this machine's namespaces and its own interfaces, to see that nothing is left.
std::string namespaces_and_links() {
  TempDir tmp;
  return shell("ip netns list; ip -br link", tmp.path() / "log").output;
}

}  // namespace

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

namespace {

// Two ranks of `args` across two nodes, each node with its own --out-dir (dir/node<i>: no
// shared folder), rank r's exit code and the time it ended (s since the epoch) written to
// dir/rank<r>.end. `during` (bash) runs while they train, then both are waited for.
std::string two_ranks(const std::string& args, const fs::path& dir, const std::string& during) {
  std::string body = "rm -f " + dir.string() + "/rank*.end\n";
  for (int rank = 1; rank >= 0; --rank) {
    body += fmt::format(
        "( RANK={0} WORLD_SIZE=2 MASTER_ADDR=$MGPU_NODE_ADDR_0 MASTER_PORT=29500 {1} --on {0} "
        "-- {2} {3} --out-dir {4}/node{0} > {4}/rank{0}.log 2>&1; "
        "echo \"$? $(date +%s.%N)\" > {4}/rank{0}.end ) &\n",
        rank, nodes_script(), mgpu::testing::kMgpuBinary, args, dir.string());
  }
  return body + during + "\nwait\n";
}

// bash: waits (up to 120 s) until `file` holds `text`.
std::string wait_for_text(const fs::path& file, const std::string& text) {
  return fmt::format(
      "for i in $(seq 1200); do grep -q '{}' {} 2> /dev/null && break; sleep 0.1; done\n", text,
      file.string());
}

struct End {
  int code;
  double time;
};

End end_of(const fs::path& file) {
  std::istringstream in(read_text(file));
  End end{-1, 0};
  in >> end.code >> end.time;
  return end;
}

std::string failure_args(const fs::path& data, double timeout_s) {
  return fmt::format(
      "train --gpus 0 --threads 1 --model minigooglenet --dataset cifar10 --no-download "
      "--data-dir {} --epochs 2 --limit-train 256 --limit-test 32 --batch-per-device 8 "
      "--verbose 1 --seed 5 --checkpoint-every 4 --comm-timeout {}",
      data.string(), timeout_s);
}

// The weights `mgpu train ARGS --cpu-replicas 2` leaves: what two ranks train undisturbed.
fs::path uninterrupted(const std::string& args, const fs::path& dir) {
  const auto r = shell(fmt::format("{} {} --cpu-replicas 2 --verbose 0 --out-dir {}",
                                   mgpu::testing::kMgpuBinary, args, dir.string()),
                       dir.string() + ".log");
  EXPECT_EQ(r.code, 0) << r.output;
  return dir / "model.pt";
}

}  // namespace

// The link between the nodes cut in the second epoch for longer than --comm-timeout (8 s):
// both ranks exit 1 within 8 + 10 s of the cut, naming the operation and the peer; rank 0's
// newest checkpoint is intact. With the link back, `--resume auto` on both nodes, which share
// no folder: rank 0 sends its checkpoint to rank 1, and the job ends with the weights of the
// uninterrupted run, bit for bit, each epoch once in its history.
TEST(AcrossNodesFailures, ALinkCutPastTheTimeoutEndsBothRanksAndTheyResumeWithoutASharedFolder) {
  SKIP_WITHOUT_NODES();
  TempDir tmp;
  mgpu::testing::write_cifar_dir(tmp.path() / "data", 60);
  const std::string args = failure_args(tmp.path() / "data", 8);
  const auto dir = tmp.path() / "job";
  fs::create_directories(dir);
  const std::string cut =
      wait_for_text(dir / "rank0.log", "Epoch 2/2") +
      "sleep 1; echo \"cut $(date +%s.%N)\"; ip -n $MGPU_NODE_SWITCH_NS link set port1 down\n" +
      "for i in $(seq 400); do [ -e " + dir.string() + "/rank0.end ] && [ -e " + dir.string() +
      "/rank1.end ] && break; sleep 0.1; done\n" + "ip -n $MGPU_NODE_SWITCH_NS link set port1 up\n";
  const auto r = on_nodes(dir, "", two_ranks(args, dir, cut));
  ASSERT_EQ(r.code, 0) << r.output;
  const auto cut_at = r.output.find("cut ");
  ASSERT_NE(cut_at, std::string::npos) << r.output << read_text(dir / "rank0.log");
  const double cut_time = std::stod(r.output.substr(cut_at + 4));
  for (int rank = 0; rank < 2; ++rank) {
    const std::string log = read_text(dir / fmt::format("rank{}.log", rank));
    const End end = end_of(dir / fmt::format("rank{}.end", rank));
    EXPECT_EQ(end.code, 1) << log;
    EXPECT_LT(end.time - cut_time, 8 + 10) << log;
    EXPECT_NE(log.find(fmt::format("rank {}: Gloo all_reduce failed", rank)), std::string::npos)
        << log;
    EXPECT_NE(log.find(fmt::format("the peer: rank {} at 10.231.0.{}", 1 - rank, 2 - rank)),
              std::string::npos)
        << log;
  }
  for (const auto& entry : fs::directory_iterator(dir / "node0" / "checkpoints")) {
    EXPECT_EQ(entry.path().extension(), ".pt") << entry.path();  // no .tmp left behind
  }
  EXPECT_FALSE(fs::exists(dir / "node1" / "checkpoints"));

  const auto resumed = on_nodes(dir, "", two_ranks(args + " --resume auto", dir, ""));
  ASSERT_EQ(resumed.code, 0) << resumed.output;
  const std::string log = read_text(dir / "rank0.log");
  EXPECT_EQ(end_of(dir / "rank0.end").code, 0) << log;
  EXPECT_EQ(end_of(dir / "rank1.end").code, 0) << read_text(dir / "rank1.log");
  EXPECT_NE(log.find("of rank 0 sent to rank(s) 1, which lacked it"), std::string::npos) << log;
  EXPECT_TRUE(same_weights(uninterrupted(args, tmp.path() / "uninterrupted"),
                           dir / "node0" / "model.pt"));
  const std::string history = read_text(dir / "node0" / "history.csv");
  EXPECT_EQ(std::count(history.begin(), history.end(), '\n'), 3) << history;  // header, 1, 2
}

// The link down for 2 s, well inside --comm-timeout (60 s), in the first epoch: the run goes
// on and ends with the weights of the uninterrupted run.
TEST(AcrossNodesFailures, ALinkDownForTwoSecondsOnlyDelaysTheRun) {
  SKIP_WITHOUT_NODES();
  TempDir tmp;
  mgpu::testing::write_cifar_dir(tmp.path() / "data", 60);
  const std::string args = failure_args(tmp.path() / "data", 60);
  const auto dir = tmp.path() / "job";
  fs::create_directories(dir);
  const std::string blip = wait_for_text(dir / "rank0.log", " 4/16") +
                           "ip -n $MGPU_NODE_SWITCH_NS link set port1 down; sleep 2\n"
                           "ip -n $MGPU_NODE_SWITCH_NS link set port1 up\n";
  const auto r = on_nodes(dir, "", two_ranks(args, dir, blip));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(end_of(dir / "rank0.end").code, 0) << read_text(dir / "rank0.log");
  EXPECT_EQ(end_of(dir / "rank1.end").code, 0) << read_text(dir / "rank1.log");
  EXPECT_TRUE(same_weights(uninterrupted(args, tmp.path() / "uninterrupted"),
                           dir / "node0" / "model.pt"));
}

// Node 1's process killed (SIGKILL) in the second epoch: rank 0 exits 1 within the timeout,
// naming the lost peer, and its newest checkpoint is intact: the job resumed from it on both
// nodes ends as the uninterrupted run.
TEST(AcrossNodesFailures, ANodesProcessesKilledEndTheOtherNodesRanksNamingThem) {
  SKIP_WITHOUT_NODES();
  TempDir tmp;
  mgpu::testing::write_cifar_dir(tmp.path() / "data", 60);
  const std::string args = failure_args(tmp.path() / "data", 30);
  const auto dir = tmp.path() / "job";
  fs::create_directories(dir);
  const std::string kill = wait_for_text(dir / "rank0.log", "Epoch 2/2") +
                           "sleep 1; echo \"kill $(date +%s.%N)\"\n"
                           "ip netns pids $MGPU_NODE_NS_1 | xargs -r kill -9\n";
  const auto r = on_nodes(dir, "", two_ranks(args, dir, kill));
  ASSERT_EQ(r.code, 0) << r.output;
  const auto kill_at = r.output.find("kill ");
  ASSERT_NE(kill_at, std::string::npos) << r.output;
  const double kill_time = std::stod(r.output.substr(kill_at + 5));
  const std::string log = read_text(dir / "rank0.log");
  const End end = end_of(dir / "rank0.end");
  EXPECT_EQ(end.code, 1) << log;
  EXPECT_LT(end.time - kill_time, 30) << log;
  EXPECT_NE(log.find("rank 0: Gloo all_reduce failed"), std::string::npos) << log;
  EXPECT_NE(log.find("rank 1 at 10.231.0.2"), std::string::npos) << log;
  EXPECT_NE(end_of(dir / "rank1.end").code, 0);  // killed

  const auto resumed = on_nodes(dir, "", two_ranks(args + " --resume auto", dir, ""));
  ASSERT_EQ(resumed.code, 0) << resumed.output;
  EXPECT_EQ(end_of(dir / "rank0.end").code, 0) << read_text(dir / "rank0.log");
  EXPECT_TRUE(same_weights(uninterrupted(args, tmp.path() / "uninterrupted"),
                           dir / "node0" / "model.pt"));
}

// torchrun's elastic restart across two nodes: `--max-restarts 1` with c10d's rendezvous and
// `--resume auto` in the worker's arguments, each node with its own --out-dir. Node 1's worker
// killed (SIGKILL) in the second epoch: torchrun restarts the group, the workers of the new
// attempt resume from the newest checkpoint (sent to the node that lacks it), and the job ends
// with the uninterrupted run's weights and each epoch once in its history.
TEST(AcrossNodesFailures, TorchrunRestartsTheGroupAfterAWorkerIsKilledAndTheJobEndsAsUninterrupted) {
  SKIP_WITHOUT_NODES();
  TempDir tmp;
  mgpu::testing::write_cifar_dir(tmp.path() / "data", 60);
  const std::string args = failure_args(tmp.path() / "data", 30) + " --resume auto";
  const auto dir = tmp.path() / "job";
  fs::create_directories(dir);
  std::string body;
  for (int node = 1; node >= 0; --node) {
    body += fmt::format(
        "NODE={0}; ip netns exec $MGPU_NODE_NS_{0} {1} -m torch.distributed.run --nnodes 2 "
        "--nproc-per-node 1 --max-restarts 1 --monitor-interval 0.5 --rdzv-backend c10d "
        "--rdzv-endpoint $MGPU_NODE_ADDR_0:29400 --rdzv-id job --rdzv-conf is_host=$((NODE == 0)) "
        "--local-addr $MGPU_NODE_ADDR_{0} --no-python {2} {3} --out-dir {4}/node{0} "
        "> {4}/node{0}.log 2>&1 &\npids[{0}]=$!\n",
        node, mgpu::testing::kPython, mgpu::testing::kMgpuBinary, args, dir.string());
  }
  // Whichever node holds rank 0 prints the epochs; node 1's worker is the mgpu process there.
  body += fmt::format(
      "for i in $(seq 1200); do grep -qsa 'Epoch 2/2' {0}/node0.log {0}/node1.log && break; "
      "sleep 0.1; done\nsleep 1\n"
      "for p in $(ip netns pids $MGPU_NODE_NS_1); do\n"
      "  [ \"$(readlink /proc/$p/exe)\" = {1} ] && kill -9 $p && echo killed $p\ndone\n"
      "wait ${{pids[0]}} || {{ echo node 0 failed; cat {0}/node0.log; exit 1; }}\n"
      "wait ${{pids[1]}} || {{ echo node 1 failed; cat {0}/node1.log; exit 1; }}\n",
      dir.string(), mgpu::testing::kMgpuBinary);
  const auto r = on_nodes(dir, "", body);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("killed "), std::string::npos) << r.output;
  const int first = fs::exists(dir / "node0" / "model.pt") ? 0 : 1;
  const auto run = dir / fmt::format("node{}", first);
  const std::string log = read_text(dir / fmt::format("node{}.log", first));
  EXPECT_NE(log.find("resuming from"), std::string::npos) << log;
  EXPECT_TRUE(same_weights(uninterrupted(failure_args(tmp.path() / "data", 30),
                                         tmp.path() / "uninterrupted"),
                           run / "model.pt"));
  const std::string history = read_text(run / "history.csv");
  EXPECT_EQ(std::count(history.begin(), history.end(), '\n'), 3) << history;  // header, 1, 2
}

// A stranger on the network: while two processes train, something connects to every port they
// listen on (rank 0's c10d store, each rank's Gloo listener), sends nothing, 64 random bytes
// or 4 KB of 0xff, and hangs up, and one more connection to each stays open and silent. The
// job goes on and ends with the weights of the undisturbed run (c10d's store and Gloo close a
// connection they cannot read; docs/multi-gpu.md, "Two nodes", says what is not protected).
TEST(StrangerOnTheNetwork, GarbageAtTheStoreAndGlooPortsNeitherCorruptsNorHangsTheJob) {
  TempDir tmp;
  mgpu::testing::write_cifar_dir(tmp.path() / "data", 60);
  const std::string args = failure_args(tmp.path() / "data", 30);
  const auto dir = tmp.path() / "job";
  fs::create_directories(dir);
  std::ofstream(dir / "stranger.py")
      << "import os, re, socket, sys\n"
         "ports = sorted({int(p) for p in re.findall(r':(\\d+)\\s', open(sys.argv[1]).read())})\n"
         "print('ports', ports)\nsilent = []\n"
         "for port in ports:\n"
         "    for payload in (b'', os.urandom(64), b'\\xff' * 4096):\n"
         "        s = socket.create_connection(('127.0.0.1', port), timeout=5)\n"
         "        s.sendall(payload)\n"
         "        s.close()\n"
         "    silent.append(socket.create_connection(('127.0.0.1', port), timeout=5))\n"
         "print('sent')\nsys.stdin.read()\n";  // stays connected until the job has ended
  const int port = mgpu::testing::free_port();
  const std::string script = fmt::format(
      "cd {0}\n"
      "RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT={1} {2} {3} --out-dir run "
      "> rank1.log 2>&1 &\np1=$!\n"
      "RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT={1} {2} {3} --out-dir run "
      "> rank0.log 2>&1 &\np0=$!\n"
      "for i in $(seq 1200); do grep -qsa ' 3/16' rank0.log && break; sleep 0.1; done\n"
      "ss -ltnp | grep -E \"pid=($p0|$p1),\" > ports.txt\n"
      "sleep 1000 | {4} stranger.py ports.txt > stranger.log 2>&1 &\n"
      "wait $p0; c0=$?; wait $p1; c1=$?\n"
      "pkill -f 'stranger.py ports.txt'; echo \"$c0 $c1\"\n",
      dir.string(), port, mgpu::testing::kMgpuBinary, args, mgpu::testing::kPython);
  std::ofstream(dir / "job.sh") << script;
  const auto r = shell("timeout 300 bash " + (dir / "job.sh").string(), dir / "out");
  EXPECT_EQ(r.output, "0 0\n") << read_text(dir / "rank0.log") << read_text(dir / "rank1.log");
  const std::string stranger = read_text(dir / "stranger.log");
  EXPECT_NE(stranger.find("sent"), std::string::npos) << stranger;
  EXPECT_NE(stranger.find(std::to_string(port)), std::string::npos) << stranger;  // the store
  EXPECT_TRUE(same_weights(uninterrupted(args, tmp.path() / "uninterrupted"),
                           dir / "run" / "model.pt"));
}

// A group that cannot form: each rank's Gloo bound to its node's loopback interface
// (GLOO_SOCKET_IFNAME=lo), which the other node cannot reach. Gloo's own wait outlasted the
// timeout five times over (54 s for --comm-timeout 10); every rank now exits 1 within the
// timeout and its 5 s of grace, saying the group did not form and where Gloo was bound.
TEST(AcrossNodesFailures, AGroupThatCannotFormEndsEveryRankWithinTheTimeout) {
  SKIP_WITHOUT_NODES();
  TempDir tmp;
  mgpu::testing::write_cifar_dir(tmp.path() / "data", 20);
  const std::string args = fmt::format(
      "train --gpus 0 --threads 1 --dataset cifar10 --no-download --data-dir {} --epochs 1 "
      "--limit-train 64 --limit-test 16 --batch-per-device 8 --comm-timeout 10",
      (tmp.path() / "data").string());
  const auto dir = tmp.path() / "job";
  fs::create_directories(dir);
  std::string body = "echo \"start $(date +%s.%N)\"\n";
  for (int rank = 1; rank >= 0; --rank) {
    body += fmt::format(
        "( RANK={0} WORLD_SIZE=2 MASTER_ADDR=$MGPU_NODE_ADDR_0 MASTER_PORT=29500 "
        "GLOO_SOCKET_IFNAME=lo {1} --on {0} -- {2} {3} --out-dir {4}/node{0} "
        "> {4}/rank{0}.log 2>&1; echo \"$? $(date +%s.%N)\" > {4}/rank{0}.end ) &\n",
        rank, nodes_script(), mgpu::testing::kMgpuBinary, args, dir.string());
  }
  const auto r = on_nodes(dir, "", body + "wait\n");
  ASSERT_EQ(r.code, 0) << r.output;
  const double start = std::stod(r.output.substr(r.output.find("start ") + 6));
  for (int rank = 0; rank < 2; ++rank) {
    const std::string log = read_text(dir / fmt::format("rank{}.log", rank));
    const End end = end_of(dir / fmt::format("rank{}.end", rank));
    EXPECT_EQ(end.code, 1) << log;
    EXPECT_LT(end.time - start, 10 + 5 + 10) << log;  // the timeout, the grace, start-up
    EXPECT_NE(log.find(fmt::format("rank {}: the Gloo group of 2 processes did not form", rank)),
              std::string::npos)
        << log;
  }
}
