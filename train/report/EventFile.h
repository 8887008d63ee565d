// TensorBoard's event files written without protobuf: TFRecord framing (length, masked
// CRC-32C) around the few fields of TensorBoard's Event and Summary protobufs that scalars and
// text need, and the reader that a resumed run uses to keep what came before its checkpoint.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace mgpu::train {

/// CRC-32C (Castagnoli), and TFRecord's mask of it: rotated right by 15 bits plus 0xa282ead8.
uint32_t crc32c(const std::string& bytes);
uint32_t masked_crc32c(const std::string& bytes);

/// One event as mgpu writes it: a scalar (tag, value), a text (tag, text), the file's first
/// event, its version ("brain.Event:2"), or the session's start (SessionLog START: TensorBoard
/// drops what it holds of the folder from that event's step on, and reads on).
struct Event {
  double wall_time = 0;  // seconds since the epoch
  int64_t step = 0;
  std::string tag;           // empty for the version event
  double value = 0;          // a scalar's value (stored as float, as TensorBoard does)
  std::string text;          // a text's markdown
  bool is_text = false;
  std::string file_version;  // the version event's
  bool session_start = false;
};

/// The serialized tensorboard.Event protobuf of an event.
std::string encode_event(const Event& event);
/// An Event from encode_event's bytes; throws std::runtime_error on bytes it did not write.
Event decode_event(const std::string& bytes);

/// A TFRecord: uint64 length, masked CRC of the length, the data, masked CRC of the data.
std::string frame_record(const std::string& data);

/// The whole records of an event file, in order: a record cut short or failing its CRC ends
/// the reading there (a run killed mid-write); throws std::runtime_error naming the file only if
/// it cannot be read at all.
std::vector<std::string> read_records(const std::filesystem::path& file);

}  // namespace mgpu::train
