// The strict safetensors parser: a valid file's index, and one refusal per format rule,
// each on a file assembled by hand from header JSON and data bytes.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "core/safetensors_header.h"

namespace loom {
namespace {

constexpr char kWhere[] = "/tmp/model.safetensors";

// The 8-byte little-endian length of `header`, then `header` as is, then `data`.
std::string RawFile(const std::string& header, const std::string& data = "") {
  std::string out;
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return out + header + data;
}

// A file as the writer lays it out: the JSON padded with spaces to a multiple of 8.
std::string File(std::string json, const std::string& data = "") {
  json.append((8 - json.size() % 8) % 8, ' ');
  return RawFile(json, data);
}

// One tensor entry's JSON.
std::string Entry(const std::string& dtype, const std::string& shape, const std::string& offsets) {
  return R"({"dtype":")" + dtype + R"(","shape":)" + shape + R"(,"data_offsets":)" + offsets + "}";
}

TEST(SafetensorsHeader, ParsesAValidFile) {
  const std::string json = R"({"__metadata__":{"format":"pt","step":"12"},)"
                           R"("b":)" + Entry("BF16", "[3]", "[16,22]") + "," +
                           R"("a":)" + Entry("F32", "[2,2]", "[0,16]") + "," +
                           R"("empty":)" + Entry("I64", "[0,4]", "[22,22]") + "," +
                           R"("flag":)" + Entry("BOOL", "[]", "[22,23]") + "}";
  const std::string bytes = File(json, std::string(23, '\x01'));
  const absl::StatusOr<SafetensorsIndex> index = ParseSafetensors(bytes, kWhere);
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(index->header_size % 8, 0u);
  EXPECT_EQ(index->data_start, 8 + index->header_size);
  EXPECT_EQ(index->data_start + 23, bytes.size());
  ASSERT_EQ(index->entries.size(), 4u);
  // In data order, not name or header order; the empty tensor sorts before "flag" at 22.
  EXPECT_EQ(index->entries[0].name, "a");
  EXPECT_EQ(index->entries[0].dtype, "F32");
  EXPECT_EQ(index->entries[0].shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(index->entries[0].begin, 0u);
  EXPECT_EQ(index->entries[0].end, 16u);
  EXPECT_EQ(index->entries[1].name, "b");
  EXPECT_EQ(index->entries[1].dtype, "BF16");
  EXPECT_EQ(index->entries[1].shape, (std::vector<int64_t>{3}));
  EXPECT_EQ(index->entries[2].name, "empty");
  EXPECT_EQ(index->entries[2].shape, (std::vector<int64_t>{0, 4}));
  EXPECT_EQ(index->entries[2].begin, index->entries[2].end);
  EXPECT_EQ(index->entries[3].name, "flag");
  EXPECT_TRUE(index->entries[3].shape.empty());
  EXPECT_EQ(index->metadata, (std::map<std::string, std::string>{{"format", "pt"}, {"step", "12"}}));
}

// Golden bytes from the reference writer (Python safetensors 0.8.0):
//   safetensors.numpy.save({"b": np.array([1.0, -2.0], np.float32), "a": np.array([1, 2, 3], np.uint8),
//                           "c": np.zeros((0, 2), np.int16), "d": np.array([7], np.int64)}, metadata={"k": "v"})
TEST(SafetensorsHeader, ParsesAFileFromTheReferenceWriter) {
  const std::string bytes =
      std::string("\xf8\0\0\0\0\0\0\0", 8) +
      R"({"__metadata__":{"k":"v"},"d":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},"c":{"dtype":"I16","shape":[0,2],)"
      R"("data_offsets":[16,16]},"a":{"dtype":"U8","shape":[3],"data_offsets":[16,19]}}    )" +
      std::string("\x07\0\0\0\0\0\0\0" "\0\0\x80\x3f" "\0\0\0\xc0" "\x01\x02\x03", 19);
  ASSERT_EQ(bytes.size(), 275u);
  const absl::StatusOr<SafetensorsIndex> index = ParseSafetensors(bytes, kWhere);
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(index->header_size, 248u);
  EXPECT_EQ(index->metadata, (std::map<std::string, std::string>{{"k", "v"}}));
  ASSERT_EQ(index->entries.size(), 4u);
  std::vector<std::string> names;
  for (const SafetensorsEntry& e : index->entries) names.push_back(e.name);
  EXPECT_EQ(names, (std::vector<std::string>{"d", "b", "c", "a"}));
  const SafetensorsEntry& b = index->entries[1];
  EXPECT_EQ(b.dtype, "F32");
  EXPECT_EQ(b.shape, (std::vector<int64_t>{2}));
  EXPECT_EQ(bytes.substr(index->data_start + b.begin, b.end - b.begin), std::string("\0\0\x80\x3f\0\0\0\xc0", 8));
  EXPECT_EQ(index->entries[2].shape, (std::vector<int64_t>{0, 2}));
  EXPECT_EQ(index->entries[3].end, 19u);
}

TEST(SafetensorsHeader, AcceptsAFileWithNoTensors) {
  const absl::StatusOr<SafetensorsIndex> index = ParseSafetensors(File("{}"), kWhere);
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_TRUE(index->entries.empty());
  EXPECT_TRUE(index->metadata.empty());
}

TEST(SafetensorsHeader, AcceptsJsonWhitespaceInsideTheObject) {
  const std::string json = "{\n  \"x\" : {\"dtype\": \"U8\", \"shape\": [ 2 ],\t\"data_offsets\": [0, 2]}\n}";
  EXPECT_TRUE(ParseSafetensors(File(json, "ab"), kWhere).ok());
}

TEST(SafetensorsHeader, HeaderAloneGivesTheSameIndex) {
  const std::string bytes = File(R"({"w":)" + Entry("F64", "[4]", "[0,32]") + "}", std::string(32, '\0'));
  const absl::StatusOr<SafetensorsIndex> full = ParseSafetensors(bytes, kWhere);
  ASSERT_TRUE(full.ok()) << full.status();
  const absl::StatusOr<SafetensorsIndex> head =
      ParseSafetensorsHeader(std::string_view(bytes).substr(0, full->data_start), bytes.size(), kWhere);
  ASSERT_TRUE(head.ok()) << head.status();
  ASSERT_EQ(head->entries.size(), 1u);
  EXPECT_EQ(head->entries[0].end, 32u);
  // Fewer bytes than the header spans is the caller's mistake, not the file's.
  const absl::StatusOr<SafetensorsIndex> short_prefix =
      ParseSafetensorsHeader(std::string_view(bytes).substr(0, 12), bytes.size(), kWhere);
  EXPECT_EQ(short_prefix.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SafetensorsHeader, DtypeSizes) {
  EXPECT_EQ(SafetensorsDtypeSize("F32"), 4u);
  EXPECT_EQ(SafetensorsDtypeSize("BF16"), 2u);
  EXPECT_EQ(SafetensorsDtypeSize("F64"), 8u);
  EXPECT_EQ(SafetensorsDtypeSize("I8"), 1u);
  EXPECT_EQ(SafetensorsDtypeSize("BOOL"), 1u);
  EXPECT_EQ(SafetensorsDtypeSize("f32"), 0u);
  EXPECT_EQ(SafetensorsDtypeSize("F8_E4M3"), 0u);
}

TEST(SafetensorsHeader, UnsupportedDtypeIsInvalidArgument) {
  const absl::StatusOr<SafetensorsIndex> index =
      ParseSafetensors(File(R"({"w":)" + Entry("F8_E4M3", "[1]", "[0,1]") + "}", "x"), kWhere);
  EXPECT_EQ(index.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(index.status().message().find("dtype 'F8_E4M3' is not supported"), absl::string_view::npos)
      << index.status();
}

// A file that must be refused, and a phrase its error must contain.
struct BadFile {
  std::string test_name;
  std::string bytes;
  std::string expected;
};

// Test listings show the case's name, not its bytes.
void PrintTo(const BadFile& bad, std::ostream* os) { *os << bad.test_name; }

std::string One(const std::string& entry_json) { return R"({"w":)" + entry_json + "}"; }

std::vector<BadFile> BadFiles() {
  const std::string f32x2 = Entry("F32", "[2]", "[0,8]");
  const std::string eight(8, '\0');
  return {
      {"Truncated", std::string("\x08\0\0\0\0\0\0", 7), "too short"},
      {"EmptyFile", "", "too short"},
      {"HeaderLengthPastEnd", RawFile("{}").substr(0, 9), "runs past the end of the file"},
      {"HeaderLengthOverLimit", std::string("\x00\xe1\xf5\x05\x01\x00\x00\x00", 8) + "{}", "over the limit"},
      {"EmptyHeader", RawFile(""), "not a JSON object"},
      {"NotJson", File("{not json}"), "not valid JSON"},
      {"UnterminatedJson", File(R"({"w":{"dtype":"F32")"), "not valid JSON"},
      {"NotAnObject", File("[1,2]"), "not a JSON object"},
      {"LeadingSpace", File(" {}"), "not a JSON object"},
      {"InvalidUtf8", File("{\"w\xff\":" + f32x2 + "}", eight), "not valid JSON"},
      {"Comment", File("{/* c */}"), "not valid JSON"},
      {"DuplicateTensor", File(R"({"w":)" + f32x2 + R"(,"w":)" + f32x2 + "}", eight), "'w' appears twice"},
      {"DuplicateMetadata", File(R"({"__metadata__":{},"__metadata__":{}})"), "'__metadata__' appears twice"},
      {"DuplicateEntryKey", File(One(R"({"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]})"), eight),
       "key 'dtype' appears twice"},
      {"DuplicateMetadataKey", File(R"({"__metadata__":{"k":"a","k":"b"}})"), "key 'k' appears twice"},
      {"EscapedDuplicateKey", File(R"({"w":)" + f32x2 + R"(,"\u0077":)" + f32x2 + "}", eight), "appears twice"},
      {"UnknownDtype", File(One(Entry("F31", "[2]", "[0,8]")), eight), "dtype 'F31' is not supported"},
      {"DtypeNotString", File(One(R"({"dtype":4,"shape":[2],"data_offsets":[0,8]})"), eight), "dtype is the number 4"},
      {"NegativeShape", File(One(Entry("F32", "[-2]", "[0,8]")), eight), "shape[0] is the negative number -2"},
      {"NegativeZeroShape", File(One(Entry("U8", "[-0]", "[0,0]"))), "shape[0] is the number -0"},
      {"FloatShape", File(One(Entry("F32", "[2.0]", "[0,8]")), eight), "shape[0] is the non-integer number 2.0"},
      {"ExponentShape", File(One(Entry("F32", "[2e0]", "[0,8]")), eight), "non-integer number"},
      {"HugeShape", File(One(Entry("U8", "[9223372036854775808]", "[0,8]")), eight), "does not fit in int64"},
      {"ShapeNotArray", File(One(Entry("F32", "2", "[0,8]")), eight), "shape is the number 2"},
      {"NestedShape", File(One(Entry("F32", "[[2]]", "[0,8]")), eight), "shape[0] is an array"},
      {"OffsetsOneValue", File(One(Entry("F32", "[2]", "[8]")), eight), "data_offsets has 1 value, not 2"},
      {"OffsetsThreeValues", File(One(Entry("F32", "[2]", "[0,8,8]")), eight), "more than 2 values"},
      {"OffsetsNegative", File(One(Entry("F32", "[2]", "[-8,0]")), eight), "data_offsets[0] is the negative number"},
      {"OffsetsFloat", File(One(Entry("F32", "[2]", "[0,8.0]")), eight), "data_offsets[1] is the non-integer"},
      {"BeginAfterEnd", File(One(Entry("F32", "[0]", "[8,0]")), eight), "begin after they end"},
      {"SizeMismatch", File(One(Entry("F32", "[3]", "[0,8]")), eight), "needs 12 bytes but data_offsets [0, 8] hold 8"},
      {"ShapeOverflow", File(One(Entry("F32", "[1099511627776,1099511627776]", "[0,8]")), eight), "overflows"},
      {"ShapeOverflowBesideZero", File(One(Entry("U8", "[1099511627776,1099511627776,0]", "[0,0]"))), "overflows"},
      {"BytesOverflow", File(One(Entry("F64", "[4611686018427387904]", "[0,8]")), eight), "overflows"},
      {"OffsetsPastData", File(One(Entry("F32", "[2]", "[0,8]")), "1234"), "run past the end of the data section"},
      {"Gap", File(R"({"a":)" + Entry("U8", "[2]", "[0,2]") + R"(,"b":)" + Entry("U8", "[2]", "[3,5]") + "}", "abcde"),
       "gap: no tensor holds data bytes [2, 3)"},
      {"NotStartingAtZero", File(One(Entry("U8", "[2]", "[1,3]")), "abc"), "gap: no tensor holds data bytes [0, 1)"},
      {"Overlap",
       File(R"({"a":)" + Entry("U8", "[3]", "[0,3]") + R"(,"b":)" + Entry("U8", "[3]", "[2,5]") + "}", "abcde"),
       "tensors 'a' and 'b' overlap at data byte 2"},
      {"SameRangeTwice",
       File(R"({"a":)" + Entry("U8", "[2]", "[0,2]") + R"(,"b":)" + Entry("U8", "[2]", "[0,2]") + "}", "ab"),
       "overlap"},
      {"EmptyTensorInsideAnother",
       File(R"({"a":)" + Entry("U8", "[4]", "[0,4]") + R"(,"z":)" + Entry("U8", "[0]", "[2,2]") + "}", "abcd"),
       "overlap"},
      {"TrailingUnindexedBytes", File(One(Entry("U8", "[2]", "[0,2]")), "abcd"), "data bytes [2, 4) (2 trailing bytes) belong to no tensor"},
      {"DataWithoutTensors", File("{}", "abc"), "belong to no tensor"},
      {"MetadataNotString", File(R"({"__metadata__":{"step":12}})"), "value of key 'step' is the number 12"},
      {"MetadataNested", File(R"({"__metadata__":{"a":{"b":"c"}}})"), "value of key 'a' is an object"},
      {"MetadataNotObject", File(R"({"__metadata__":"pt"})"), "__metadata__ is a string"},
      {"UnknownEntryKey", File(One(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8],"align":8})"), eight),
       "unknown key 'align'"},
      {"MissingShape", File(One(R"({"dtype":"F32","data_offsets":[0,8]})"), eight), "the entry has no shape"},
      {"MissingOffsets", File(One(R"({"dtype":"F32","shape":[2]})"), eight), "the entry has no data_offsets"},
      {"EntryNotObject", File(R"({"w":[1,2]})"), "tensor 'w': the entry is an array"},
      {"EntryNull", File(R"({"w":null})"), "tensor 'w': the entry is null"},
      {"EmptyName", File(R"({"":)" + Entry("U8", "[0]", "[0,0]") + "}"), "empty name"},
      {"GarbageAfterJson", RawFile("{} x"), "unexpected bytes after the JSON object at header byte 3"},
      {"LiteralAfterJson", RawFile(R"({"__metadata__":{"a":"}"}}true)"), "after the JSON object at header byte 26"},
      {"SecondObjectAfterJson", RawFile("{}{}    "), "unexpected bytes after the JSON object"},
      {"NewlinePadding", RawFile("{}\n     "), "only space padding may follow"},
      {"NulPadding", RawFile(std::string("{}\0\0\0\0\0\0", 8)), "NUL byte at header byte 2"},
      // nlohmann alone would stop at the NUL and accept this as "{}".
      {"NulThenObject", RawFile(std::string("{}\0{}    ", 9)), "NUL byte"},
  };
}

class SafetensorsRefuses : public testing::TestWithParam<BadFile> {};

TEST_P(SafetensorsRefuses, WithAClearError) {
  const BadFile& bad = GetParam();
  const absl::StatusOr<SafetensorsIndex> index = ParseSafetensors(bad.bytes, kWhere);
  ASSERT_FALSE(index.ok()) << "accepted " << bad.test_name;
  const std::string message(index.status().message());
  EXPECT_EQ(message.rfind(std::string(kWhere) + ": ", 0), 0u) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  EXPECT_NE(message.find(bad.expected), std::string::npos) << "expected '" << bad.expected << "' in: " << message;
}

INSTANTIATE_TEST_SUITE_P(Rules, SafetensorsRefuses, testing::ValuesIn(BadFiles()),
                         [](const testing::TestParamInfo<BadFile>& info) { return info.param.test_name; });

TEST(SafetensorsHeader, ErrorsQuoteNamesOnOneLine) {
  const std::string json = R"({"bad\nname\u0001":)" + Entry("F32", "[3]", "[0,8]") + "}";
  const absl::StatusOr<SafetensorsIndex> index = ParseSafetensors(File(json, std::string(8, '\0')), kWhere);
  ASSERT_FALSE(index.ok());
  EXPECT_NE(index.status().message().find(R"('bad\x0aname\x01')"), absl::string_view::npos) << index.status();
}

}  // namespace
}  // namespace loom
