// TensorBoard event files (see tensorboard.h). The protocol buffers are encoded by hand:
// a few fields of five messages do not justify a protobuf dependency. Field numbers are
// those of tensorboard/compat/proto/event.proto and summary.proto.
#include "core/tensorboard.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "core/status.h"

namespace loom::tensorboard {
namespace {

// ---- protocol buffer encoding ---------------------------------------------------------

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

void PutVarint(std::string* out, uint64_t v) {
  for (; v >= 0x80; v >>= 7) out->push_back(static_cast<char>((v & 0x7f) | 0x80));
  out->push_back(static_cast<char>(v));
}

void PutLittleEndian(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void PutTag(std::string* out, int field, WireType type) { PutVarint(out, (static_cast<uint64_t>(field) << 3) | type); }

void PutInt(std::string* out, int field, int64_t v) {
  PutTag(out, field, kVarint);
  PutVarint(out, static_cast<uint64_t>(v));  // int64: negative values take ten bytes
}

void PutDouble(std::string* out, int field, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof(bits));
  PutTag(out, field, kFixed64);
  PutLittleEndian(out, bits, 8);
}

void PutFloat(std::string* out, int field, float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof(bits));
  PutTag(out, field, kFixed32);
  PutLittleEndian(out, bits, 4);
}

// Strings, bytes and embedded messages.
void PutBytes(std::string* out, int field, std::string_view bytes) {
  PutTag(out, field, kLengthDelimited);
  PutVarint(out, bytes.size());
  out->append(bytes);
}

// Field numbers of Event, SessionLog, Summary, Summary.Value and Summary.Image.
constexpr int kEventWallTime = 1, kEventStep = 2, kEventFileVersion = 3, kEventSummary = 5, kEventSessionLog = 7;
constexpr int kSessionLogStatus = 1, kSessionStart = 1;  // SessionLog.status = START
constexpr int kSummaryValue = 1;                          // repeated
constexpr int kValueTag = 1, kValueSimpleValue = 2, kValueImage = 4;
constexpr int kImageHeight = 1, kImageWidth = 2, kImageColorspace = 3, kImageEncoded = 4;

// ---- CRC-32C ----------------------------------------------------------------------------

const std::array<uint32_t, 256>& CrcTable() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int bit = 0; bit < 8; ++bit) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;  // reflected Castagnoli
      t[i] = c;
    }
    return t;
  }();
  return table;
}

// ---- PNG header -------------------------------------------------------------------------

struct PngShape {
  int width = 0, height = 0, channels = 0;
};

uint32_t BigEndian32(std::string_view bytes, size_t at) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(bytes[at + i]);
  return v;
}

// Size and channels from the IHDR chunk, which a PNG file must start with.
absl::StatusOr<PngShape> ReadPngShape(std::string_view png) {
  constexpr std::string_view kSignature("\x89PNG\r\n\x1a\n", 8);
  if (png.size() < 33 || png.substr(0, 8) != kSignature || png.substr(12, 4) != "IHDR") {
    return absl::InvalidArgumentError("not a PNG file (" + std::to_string(png.size()) + " bytes)");
  }
  PngShape s;
  s.width = static_cast<int>(BigEndian32(png, 16));
  s.height = static_cast<int>(BigEndian32(png, 20));
  const int colour_type = static_cast<unsigned char>(png[25]);
  switch (colour_type) {
    case 0: s.channels = 1; break;  // grey
    case 2: s.channels = 3; break;  // RGB
    case 3: s.channels = 3; break;  // palette, shown as RGB
    case 4: s.channels = 2; break;  // grey + alpha
    case 6: s.channels = 4; break;  // RGBA
    default: return absl::InvalidArgumentError("PNG colour type " + std::to_string(colour_type) + " is not valid");
  }
  return s;
}

std::string Hostname() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

double Now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

uint32_t Crc32c(std::string_view bytes) {
  const std::array<uint32_t, 256>& table = CrcTable();
  uint32_t c = 0xffffffffu;
  for (const char b : bytes) c = table[(c ^ static_cast<unsigned char>(b)) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

uint32_t MaskedCrc32c(std::string_view bytes) {
  const uint32_t c = Crc32c(bytes);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

std::string FrameRecord(std::string_view data) {
  std::string length;
  PutLittleEndian(&length, data.size(), 8);
  std::string record = length;
  PutLittleEndian(&record, MaskedCrc32c(length), 4);
  record.append(data);
  PutLittleEndian(&record, MaskedCrc32c(data), 4);
  return record;
}

absl::StatusOr<std::unique_ptr<EventWriter>> EventWriter::Open(const std::string& dir, int64_t first_step) {
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch()).count();
  const std::string name = "events.out.tfevents." + std::to_string(seconds) + "." + Hostname() + "." +
                           std::to_string(::getpid());
  const std::string path = (std::filesystem::path(dir) / name).string();
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return absl::InternalError("cannot create " + path + ": " + std::strerror(errno));
  std::unique_ptr<EventWriter> writer(new EventWriter(path, fd));
  std::string what;
  PutBytes(&what, kEventFileVersion, "brain.Event:2");
  RETURN_IF_ERROR(writer->WriteEvent(0, what));
  std::string start;
  PutInt(&start, kSessionLogStatus, kSessionStart);
  what.clear();
  PutBytes(&what, kEventSessionLog, start);
  RETURN_IF_ERROR(writer->WriteEvent(first_step, what));
  return writer;
}

EventWriter::~EventWriter() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status EventWriter::AddScalars(int64_t step, const std::vector<std::pair<std::string, double>>& values) {
  std::string summary;
  for (const auto& [tag, v] : values) {
    std::string value;
    PutBytes(&value, kValueTag, tag);
    PutFloat(&value, kValueSimpleValue, static_cast<float>(v));
    PutBytes(&summary, kSummaryValue, value);
  }
  std::string what;
  PutBytes(&what, kEventSummary, summary);
  return WriteEvent(step, what);
}

absl::Status EventWriter::AddPng(const std::string& tag, int64_t step, std::string_view png) {
  absl::StatusOr<PngShape> shape = ReadPngShape(png);
  if (!shape.ok()) return absl::InvalidArgumentError("image '" + tag + "' for " + path_ + ": " + std::string(shape.status().message()));
  std::string image;
  PutInt(&image, kImageHeight, shape->height);
  PutInt(&image, kImageWidth, shape->width);
  PutInt(&image, kImageColorspace, shape->channels);  // 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA
  PutBytes(&image, kImageEncoded, png);
  std::string value;
  PutBytes(&value, kValueTag, tag);
  PutBytes(&value, kValueImage, image);
  std::string summary;
  PutBytes(&summary, kSummaryValue, value);
  std::string what;
  PutBytes(&what, kEventSummary, summary);
  return WriteEvent(step, what);
}

// `what` is the event's one field of its `what` oneof, already encoded.
absl::Status EventWriter::WriteEvent(int64_t step, std::string_view what) {
  std::string event;
  PutDouble(&event, kEventWallTime, Now());
  PutInt(&event, kEventStep, step);
  event.append(what);
  const std::string record = FrameRecord(event);
  size_t done = 0;
  while (done < record.size()) {
    const ssize_t n = ::write(fd_, record.data() + done, record.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::InternalError("cannot write " + path_ + ": " + std::strerror(errno));
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace loom::tensorboard
