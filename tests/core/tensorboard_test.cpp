// TensorBoard event files: CRC-32C against published vectors, TFRecord framing read back,
// and the events of a writer decoded field by field by the small protobuf reader below
// (TensorBoard's own reader is run on a real run's file in tests/train/train_test.cpp).
#include <gtest/gtest-spi.h>  // EXPECT_NONFATAL_FAILURE
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "core/fs.h"        // ReadFile
#include "core/image_io.h"  // WritePng
#include "core/tensorboard.h"
#include "tests/support/subprocess.h"  // TempDir

namespace loom::tensorboard {
namespace {

namespace fs = std::filesystem;

uint64_t LittleEndian(std::string_view bytes, size_t at, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(bytes[at + static_cast<size_t>(i)]);
  return v;
}

// The records of a TFRecord file; fails the test on a bad length or CRC.
std::vector<std::string> ReadRecords(std::string_view file) {
  std::vector<std::string> records;
  size_t at = 0;
  while (at < file.size()) {
    if (file.size() - at < 16) {
      ADD_FAILURE() << "truncated record at byte " << at;
      break;
    }
    const uint64_t length = LittleEndian(file, at, 8);
    EXPECT_EQ(LittleEndian(file, at + 8, 4), MaskedCrc32c(file.substr(at, 8))) << "length CRC at byte " << at;
    if (file.size() - at - 16 < length) {
      ADD_FAILURE() << "truncated record at byte " << at;
      break;
    }
    const std::string_view data = file.substr(at + 12, length);
    EXPECT_EQ(LittleEndian(file, at + 12 + length, 4), MaskedCrc32c(data)) << "data CRC at byte " << at;
    records.emplace_back(data);
    at += 16 + length;
  }
  return records;
}

// One protobuf field: varints and fixed-width values in `number`, the rest in `bytes`.
struct Field {
  int wire = 0;
  uint64_t number = 0;
  std::string bytes;
};

// The fields of a message by field number (repeated fields in order).
std::multimap<int, Field> Decode(std::string_view m) {
  std::multimap<int, Field> fields;
  size_t at = 0;
  const auto varint = [&] {
    uint64_t v = 0;
    for (int shift = 0; at < m.size(); shift += 7) {
      const auto b = static_cast<unsigned char>(m[at++]);
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) break;
    }
    return v;
  };
  while (at < m.size()) {
    const uint64_t key = varint();
    Field f;
    f.wire = static_cast<int>(key & 7);
    switch (f.wire) {
      case 0:
        f.number = varint();
        break;
      case 1:
        f.number = LittleEndian(m, at, 8);
        at += 8;
        break;
      case 5:
        f.number = LittleEndian(m, at, 4);
        at += 4;
        break;
      case 2: {
        const uint64_t n = varint();
        f.bytes = std::string(m.substr(at, n));
        at += n;
        break;
      }
      default: ADD_FAILURE() << "wire type " << f.wire; return fields;
    }
    fields.emplace(static_cast<int>(key >> 3), f);
  }
  return fields;
}

double AsDouble(const Field& f) {
  double d;
  std::memcpy(&d, &f.number, sizeof(d));
  return d;
}

float AsFloat(const Field& f) {
  const auto bits = static_cast<uint32_t>(f.number);
  float v;
  std::memcpy(&v, &bits, sizeof(v));
  return v;
}

// The only event file in `dir`.
std::string EventFile(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path());
  EXPECT_EQ(files.size(), 1u);
  return files.empty() ? "" : files[0].string();
}

TEST(TensorBoard, Crc32cOfPublishedVectors) {
  EXPECT_EQ(Crc32c(""), 0u);
  EXPECT_EQ(Crc32c("123456789"), 0xe3069283u);
  // RFC 3720 (iSCSI), B.4.
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8a9136aau);
  EXPECT_EQ(Crc32c(std::string(32, '\xff')), 0x62a8ab43u);
  std::string ascending;
  for (int i = 0; i < 32; ++i) ascending.push_back(static_cast<char>(i));
  EXPECT_EQ(Crc32c(ascending), 0x46dd794eu);
  // Rotated right by 15 bits, plus 0xa282ead8.
  EXPECT_EQ(MaskedCrc32c("123456789"), 0xc78ab0e5u);
  EXPECT_EQ(MaskedCrc32c(""), 0xa282ead8u);
}

TEST(TensorBoard, RecordsFrameAndReadBack) {
  const std::vector<std::string> data = {"", "x", std::string(300, '\0'), "brain.Event:2"};
  std::string file;
  for (const std::string& d : data) file += FrameRecord(d);
  EXPECT_EQ(FrameRecord("x").size(), 8u + 4u + 1u + 4u);
  EXPECT_EQ(ReadRecords(file), data);
  // One flipped bit anywhere is caught by a CRC.
  file[8 + 4 + 0 + 4 + 12] ^= 1;  // the data byte of the second record
  EXPECT_NONFATAL_FAILURE(ReadRecords(file), "data CRC");
}

