// What a job across nodes does when its link or a node fails (scripts/nodes.sh): a link cut past
// --comm-timeout ends both ranks and they resume without a shared folder, a short outage only
// delays, a killed node's ranks are named, torchrun restarts the group, garbage at the ports is
// shrugged off, a group that cannot form ends within the timeout. Needs root; skips without it.
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <csignal>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "Fixtures.h"
#include "Nodes.h"

namespace fs = std::filesystem;
using mgpu::testing::TempDir;
using namespace mgpu::testing::nodes;
using mgpu::testing::read_text;

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
