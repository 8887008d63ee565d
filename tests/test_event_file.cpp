// TensorBoard's event format as mgpu writes it: CRC-32C, the protobuf fields, TFRecord framing,
// a file cut short, and a resumed run's log keeping what came before its checkpoint. That
// TensorBoard's own reader reads it is test_tensorboard.cpp's.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>

#include "Fixtures.h"
#include "train/report/EventFile.h"
#include "train/report/TensorBoard.h"

using namespace mgpu::train;
using mgpu::testing::TempDir;
namespace fs = std::filesystem;

namespace {

std::vector<fs::path> event_files(const fs::path& folder) {
  std::vector<fs::path> files;
  for (const auto& name : mgpu::testing::list_dir(folder)) {
    if (name.find("tfevents") != std::string::npos) files.push_back(folder / name);
  }
  return files;
}

// The events of the folder's newest file (by name, the order TensorBoard reads them in).
std::vector<Event> events_in(const fs::path& folder) {
  auto files = event_files(folder);
  std::sort(files.begin(), files.end());
  std::vector<Event> events;
  for (const auto& record : read_records(files.back())) events.push_back(decode_event(record));
  return events;
}

}  // namespace

TEST(EventFile, Crc32cAndItsMaskAreTheStandardOnes) {
  EXPECT_EQ(crc32c("123456789"), 0xe3069283u);  // the CRC-32C check value (RFC 3720)
  EXPECT_EQ(crc32c(""), 0u);
  EXPECT_EQ(crc32c(std::string(32, '\0')), 0x8a9136aau);  // RFC 3720's 32 zero bytes
  const uint32_t c = crc32c("abc");
  EXPECT_EQ(masked_crc32c("abc"), ((c >> 15) | (c << 17)) + 0xa282ead8u);
}

TEST(EventFile, AScalarIsTheProtobufBytesTensorBoardExpects) {
  Event e;
  e.wall_time = 1.5;
  e.step = 300;
  e.tag = "loss";
  e.value = 0.25;
  // Event{wall_time=1 (fixed64), step=2 (varint), summary=5{value=1{tag=1, simple_value=2}}}.
  const std::string expected = std::string("\x09\x00\x00\x00\x00\x00\x00\xf8\x3f", 9) +
                               "\x10\xac\x02" + "\x2a\x0d" + "\x0a\x0b" + "\x0a\x04loss" +
                               std::string("\x15\x00\x00\x80\x3e", 5);
  EXPECT_EQ(encode_event(e), expected);
  const Event back = decode_event(expected);
  EXPECT_EQ(back.step, 300);
  EXPECT_EQ(back.tag, "loss");
  EXPECT_EQ(back.value, 0.25);
  EXPECT_EQ(back.wall_time, 1.5);
  EXPECT_FALSE(back.is_text);
}

TEST(EventFile, TextAndVersionEventsComeBackAsWritten) {
  Event text;
  text.step = 7;
  text.tag = "config";
  text.text = "| a | b |\n|---|---|\n";
  text.is_text = true;
  const Event t = decode_event(encode_event(text));
  EXPECT_TRUE(t.is_text);
  EXPECT_EQ(t.text, text.text);
  EXPECT_EQ(t.tag, "config");
  Event version;
  version.file_version = "brain.Event:2";
  EXPECT_EQ(decode_event(encode_event(version)).file_version, "brain.Event:2");
  Event start;  // SessionLog{status: START} in Event field 7
  start.session_start = true;
  const std::string bytes = encode_event(start);
  EXPECT_NE(bytes.find(std::string("\x3a\x02\x08\x01", 4)), std::string::npos);
  EXPECT_TRUE(decode_event(bytes).session_start);
  EXPECT_TRUE(decode_event(bytes).tag.empty());
  EXPECT_THROW(decode_event(std::string("\x0a\x05" "ab", 4)), std::runtime_error);  // cut short
}

