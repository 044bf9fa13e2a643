// Shard format v1: writer/reader round trips for images and video, manifest and
// inspection, and every kind of damage reported with file (and sample).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "data/hdf5_util.h"
#include "data/inspect.h"
#include "data/manifest.h"
#include "data/shard_reader.h"
#include "data/shard_writer.h"
#include "tests/support/subprocess.h"

namespace loom::data {
namespace {

namespace fs = std::filesystem;

SampleSpec ImageSpec() {
  SampleSpec s;
  s.height = 5;
  s.width = 4;
  s.channels = 3;
  return s;
}

SampleSpec VideoSpec() {
  SampleSpec s;
  s.modality = Modality::kVideo;
  s.frames = 3;
  s.height = 4;
  s.width = 6;
  s.channels = 1;
  return s;
}

std::vector<uint8_t> Pixels(const SampleSpec& spec, int seed) {
  std::vector<uint8_t> p(spec.bytes());
  std::mt19937 rng(seed);
  for (auto& v : p) v = static_cast<uint8_t>(rng());
  return p;
}

std::string Caption(int i) { return "sample " + std::to_string(i) + " — ünïcode ✓"; }

// Writes `n` samples into dir with `per_shard` samples per shard.
Manifest WriteDataset(const std::string& dir, const SampleSpec& spec, int n, int per_shard,
                      bool labels = true, int gzip = 0) {
  ShardWriterOptions o;
  o.dir = dir;
  o.samples_per_shard = per_shard;
  o.labels = labels;
  o.gzip = gzip;
  o.label_names = {"zero", "one", "two"};
  auto writer = ShardWriter::Create(spec, o);
  EXPECT_TRUE(writer.ok()) << writer.status();
  for (int i = 0; i < n; ++i) {
    const auto px = Pixels(spec, i);
    EXPECT_TRUE((*writer)->Add(px.data(), Caption(i), i % 3).ok());
  }
  auto m = (*writer)->Finish();
  EXPECT_TRUE(m.ok()) << m.status();
  return *m;
}

void ExpectRoundTrip(const SampleSpec& spec, int gzip) {
  testing::TempDir dir;
  const Manifest m = WriteDataset(dir.str(), spec, 11, 4, true, gzip);
  ASSERT_EQ(m.total, 11);
  ASSERT_EQ(m.shards.size(), 3u);  // 4 + 4 + 3
  auto read = ReadManifest(dir.str());
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->ToJson(), m.ToJson());
  int global = 0;
  for (const ShardEntry& e : read->shards) {
    auto reader = ShardReader::Open(dir.str() + "/" + e.file, &read->spec);
    ASSERT_TRUE(reader.ok()) << reader.status();
    EXPECT_EQ((*reader)->spec(), spec);
    ASSERT_EQ((*reader)->size(), e.count);
    for (int64_t i = 0; i < e.count; ++i, ++global) {
      Sample s;
      ASSERT_TRUE((*reader)->Read(i, &s).ok());
      EXPECT_EQ(s.pixels, Pixels(spec, global));
      EXPECT_EQ(s.caption, Caption(global));
      EXPECT_EQ(s.label, global % 3);
    }
  }
  EXPECT_EQ(global, 11);
  auto report = Inspect(dir.str());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->samples, 11);
  EXPECT_EQ(report->shards, 3);
  // No temporary files are left behind.
  for (const auto& f : fs::directory_iterator(dir.path())) {
    EXPECT_EQ(f.path().string().find(".tmp"), std::string::npos) << f.path();
  }
}

TEST(Shards, ImageRoundTrip) { ExpectRoundTrip(ImageSpec(), 0); }
TEST(Shards, VideoRoundTrip) { ExpectRoundTrip(VideoSpec(), 0); }
TEST(Shards, GzipRoundTrip) { ExpectRoundTrip(ImageSpec(), 4); }

