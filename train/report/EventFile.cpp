// TensorBoard's event records: protobuf wire format for the fields mgpu uses, TFRecord framing.
// Field numbers are those of tensorboard/compat/proto/{event,summary,tensor}.proto.
#include "train/report/EventFile.h"

#include <fmt/core.h>

#include <array>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <utility>

namespace mgpu::train {
namespace fs = std::filesystem;

namespace {

// Protobuf wire types.
constexpr int kVarint = 0, kFixed64 = 1, kBytes = 2, kFixed32 = 5;
// Field numbers.
constexpr int kEventWallTime = 1, kEventStep = 2, kEventFileVersion = 3, kEventSummary = 5,
              kEventSessionLog = 7;
constexpr int kSessionLogStatus = 1, kSessionStart = 1;  // SessionLog.status, its START
constexpr int kSummaryValue = 1;
constexpr int kValueTag = 1, kValueSimpleValue = 2, kValueTensor = 8, kValueMetadata = 9;
constexpr int kMetadataPluginData = 1, kMetadataDataClass = 4;
constexpr int kPluginName = 1;
constexpr int kTensorDtype = 1, kTensorShape = 2, kTensorStringVal = 8;
constexpr int kDtString = 7;      // tensorboard.DataType.DT_STRING
constexpr int kDataClassTensor = 2;  // tensorboard.DataClass.DATA_CLASS_TENSOR

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}
void put_key(std::string& out, int field, int wire) {
  put_varint(out, static_cast<uint64_t>(field) << 3 | static_cast<uint64_t>(wire));
}
template <typename T>
void put_fixed(std::string& out, int field, T v) {
  put_key(out, field, sizeof(T) == 8 ? kFixed64 : kFixed32);
  char bytes[sizeof(T)];
  std::memcpy(bytes, &v, sizeof(T));  // little-endian, as protobuf wants (x86, ARM)
  out.append(bytes, sizeof(T));
}
void put_bytes(std::string& out, int field, const std::string& bytes) {
  put_key(out, field, kBytes);
  put_varint(out, bytes.size());
  out += bytes;
}

// Reads fields one by one from a message's bytes (a copy of them: a nested message is read
// from the string bytes() returns).
class Fields {
 public:
  explicit Fields(std::string bytes)
      : bytes_(std::move(bytes)), p_(bytes_.data()), end_(p_ + bytes_.size()) {}
  Fields(const Fields&) = delete;
  Fields& operator=(const Fields&) = delete;
  // Moves to the next field; false at the end.
  bool next() {
    if (p_ == end_) return false;
    const uint64_t key = varint();
    field_ = static_cast<int>(key >> 3);
    wire_ = static_cast<int>(key & 7);
    return true;
  }
  int field() const { return field_; }
  uint64_t varint_value() { return expect(kVarint), varint(); }
  template <typename T>
  T fixed() {
    expect(sizeof(T) == 8 ? kFixed64 : kFixed32);
    need(sizeof(T));
    T v;
    std::memcpy(&v, p_, sizeof(T));
    p_ += sizeof(T);
    return v;
  }
  std::string bytes() {
    expect(kBytes);
    const uint64_t n = varint();
    need(n);
    std::string s(p_, n);
    p_ += n;
    return s;
  }
  void skip() {
    switch (wire_) {
      case kVarint: varint(); break;
      case kFixed64: need(8), p_ += 8; break;
      case kFixed32: need(4), p_ += 4; break;
      case kBytes: bytes(); break;
      default: throw std::runtime_error(fmt::format("protobuf wire type {} not handled", wire_));
    }
  }

 private:
  void need(uint64_t n) const {
    if (n > static_cast<uint64_t>(end_ - p_)) throw std::runtime_error("protobuf message cut short");
  }
  void expect(int wire) const {
    if (wire_ != wire) {
      throw std::runtime_error(
          fmt::format("protobuf field {} has wire type {}, expected {}", field_, wire_, wire));
    }
  }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      need(1);
      const auto byte = static_cast<uint8_t>(*p_++);
      v |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if (!(byte & 0x80)) return v;
    }
    throw std::runtime_error("protobuf varint longer than 10 bytes");
  }
  const std::string bytes_;
  const char* p_;
  const char* end_;
  int field_ = 0, wire_ = 0;
};