TEST(EventFile, ReadingStopsAtARecordCutShortOrDamaged) {
  TempDir tmp;
  const auto file = tmp.path() / "events";
  std::string bytes;
  for (const char* data : {"one", "two", "three"}) bytes += frame_record(data);
  EXPECT_EQ(bytes.size(), 3 * 16u + 11u);
  for (size_t cut = 0; cut <= bytes.size(); ++cut) {  // a kill at every byte
    std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes.substr(0, cut);
    const size_t whole = cut >= 16 + 3 + 16 + 3 + 16 + 5 ? 3 : cut >= 16 + 3 + 16 + 3 ? 2
                                                          : cut >= 16 + 3             ? 1
                                                                                      : 0;
    EXPECT_EQ(read_records(file).size(), whole) << "cut at " << cut;
  }
  std::string damaged = bytes;
  damaged[16 + 3 + 12] ^= 1;  // the second record's data
  std::ofstream(file, std::ios::binary | std::ios::trunc) << damaged;
  EXPECT_EQ(read_records(file), std::vector<std::string>{"one"});
  EXPECT_THROW(read_records(tmp.path() / "missing"), std::runtime_error);
}

// A resumed run's log: what the interrupted part wrote after the checkpoint goes, what came
// before stays, once, in the new part's file, even when the earlier file was cut mid-record.
TEST(TensorBoardLog, AResumeKeepsWhatCameBeforeItsCheckpointOnce) {
  TempDir tmp;
  const auto dir = tmp.path() / "tensorboard";
  {
    TensorBoardLog first(dir, std::nullopt);
    first.text("config", "part 1", 0);
    for (int64_t step = 1; step <= 14; ++step) first.step(step, 2.0 - 0.1 * step, 0.1, 0);
    EpochStats e;
    e.epoch = 1;
    first.epoch(e, 100);
    e.epoch = 2;
    first.epoch(e, 100);
  }
  // Killed while writing: the last record (validation's epoch 2 acc) is cut short.
  const auto validation = event_files(dir / "validation");
  ASSERT_EQ(validation.size(), 1u);
  fs::resize_file(validation[0], fs::file_size(validation[0]) - 3);
  {
    TensorBoardLog second(dir, LogPosition{1, 9});  // the checkpoint: epoch 1 and step 9
    second.text("config", "part 2", 9);
    for (int64_t step = 10; step <= 12; ++step) second.step(step, 1.0, 0.05, 0);
  }
  {
    TensorBoardLog third(dir, LogPosition{1, 11});  // stopped again, at step 11
    third.text("config", "part 3", 11);
    third.step(12, 0.5, 0.04, 0);
  }
  // A file per part (TensorBoard's reader would stay on a file removed under it); the newest
  // holds the whole line.
  ASSERT_EQ(event_files(dir / "train").size(), 3u);
  ASSERT_EQ(event_files(dir / "validation").size(), 3u);
  std::vector<int64_t> steps, epochs;
  std::vector<std::string> texts;
  for (const auto& e : events_in(dir / "train")) {
    if (e.tag == "batch_loss") steps.push_back(e.step);
    if (e.tag == "epoch_loss") epochs.push_back(e.step);
    if (e.is_text) texts.push_back(e.text);
  }
  EXPECT_EQ(steps, (std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}));
  EXPECT_EQ(epochs, std::vector<int64_t>{1});
  EXPECT_EQ(texts, (std::vector<std::string>{"part 1", "part 2", "part 3"}));
  std::vector<std::string> validation_tags;
  for (const auto& e : events_in(dir / "validation")) {
    if (!e.tag.empty()) validation_tags.push_back(e.tag + "@" + std::to_string(e.step));
  }
  EXPECT_EQ(validation_tags, (std::vector<std::string>{"epoch_loss@1", "epoch_acc@1"}));
  // The loss of step 12 is the third part's.
  for (const auto& e : events_in(dir / "train")) {
    if (e.tag == "batch_loss" && e.step == 12) {
      EXPECT_EQ(e.value, 0.5);
    }
  }
  // Each file opens with its version and a session start, once: a TensorBoard that read the
  // files before drops what it holds and reads the new one from the start.
  const auto train = events_in(dir / "train");
  ASSERT_GE(train.size(), 2u);
  EXPECT_FALSE(train[0].file_version.empty());
  EXPECT_TRUE(train[1].session_start);
  EXPECT_EQ(std::count_if(train.begin(), train.end(), [](const Event& e) { return e.session_start; }),
            1);
  // A fresh run in the same folder starts its log afresh.
  { TensorBoardLog fresh(dir, std::nullopt); }
  EXPECT_EQ(event_files(dir / "train").size(), 1u);
  for (const auto& e : events_in(dir / "train")) {
    EXPECT_TRUE(!e.file_version.empty() || e.session_start) << e.tag;
  }
}
