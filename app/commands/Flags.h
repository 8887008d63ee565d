// The flag parsing every command shares: numbers parsed here (not by cxxopts) so that every
// refusal names its flag, and the groups of flags several commands take (speed switches,
// data set, weights, --gpus).
#pragma once

#include <cxxopts.hpp>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "data/Datasets.h"      // defines: DataConfig
#include "train/TrainConfig.h"  // defines: TrainConfig

namespace mgpu::app {

// Upper bounds of flags whose huge values would exhaust the machine or overflow.
constexpr int64_t kMaxThreads = 1024;
constexpr int64_t kMaxReplicas = 256;
constexpr int64_t kMaxBatch = 65536;
constexpr double kMaxTimeout = 7 * 24 * 3600;
constexpr double kMaxEpochs = 1e6;
constexpr double kMaxBucketMb = 1 << 20;  // a TiB: more than any gradient

/// Parses args (args[0] plays argv[0]); throws data::InputError naming the command for unknown
/// flags, stray arguments and wrong types.
cxxopts::ParseResult parse(cxxopts::Options& options, const std::vector<std::string>& args);

/// A switch (a flag without a value) is on: given, and not as --flag=false or --flag=0.
bool flag_on(const cxxopts::ParseResult& r, const std::string& flag);

/// Throws data::InputError "--flag: what".
[[noreturn]] void throw_flag_error(const std::string& flag, const std::string& what);

/// r[flag] as T; throws data::InputError naming the flag.
template <typename T>
T get(const cxxopts::ParseResult& r, const std::string& flag) {
  try {
    return r[flag].as<T>();
  } catch (const cxxopts::exceptions::exception& e) {
    throw_flag_error(flag, e.what());
  }
}

/// An integer flag in [min, max]; max guards against values that would exhaust the machine
/// (threads, replicas, batch sizes) or overflow a conversion.
int64_t int_at_least(const cxxopts::ParseResult& r, const std::string& flag, int64_t min,
                     int64_t max = std::numeric_limits<int64_t>::max());
/// A number flag (strtod's syntax, the whole text).
double number(const cxxopts::ParseResult& r, const std::string& flag);
/// A finite number flag in [min, max] (in (min, max] when min_excluded), else InputError
/// "--FLAG VALUE: expected EXPECTED".
double number_in(const cxxopts::ParseResult& r, const std::string& flag, double min, double max,
                 bool min_excluded, const std::string& expected);
/// A word flag that is one of choices, else InputError "--FLAG 'WORD': expected A, B or C".
std::string one_of(const cxxopts::ParseResult& r, const std::string& flag,
                   const std::vector<std::string>& choices);
/// "82,123": integers in [min, max] separated by commas; nullopt if the text is not such a list.
std::optional<std::vector<int64_t>> int_list(const std::string& text, int64_t min, int64_t max);
/// "1,2,4": counts from 1 to kMaxReplicas.
std::vector<int64_t> count_list(const cxxopts::ParseResult& r, const std::string& flag);

/// --amp, --channels-last, --fused-sgd, --cuda-graphs, --no-cudnn-benchmark, --no-tf32.
void add_speed_flags(cxxopts::Options& o);
/// The speed switches into c, whose gpus must be set already: channels-last's default depends
/// on the device. Throws InputError for a switch given both ways.
void speed_flags(const cxxopts::ParseResult& r, train::TrainConfig& c);

/// --val-split, --image-size and --skip-bad-images: the image folder's flags.
void add_folder_flags(cxxopts::Options& o);
/// --dataset, --labels, --data-dir, --no-download, --limit-test and the image folder's flags
/// (train reads --limit-train as well).
data::DataConfig data_flags(const cxxopts::ParseResult& r);

/// --weights, --gpus, --threads and --help of the commands that load a weights file.
void add_weights_flags(cxxopts::Options& o);
/// --weights, required.
std::string weights_flag(const cxxopts::ParseResult& r, const std::string& command);

/// --gpus up to max; without it, 1 if a GPU is visible, else 0.
int64_t gpus_flag(const cxxopts::ParseResult& r, int64_t max = std::numeric_limits<int64_t>::max());

}  // namespace mgpu::app