std::string encode_value(const Event& e) {
  std::string value;
  put_bytes(value, kValueTag, e.tag);
  if (!e.is_text) {
    put_fixed(value, kValueSimpleValue, static_cast<float>(e.value));
    return value;
  }
  // The text plugin's form: a string tensor of shape [] whose metadata names the plugin.
  std::string plugin, metadata, tensor;
  put_bytes(plugin, kPluginName, "text");
  put_bytes(metadata, kMetadataPluginData, plugin);
  put_key(metadata, kMetadataDataClass, kVarint);
  put_varint(metadata, kDataClassTensor);
  put_key(tensor, kTensorDtype, kVarint);
  put_varint(tensor, kDtString);
  put_bytes(tensor, kTensorShape, "");  // a scalar: no dims
  put_bytes(tensor, kTensorStringVal, e.text);
  put_bytes(value, kValueMetadata, metadata);
  put_bytes(value, kValueTensor, tensor);
  return value;
}

void decode_value(const std::string& bytes, Event& e) {
  Fields f(bytes);
  while (f.next()) {
    if (f.field() == kValueTag) {
      e.tag = f.bytes();
    } else if (f.field() == kValueSimpleValue) {
      e.value = f.fixed<float>();
    } else if (f.field() == kValueTensor) {
      e.is_text = true;
      Fields t(f.bytes());
      while (t.next()) {
        if (t.field() == kTensorStringVal) {
          e.text = t.bytes();
        } else {
          t.skip();
        }
      }
    } else {
      f.skip();
    }
  }
}

std::array<uint32_t, 256> crc_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = c & 1 ? 0x82f63b78u ^ (c >> 1) : c >> 1;  // reflected poly
    table[i] = c;
  }
  return table;
}

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  std::memcpy(s.data(), &v, 8);
  return s;
}
std::string le32(uint32_t v) {
  std::string s(4, '\0');
  std::memcpy(s.data(), &v, 4);
  return s;
}

}  // namespace

uint32_t crc32c(const std::string& bytes) {
  static const auto table = crc_table();
  uint32_t c = 0xffffffffu;
  for (const char ch : bytes) c = table[(c ^ static_cast<uint8_t>(ch)) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

uint32_t masked_crc32c(const std::string& bytes) {
  const uint32_t c = crc32c(bytes);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

std::string encode_event(const Event& e) {
  std::string out;
  put_fixed(out, kEventWallTime, e.wall_time);
  put_key(out, kEventStep, kVarint);
  put_varint(out, static_cast<uint64_t>(e.step));
  if (!e.file_version.empty()) {
    put_bytes(out, kEventFileVersion, e.file_version);
  } else if (e.session_start) {
    std::string session;
    put_key(session, kSessionLogStatus, kVarint);
    put_varint(session, kSessionStart);
    put_bytes(out, kEventSessionLog, session);
  } else {
    std::string summary;
    put_bytes(summary, kSummaryValue, encode_value(e));
    put_bytes(out, kEventSummary, summary);
  }
  return out;
}

Event decode_event(const std::string& bytes) {
  Event e;
  Fields f(bytes);
  while (f.next()) {
    if (f.field() == kEventWallTime) {
      e.wall_time = f.fixed<double>();
    } else if (f.field() == kEventStep) {
      e.step = static_cast<int64_t>(f.varint_value());
    } else if (f.field() == kEventFileVersion) {
      e.file_version = f.bytes();
    } else if (f.field() == kEventSessionLog) {
      Fields session(f.bytes());
      while (session.next()) {
        if (session.field() == kSessionLogStatus) {
          e.session_start = session.varint_value() == kSessionStart;
        } else {
          session.skip();
        }
      }
    } else if (f.field() == kEventSummary) {
      Fields s(f.bytes());
      while (s.next()) {
        if (s.field() == kSummaryValue) {
          decode_value(s.bytes(), e);
        } else {
          s.skip();
        }
      }
    } else {
      f.skip();
    }
  }
  return e;
}

std::string frame_record(const std::string& data) {
  const std::string length = le64(data.size());
  return length + le32(masked_crc32c(length)) + data + le32(masked_crc32c(data));
}

std::vector<std::string> read_records(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("cannot read event file {}", file.string()));
  const std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> records;
  size_t at = 0;
  while (all.size() - at >= 16) {  // a record is 16 bytes and its data
    const std::string length = all.substr(at, 8);
    uint64_t n = 0;
    std::memcpy(&n, length.data(), 8);
    if (all.substr(at + 8, 4) != le32(masked_crc32c(length)) || n > all.size() - at - 16) break;
    std::string data = all.substr(at + 12, n);
    if (all.substr(at + 12 + n, 4) != le32(masked_crc32c(data))) break;
    records.push_back(std::move(data));
    at += 16 + n;
  }
  return records;
}

}  // namespace mgpu::train
