// `loom data folder`: real PNG and JPEG files of every kind ingest without loss, and
// each kind of bad input is an error naming the JSONL line and the image, in fail and
// skip modes, leaving no manifest (nor shard files) behind when the run fails.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC    // private to this test; loom_ingest has only the reader
#include <stb/stb_image_write.h>  // defines: stbi_write_png, stbi_write_jpg

#include "data/ingest/folder.h"
#include "data/inspect.h"
#include "data/manifest.h"
#include "data/shard_reader.h"
#include "tests/support/subprocess.h"

namespace loom::data {
namespace {

namespace fs = std::filesystem;

// A source folder of real image files, a JSONL list and an output directory.
class FolderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    src_ = root_.path() / "src";
    fs::create_directories(src_ / "sub");
    // 16x16 grayscale gradient: the output size, so its pixels pass through unchanged.
    std::vector<uint8_t> gray(16 * 16);
    for (int i = 0; i < 256; ++i) gray[i] = static_cast<uint8_t>(i);
    Png("gray.png", 16, 16, 1, gray);
    // 30x10 RGB: red, green and blue thirds; the centre crop keeps only the green one.
    std::vector<uint8_t> thirds(30 * 10 * 3, 0);
    for (int y = 0; y < 10; ++y) {
      for (int x = 0; x < 30; ++x) thirds[(y * 30 + x) * 3 + x / 10] = 255;
    }
    Png("sub/thirds.png", 30, 10, 3, thirds);
    // 21x21 RGBA, half-transparent dark red: over white it becomes (227, 127, 127).
    std::vector<uint8_t> rgba(21 * 21 * 4);
    for (int i = 0; i < 21 * 21; ++i) {
      rgba[4 * i] = 200, rgba[4 * i + 1] = 0, rgba[4 * i + 2] = 0, rgba[4 * i + 3] = 128;
    }
    Png("alpha.png", 21, 21, 4, rgba);
    // 7x33 grayscale with alpha (odd sizes, 2 channels), fully transparent: white.
    Png("ga.png", 7, 33, 2, std::vector<uint8_t>(7 * 33 * 2, 0));
    // A JPEG photo-like gradient, 50x37.
    std::vector<uint8_t> photo(50 * 37 * 3);
    for (size_t i = 0; i < photo.size(); ++i) photo[i] = static_cast<uint8_t>(40 + i % 150);
    ASSERT_TRUE(stbi_write_jpg((src_ / "photo.jpg").c_str(), 50, 37, 3, photo.data(), 95));
    std::ofstream(src_ / "broken.png") << "this is not a PNG";
    std::ofstream(root_.path() / "outside.png") << "outside --src";
    fs::create_symlink(root_.path() / "outside.png", src_ / "escape.png");
    fs::create_symlink(src_ / "gray.png", src_ / "sub" / "inside-link.png");
  }

  void Png(const std::string& name, int w, int h, int c, const std::vector<uint8_t>& pixels) {
    ASSERT_TRUE(stbi_write_png((src_ / name).c_str(), w, h, c, pixels.data(), w * c));
  }

  std::string List(const std::vector<std::string>& lines) {
    const std::string path = (root_.path() / "captions.jsonl").string();
    std::ofstream out(path, std::ios::binary);
    for (const std::string& l : lines) out << l << "\n";
    return path;
  }

  FolderOptions Options(const std::string& list, int size = 16) {
    return {.src = src_.string(),
            .captions = list,
            .out = (root_.path() / "out").string(),
            .size = size};
  }

  bool LeftNothing() const {
    const fs::path out = root_.path() / "out";
    if (!fs::exists(out)) return true;
    for (const auto& entry : fs::directory_iterator(out)) {
      ADD_FAILURE() << "left behind: " << entry.path();
      return false;
    }
    return true;
  }

  testing::TempDir root_;
  fs::path src_;
};

std::vector<std::string> Good() {
  return {R"({"file": "gray.png", "caption": "a gradient"})",
          R"({"file": "sub/thirds.png", "caption": "three stripes"})",
          R"({"file": "alpha.png", "caption": "a see-through red square", "extra": 1})",
          R"({"file": "ga.png", "caption": "nothing at all"})",
          "",
          R"({"file": "photo.jpg", "caption": "a café photo ☕"})",
          R"({"file": "sub/inside-link.png", "caption": "a gradient, linked"})"};
}

TEST_F(FolderTest, IngestsEveryKindOfImage) {
  auto report = IngestFolder(Options(List(Good())));
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->samples, 6);
  EXPECT_EQ(report->skipped, 0);
  auto inspected = Inspect(root_.str() + "/out");
  ASSERT_TRUE(inspected.ok()) << inspected.status();
  EXPECT_EQ(report->manifest.spec.ToString(), "image 16x16x3");
  auto reader = ShardReader::Open(root_.str() + "/out/" + report->manifest.shards[0].file);
  ASSERT_TRUE(reader.ok());
  std::vector<Sample> s(6);
  for (int i = 0; i < 6; ++i) ASSERT_TRUE((*reader)->Read(i, &s[i]).ok());
  EXPECT_EQ(s[0].caption, "a gradient");
  EXPECT_EQ(s[4].caption, "a café photo ☕");
  EXPECT_EQ(s[5].caption, "a gradient, linked");
  for (int i = 0; i < 256; ++i) {  // grayscale expanded, unchanged at the same size
    ASSERT_EQ(s[0].pixels[3 * i], i);
    ASSERT_EQ(s[0].pixels[3 * i + 1], i);
    ASSERT_EQ(s[0].pixels[3 * i + 2], i);
  }
  for (int i = 0; i < 256; ++i) {
    EXPECT_LE(s[1].pixels[3 * i], 1);  // only the green middle third is left
    EXPECT_GE(s[1].pixels[3 * i + 1], 254);
    EXPECT_NEAR(s[2].pixels[3 * i], 227, 1);  // alpha composited over white
    EXPECT_NEAR(s[2].pixels[3 * i + 1], 127, 1);
    EXPECT_GE(s[3].pixels[3 * i + 2], 254);  // transparent is white
  }
  EXPECT_EQ(s[5].pixels, s[0].pixels);
}

