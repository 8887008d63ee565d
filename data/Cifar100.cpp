// CIFAR-100: the shared CIFAR record reader with two label bytes, and the official class names
// (fine_label_names.txt and coarse_label_names.txt of the archive, in label order).
#include "data/Cifar100.h"

#include <fmt/core.h>

#include <vector>

#include "data/Cifar10.h"
#include "data/InputError.h"

namespace mgpu::data {
namespace fs = std::filesystem;

namespace {

const std::vector<std::string> kFineNames = {
    "apple",      "aquarium_fish", "baby",         "bear",       "beaver",     "bed",
    "bee",        "beetle",        "bicycle",      "bottle",     "bowl",       "boy",
    "bridge",     "bus",           "butterfly",    "camel",      "can",        "castle",
    "caterpillar", "cattle",       "chair",        "chimpanzee", "clock",      "cloud",
    "cockroach",  "couch",         "crab",         "crocodile",  "cup",        "dinosaur",
    "dolphin",    "elephant",      "flatfish",     "forest",     "fox",        "girl",
    "hamster",    "house",         "kangaroo",     "keyboard",   "lamp",       "lawn_mower",
    "leopard",    "lion",          "lizard",       "lobster",    "man",        "maple_tree",
    "motorcycle", "mountain",      "mouse",        "mushroom",   "oak_tree",   "orange",
    "orchid",     "otter",         "palm_tree",    "pear",       "pickup_truck", "pine_tree",
    "plain",      "plate",         "poppy",        "porcupine",  "possum",     "rabbit",
    "raccoon",    "ray",           "road",         "rocket",     "rose",       "sea",
    "seal",       "shark",         "shrew",        "skunk",      "skyscraper", "snail",
    "snake",      "spider",        "squirrel",     "streetcar",  "sunflower",  "sweet_pepper",
    "table",      "tank",          "telephone",    "television", "tiger",      "tractor",
    "train",      "trout",         "tulip",        "turtle",     "wardrobe",   "whale",
    "willow_tree", "wolf",         "woman",        "worm"};

const std::vector<std::string> kCoarseNames = {
    "aquatic_mammals",  "fish",
    "flowers",          "food_containers",
    "fruit_and_vegetables", "household_electrical_devices",
    "household_furniture", "insects",
    "large_carnivores", "large_man-made_outdoor_things",
    "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
    "medium_mammals",   "non-insect_invertebrates",
    "people",           "reptiles",
    "small_mammals",    "trees",
    "vehicles_1",       "vehicles_2"};

}  // namespace

std::optional<fs::path> find_cifar100_dir(const fs::path& dir) {
  return find_cifar_folder(dir, "cifar-100-binary", "train.bin");
}

DataSplit load_cifar100(const fs::path& dir, const std::string& labels, int64_t limit_train,
                        int64_t limit_test) {
  if (labels != "fine" && labels != "coarse") {
    throw InputError(fmt::format("--labels '{}': expected fine or coarse", labels));
  }
  const fs::path found =
      cifar_folder(dir, "CIFAR-100", "cifar-100-binary", "train.bin", "cifar-100-binary.tar.gz");
  const bool fine = labels == "fine";
  const CifarFormat format{"CIFAR-100", {"coarse label", "fine label"}, {20, 100}, fine ? 1u : 0u};
  DataSplit split;
  split.name = fine ? "cifar100" : "cifar100-coarse";
  split.source = found.string();
  split.class_names = fine ? kFineNames : kCoarseNames;
  split.train = read_cifar_file(found / "train.bin", format, limit_train);
  split.test = read_cifar_file(found / "test.bin", format, limit_test);
  return split;
}

}  // namespace mgpu::data