TEST(Shards, SameSamplesGiveByteIdenticalShards) {
  testing::TempDir a, b;
  const Manifest first = WriteDataset(a.str(), ImageSpec(), 9, 4);
  const Manifest second = WriteDataset(b.str(), ImageSpec(), 9, 4);
  ASSERT_EQ(first.shards.size(), second.shards.size());
  for (size_t i = 0; i < first.shards.size(); ++i) {
    EXPECT_EQ(first.shards[i].crc32, second.shards[i].crc32) << first.shards[i].file;
  }
  // No object records a time, so writes in different seconds give the same bytes too.
  h5::Silence();
  const std::string path = a.str() + "/" + first.shards[0].file;
  h5::Handle file = h5::File(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  for (const char* name : {kImages, kCaptions, kLabels, kChecksums}) {
    H5O_info_t info;
    ASSERT_GE(H5Oget_info_by_name2(file.get(), name, &info, H5O_INFO_TIME, H5P_DEFAULT), 0) << name;
    EXPECT_EQ(info.mtime, 0) << name;
    EXPECT_EQ(info.ctime, 0) << name;
  }
}

TEST(Shards, WithoutLabelsReadsMinusOne) {
  testing::TempDir dir;
  const Manifest m = WriteDataset(dir.str(), ImageSpec(), 3, 8, /*labels=*/false);
  auto reader = ShardReader::Open(dir.str() + "/" + m.shards[0].file);
  ASSERT_TRUE(reader.ok());
  EXPECT_FALSE((*reader)->has_labels());
  Sample s;
  ASSERT_TRUE((*reader)->Read(2, &s).ok());
  EXPECT_EQ(s.label, -1);
  EXPECT_TRUE(Inspect(dir.str()).ok());
}

TEST(Shards, WriterRejectsBadInput) {
  testing::TempDir dir;
  ShardWriterOptions o;
  o.dir = dir.str();
  auto w = ShardWriter::Create(ImageSpec(), o);
  ASSERT_TRUE(w.ok());
  const auto px = Pixels(ImageSpec(), 0);
  const absl::Status bad = (*w)->Add(px.data(), std::string("caf\xC3", 4));
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("sample 0: caption is not valid UTF-8"), absl::string_view::npos);
  ASSERT_TRUE((*w)->Add(px.data(), "ok").ok());
  ASSERT_TRUE((*w)->Finish().ok());
  // A second writer into a finished dataset is refused, not silently merged.
  auto again = ShardWriter::Create(ImageSpec(), o);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  SampleSpec wrong = ImageSpec();
  wrong.channels = 2;
  o.dir = dir.str() + "/other";
  EXPECT_FALSE(ShardWriter::Create(wrong, o).ok());
}

TEST(Utf8, Validation) {
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("ünïcode ✓ 𝄞"));
  EXPECT_FALSE(IsValidUtf8(std::string("\xC3", 1)));          // truncated
  EXPECT_FALSE(IsValidUtf8(std::string("\xC0\xAF", 2)));      // overlong
  EXPECT_FALSE(IsValidUtf8(std::string("\xED\xA0\x80", 3)));  // surrogate
  EXPECT_FALSE(IsValidUtf8(std::string("\xF4\x90\x80\x80", 4)));  // > U+10FFFF
  EXPECT_FALSE(IsValidUtf8(std::string("\xFF", 1)));
}

// ---- damage ---------------------------------------------------------------------------

class Damage : public ::testing::Test {
 protected:
  void SetUp() override {
    manifest_ = WriteDataset(dir_.str(), ImageSpec(), 10, 5);
    shard_ = dir_.str() + "/" + manifest_.shards[1].file;
  }
  std::string InspectError() {
    auto r = Inspect(dir_.str());
    EXPECT_FALSE(r.ok()) << "inspect passed a damaged dataset";
    return r.ok() ? "" : std::string(r.status().message());
  }
  testing::TempDir dir_;
  Manifest manifest_;
  std::string shard_;
};

TEST_F(Damage, TruncatedShardIsNamed) {
  fs::resize_file(shard_, fs::file_size(shard_) / 2);
  const std::string e = InspectError();
  EXPECT_EQ(e.rfind(shard_, 0), 0u) << e;
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;
}