// One bad line after a good one, and what its error must say.
struct BadCase {
  std::string line;
  std::string image;  // named in the error
  std::string why;    // part of the error
};

std::vector<BadCase> BadCases() {
  return {
      {R"({"file": "missing.png", "caption": "x"})", "missing.png", "no such file"},
      {R"({"file": "broken.png", "caption": "x"})", "broken.png", "cannot decode"},
      {R"({"file": "gray.png", caption: "x"})", "gray.png", "not valid JSON"},
      {R"(["gray.png", "x"])", "no image file named", "expected a JSON object"},
      {R"({"caption": "x"})", "no image file named", "no \"file\" field"},
      {R"({"file": "gray.png"})", "gray.png", "no \"caption\" field"},
      {R"({"file": 7, "caption": "x"})", "no image file named", "\"file\" must be a string"},
      {R"({"file": "gray.png", "caption": ["x"]})", "gray.png", "\"caption\" must be a string"},
      {"{\"file\": \"gray.png\", \"caption\": \"caf\xe9\"}", "gray.png", "not valid UTF-8"},
      {R"({"file": "/etc/hostname", "caption": "x"})", "/etc/hostname", "absolute paths"},
      {R"({"file": "../outside.png", "caption": "x"})", "../outside.png", "'..'"},
      {R"({"file": "escape.png", "caption": "x"})", "escape.png", "outside --src"},
      {R"({"file": "sub", "caption": "x"})", "sub", "not a regular file"},
  };
}

TEST_F(FolderTest, EachBadLineStopsTheRunNamingLineAndImage) {
  for (const BadCase& bad : BadCases()) {
    const std::string list = List({Good()[0], bad.line});
    auto report = IngestFolder(Options(list));
    ASSERT_FALSE(report.ok()) << bad.line;
    const std::string message(report.status().message());
    EXPECT_NE(message.find(list + ":2 "), std::string::npos) << message;
    EXPECT_NE(message.find(bad.image), std::string::npos) << message;
    EXPECT_NE(message.find(bad.why), std::string::npos) << message;
    // Bad input, exit code 2.
    EXPECT_EQ(ExitCodeFor(report.status()), 2) << message;
    EXPECT_TRUE(LeftNothing());
  }
}

TEST_F(FolderTest, SkipModeWarnsCountsAndFinishes) {
  std::vector<std::string> lines = Good();
  for (const BadCase& bad : BadCases()) lines.push_back(bad.line);
  const std::string list = List(lines);
  FolderOptions options = Options(list);
  options.skip_errors = true;
  ::testing::internal::CaptureStderr();
  auto report = IngestFolder(options);
  const std::string warnings = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->samples, 6);
  EXPECT_EQ(report->skipped, static_cast<int64_t>(BadCases().size()));
  ASSERT_TRUE(Inspect(options.out).ok());
  // One warning per bad line, each naming its line (the good ones take lines 1-7).
  for (size_t i = 0; i < BadCases().size(); ++i) {
    EXPECT_NE(warnings.find(list + ":" + std::to_string(8 + i) + " "), std::string::npos)
        << warnings;
  }
}

TEST_F(FolderTest, SkipModeFailsPastMaxSkipped) {
  std::vector<std::string> lines = Good();
  for (const BadCase& bad : BadCases()) lines.push_back(bad.line);
  FolderOptions options = Options(List(lines));
  options.skip_errors = true;
  const int64_t bad = static_cast<int64_t>(BadCases().size());
  options.max_skipped = bad - 1;
  ::testing::internal::CaptureStderr();
  auto report = IngestFolder(options);
  ::testing::internal::GetCapturedStderr();
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(ExitCodeFor(report.status()), 2);
  EXPECT_NE(report.status().message().find(std::to_string(bad) + " lines skipped"),
            std::string::npos)
      << report.status();
  EXPECT_TRUE(LeftNothing());
  options.max_skipped = bad;  // exactly at the limit is fine
  ::testing::internal::CaptureStderr();
  report = IngestFolder(options);
  ::testing::internal::GetCapturedStderr();
  EXPECT_TRUE(report.ok()) << report.status();
}

TEST_F(FolderTest, AFailureAfterAFullShardRemovesThatShard) {
  // At 512 x 512 a shard holds 85 samples: 90 good lines write one shard file before
  // the bad line; the failed run must not leave it behind.
  std::vector<std::string> lines(90, Good()[1]);
  lines.push_back(BadCases()[0].line);
  auto report = IngestFolder(Options(List(lines), 512));
  ASSERT_FALSE(report.ok());
  EXPECT_NE(report.status().message().find(":91 "), std::string::npos) << report.status();
  EXPECT_TRUE(LeftNothing());
}

TEST_F(FolderTest, RejectsAMissingListOrSource) {
  FolderOptions options = Options((root_.path() / "nope.jsonl").string());
  EXPECT_EQ(IngestFolder(options).status().code(), absl::StatusCode::kNotFound);
  options = Options(List(Good()));
  options.src = (root_.path() / "nope").string();
  EXPECT_EQ(IngestFolder(options).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(LeftNothing());
}

}  // namespace
}  // namespace loom::data