TEST(TensorBoard, WriterEventsDecodeAsTensorBoardReadsThem) {
  testing::TempDir dir;
  auto writer = EventWriter::Open(dir.str(), 7);
  ASSERT_TRUE(writer.ok()) << writer.status();
  const std::string path = EventFile(dir.path());
  EXPECT_EQ(fs::path(path).filename().string().rfind("events.out.tfevents.", 0), 0u) << path;
  EXPECT_EQ((*writer)->path(), path);

  // A 3 x 2 RGB image, as a preview grid is written.
  const uint8_t pixels[2][3][3] = {{{255, 0, 0}, {0, 255, 0}, {0, 0, 255}}, {{0, 0, 0}, {9, 9, 9}, {255, 255, 255}}};
  ASSERT_TRUE(WritePng(dir.str() + "/grid.png", &pixels[0][0][0], 3, 2, 3).ok());
  const std::string png = *ReadFile(dir.str() + "/grid.png");
  fs::remove(dir.str() + "/grid.png");

  ASSERT_TRUE((*writer)->AddScalars(7, {{"loss", 0.25}, {"disc.lr", 3e-4}}).ok());
  ASSERT_TRUE((*writer)->AddPng("samples", 8, png).ok());
  // Every record is in the file as soon as it is added, before the writer closes.
  const std::vector<std::string> records = ReadRecords(*ReadFile(path));
  ASSERT_EQ(records.size(), 4u);

  std::vector<std::multimap<int, Field>> events;
  for (const std::string& r : records) events.push_back(Decode(r));
  for (const auto& e : events) {
    ASSERT_EQ(e.count(1), 1u);  // wall_time, a double of seconds since 1970
    EXPECT_EQ(e.find(1)->second.wire, 1);
    EXPECT_GT(AsDouble(e.find(1)->second), 1.6e9);
  }
  // 1: the file version, at step 0.
  EXPECT_EQ(events[0].find(3)->second.bytes, "brain.Event:2");
  // 2: SessionLog { status: START } at the first step.
  EXPECT_EQ(events[1].find(2)->second.number, 7u);
  const auto session = Decode(events[1].find(7)->second.bytes);
  EXPECT_EQ(session.find(1)->second.number, 1u);
  // 3: a Summary with one Value { tag, simple_value } per scalar.
  EXPECT_EQ(events[2].find(2)->second.number, 7u);
  const auto summary = Decode(events[2].find(5)->second.bytes);
  ASSERT_EQ(summary.count(1), 2u);
  std::map<std::string, float> scalars;
  for (auto it = summary.lower_bound(1); it != summary.upper_bound(1); ++it) {
    const auto value = Decode(it->second.bytes);
    ASSERT_EQ(value.find(2)->second.wire, 5);
    scalars[value.find(1)->second.bytes] = AsFloat(value.find(2)->second);
  }
  EXPECT_EQ(scalars, (std::map<std::string, float>{{"loss", 0.25f}, {"disc.lr", 3e-4f}}));
  // 4: a Summary with Value { tag, image: Image { height, width, colorspace, PNG } }.
  EXPECT_EQ(events[3].find(2)->second.number, 8u);
  const auto value = Decode(Decode(events[3].find(5)->second.bytes).find(1)->second.bytes);
  EXPECT_EQ(value.find(1)->second.bytes, "samples");
  const auto image = Decode(value.find(4)->second.bytes);
  EXPECT_EQ(image.find(1)->second.number, 2u);
  EXPECT_EQ(image.find(2)->second.number, 3u);
  EXPECT_EQ(image.find(3)->second.number, 3u);  // RGB
  EXPECT_TRUE(image.find(4)->second.bytes == png);
}

TEST(TensorBoard, ImagesMustBePngAndTheDirectoryMustExist) {
  testing::TempDir dir;
  auto writer = EventWriter::Open(dir.str(), 1);
  ASSERT_TRUE(writer.ok()) << writer.status();
  const absl::Status not_png = (*writer)->AddPng("samples", 1, "GIF89a not a png at all, long enough to parse");
  EXPECT_EQ(not_png.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(not_png.message().find("not a PNG"), absl::string_view::npos) << not_png;
  const auto missing = EventWriter::Open(dir.str() + "/missing", 1);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find(dir.str() + "/missing/events.out.tfevents."), absl::string_view::npos)
      << missing.status();
}

}  // namespace
}  // namespace loom::tensorboard