TEST_F(Damage, FlippedPixelByteIsNamedWithItsSample) {
  // Find sample 3's pixels in the file and flip one byte of them.
  auto reader = ShardReader::Open(shard_);
  ASSERT_TRUE(reader.ok());
  Sample s;
  ASSERT_TRUE((*reader)->Read(3, &s).ok());
  reader->reset();
  std::fstream f(shard_, std::ios::in | std::ios::out | std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const size_t at = bytes.find(std::string(s.pixels.begin(), s.pixels.end()));
  ASSERT_NE(at, std::string::npos);
  f.seekp(static_cast<std::streamoff>(at + 7));
  f.put(static_cast<char>(bytes[at + 7] ^ 0x10));
  f.close();
  auto again = ShardReader::Open(shard_);
  ASSERT_TRUE(again.ok());
  const absl::Status read = (*again)->Read(3, &s);
  EXPECT_EQ(read.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(std::string(read.message()),
            shard_ + ": sample 3: checksum mismatch (the file is damaged; re-create or restore it)");
  EXPECT_NE(InspectError().find(shard_ + ": file checksum differs from the manifest"),
            std::string::npos);
}

TEST_F(Damage, FlippedBytesAnywhereAreCaught) {
  // Flip one byte at many positions: inspect must fail every time, naming the file.
  const std::string original = testing::ReadAll(shard_);
  const std::string good = shard_ + ".good";
  fs::copy_file(shard_, good);
  for (size_t pos = 0; pos < original.size(); pos += original.size() / 23 + 1) {
    {
      std::fstream f(shard_, std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(static_cast<std::streamoff>(pos));
      f.put(static_cast<char>(original[pos] ^ 0x01));
    }
    const std::string e = InspectError();
    EXPECT_EQ(e.rfind(shard_, 0), 0u) << "byte " << pos << ": " << e;
    fs::copy_file(good, shard_, fs::copy_options::overwrite_existing);
  }
  fs::remove(good);
  EXPECT_TRUE(Inspect(dir_.str()).ok());
}

TEST_F(Damage, MissingShardIsNamed) {
  fs::remove(shard_);
  EXPECT_NE(InspectError().find(shard_ + ": listed in the manifest but missing"), std::string::npos);
}

TEST_F(Damage, UnlistedShardIsNamed) {
  fs::copy_file(shard_, dir_.str() + "/stray.h5");
  EXPECT_NE(InspectError().find("stray.h5: shard is not listed in the manifest"), std::string::npos);
}

TEST_F(Damage, ManifestCountsThatDisagree) {
  std::string json = testing::ReadAll(dir_.str() + "/manifest.json");
  const size_t at = json.find("\"total\": 10");
  ASSERT_NE(at, std::string::npos);
  json.replace(at, 11, "\"total\": 11");
  std::ofstream(dir_.str() + "/manifest.json") << json;
  EXPECT_NE(InspectError().find("shard counts add up to 10, not the total 11"), std::string::npos);
}

TEST_F(Damage, WrongVersionAndMissingManifest) {
  std::string json = testing::ReadAll(dir_.str() + "/manifest.json");
  json.replace(json.find("\"version\": 1"), 12, "\"version\": 9");
  std::ofstream(dir_.str() + "/manifest.json") << json;
  EXPECT_NE(InspectError().find("version 9 is not supported"), std::string::npos);
  fs::remove(dir_.str() + "/manifest.json");
  auto r = Inspect(dir_.str());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(Damage, NotAShardAtAll) {
  std::ofstream(shard_, std::ios::trunc) << "not hdf5";
  auto r = ShardReader::Open(shard_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(std::string(r.status().message()), shard_ + ": not an HDF5 file (truncated or damaged?)");
}

TEST(ShardSchema, WrongShapeAndNonUtf8CaptionAreNamed) {
  testing::TempDir dir;
  const SampleSpec spec = ImageSpec();
  const std::string path = dir.str() + "/bad.h5";
  std::vector<uint8_t> pixels(2 * spec.bytes(), 7);
  const std::vector<std::string> captions = {"fine", std::string("bad\xFF", 4)};
  std::vector<uint32_t> sums = {SampleChecksum(pixels.data(), spec.bytes(), captions[0], -1),
                                SampleChecksum(pixels.data(), spec.bytes(), captions[1], -1)};
  ASSERT_TRUE(WriteShardFile(path, spec, 0, pixels, captions, nullptr, sums).ok());
  auto reader = ShardReader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  Sample s;
  EXPECT_TRUE((*reader)->Read(0, &s).ok());
  EXPECT_EQ(std::string((*reader)->Read(1, &s).message()),
            path + ": sample 1: caption is not valid UTF-8");
  SampleSpec other = spec;
  other.height = 6;
  auto mismatch = ShardReader::Open(path, &other);
  ASSERT_FALSE(mismatch.ok());
  EXPECT_NE(mismatch.status().message().find("samples are image 5x4x3 but the manifest says image 6x4x3"),
            absl::string_view::npos);
}

TEST(ShardSchema, H5pyReadsTheDocumentedSchema) {
  testing::TempDir dir;
  WriteDataset(dir.str(), VideoSpec(), 6, 4);
  const std::string script =
      "import h5py, json, sys\n"
      "d = sys.argv[1]\n"
      "m = json.load(open(d + '/manifest.json'))\n"
      "assert m['format'] == 'loom-shards' and m['version'] == 1, m\n"
      "n = 0\n"
      "for s in m['shards']:\n"
      "    f = h5py.File(d + '/' + s['file'], 'r')\n"
      "    assert f.attrs['format'] == 'loom-shard' and f.attrs['version'] == 1\n"
      "    assert f.attrs['modality'] == 'video'\n"
      "    v = f['videos']\n"
      "    assert v.dtype == 'uint8' and v.shape[1:] == (3, 4, 6, 1), v.shape\n"
      "    assert v.chunks == (1, 3, 4, 6, 1), v.chunks\n"
      "    c = f['captions'].asstr()[...]\n"
      "    assert len(c) == v.shape[0] and c[0].startswith('sample ')\n"
      "    n += v.shape[0]\n"
      "print('h5py-ok', n)\n";
  std::ofstream(dir.str() + "/check.py") << script;
  const testing::Result r = testing::Run("/usr/bin/python3 " + dir.str() + "/check.py " + dir.str());
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("h5py-ok 6"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace loom::data
