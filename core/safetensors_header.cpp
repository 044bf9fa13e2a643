// Strict safetensors parsing (see safetensors_header.h). A SAX handler walks the JSON
// header once and refuses the first thing outside the format, so malformed input never
// builds a JSON tree and nested junk cannot recurse; the data ranges are checked after.
#include "core/safetensors_header.h"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>
#include <utility>

#include "absl/status/status.h"

namespace loom {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kMetadataKey = "__metadata__";

struct DtypeSize {
  std::string_view name;
  size_t bytes;
};
constexpr DtypeSize kDtypes[] = {{"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F64", 8}, {"I64", 8},
                                 {"I32", 4}, {"I16", 2}, {"I8", 1},   {"U8", 1},  {"BOOL", 1}};

// `text` as printable ASCII on one line: other bytes (and '\') as \xNN, cut after `max` bytes.
// Names and JSON excerpts in errors come from the file and may hold anything.
std::string Printable(std::string_view text, size_t max = 80) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < text.size() && i < max; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  if (text.size() > max) out += "...";
  return out;
}

std::string Quote(std::string_view text) { return "'" + Printable(text) + "'"; }

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i == 8) return out + ", ... (" + std::to_string(shape.size()) + " dims)]";
    out += (i ? ", " : "") + std::to_string(shape[i]);
  }
  return out + "]";
}

// data_offsets as written in the header.
std::string RangeText(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + "]";
}

// The data bytes from `begin` up to, not including, `end`.
std::string BytesText(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + ")";
}

// Accepts exactly the safetensors schema, event by event:
//   {"__metadata__": {string: string}, name: {"dtype": s, "shape": [u, ...], "data_offsets": [u, u]}, ...}
// The first event outside it ends the parse (returns false) with the reason kept.
class HeaderHandler final : public nlohmann::json_sax<Json> {
 public:
  explicit HeaderHandler(uint64_t data_size) : data_size_(data_size) {}

  bool null() override { return Unexpected("null"); }
  bool boolean(bool) override { return Unexpected("a boolean"); }
  bool binary(binary_t&) override { return Unexpected("binary data"); }
  // The lexer reports only numbers written with a minus sign as signed ("-0" included).
  bool number_integer(number_integer_t v) override {
    return Unexpected(v == 0 ? std::string("the number -0") : "the negative number " + std::to_string(v));
  }
  bool number_float(number_float_t, const string_t& text) override {
    const bool integral = text.find_first_of(".eE") == std::string::npos;
    return Unexpected((integral ? "the number " : "the non-integer number ") + Printable(text) +
                      (integral ? ", too large for 64 bits" : ""));
  }

  bool number_unsigned(number_unsigned_t v) override {
    if (state_ == State::kShape) {
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return Fail(Tensor() + "shape[" + std::to_string(entry_.shape.size()) + "] = " + std::to_string(v) +
                    " does not fit in int64");
      }
      entry_.shape.push_back(static_cast<int64_t>(v));
      return true;
    }
    if (state_ == State::kOffsets) {
      if (offsets_.size() == 2) return Fail(Tensor() + "data_offsets has more than 2 values");
      offsets_.push_back(v);
      return true;
    }
    return Unexpected("the number " + std::to_string(v));
  }

  bool string(string_t& v) override {
    if (state_ == State::kMetadataString) {
      metadata_[pending_key_] = v;
      state_ = State::kMetadata;
      return true;
    }
    if (state_ == State::kDtype) {
      if (SafetensorsDtypeSize(v) == 0) {
        code_ = absl::StatusCode::kInvalidArgument;
        return Fail(Tensor() + "dtype " + Quote(v) +
                    " is not supported (loom reads F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL)");
      }
      entry_.dtype = v;
      state_ = State::kEntry;
      return true;
    }
    return Unexpected("a string");
  }

  bool start_object(std::size_t) override {
    switch (state_) {
      case State::kStart: state_ = State::kTop; return true;
      case State::kMetadataValue: state_ = State::kMetadata; return true;
      case State::kEntryValue: state_ = State::kEntry; return true;
      default: return Unexpected("an object");
    }
  }

  bool key(string_t& k) override {
    if (state_ == State::kTop) {
      if (k.empty()) return Fail("a tensor has an empty name");
      if (!top_keys_.insert(k).second) return Fail("key " + Quote(k) + " appears twice");
      if (k == kMetadataKey) {
        state_ = State::kMetadataValue;
      } else {
        entry_ = SafetensorsEntry{};
        entry_.name = k;
        offsets_.clear();
        seen_ = 0;
        state_ = State::kEntryValue;
      }
      return true;
    }
    if (state_ == State::kMetadata) {
      if (metadata_.count(k)) return Fail("__metadata__ key " + Quote(k) + " appears twice");
      pending_key_ = k;
      state_ = State::kMetadataString;
      return true;
    }
    if (state_ != State::kEntry) return Fail("unexpected key " + Quote(k));
    unsigned bit = 0;
    if (k == "dtype") {
      bit = 1;
      state_ = State::kDtype;
    } else if (k == "shape") {
      bit = 2;
      state_ = State::kShapeValue;
    } else if (k == "data_offsets") {
      bit = 4;
      state_ = State::kOffsetsValue;
    } else {
      return Fail(Tensor() + "unknown key " + Quote(k) + " (an entry has only dtype, shape, data_offsets)");
    }
    if (seen_ & bit) return Fail(Tensor() + "key " + Quote(k) + " appears twice");
    seen_ |= bit;
    return true;
  }

  bool end_object() override {
    switch (state_) {
      case State::kTop: state_ = State::kDone; return true;
      case State::kMetadata: state_ = State::kTop; return true;
      case State::kEntry: return FinishEntry();
      default: return Fail("unexpected end of object");
    }
  }

  bool start_array(std::size_t) override {
    if (state_ == State::kShapeValue) {
      state_ = State::kShape;
      return true;
    }
    if (state_ == State::kOffsetsValue) {
      state_ = State::kOffsets;
      return true;
    }
    return Unexpected("an array");
  }

  bool end_array() override {
    if (state_ == State::kShape) {
      state_ = State::kEntry;
      return true;
    }
    if (state_ != State::kOffsets) return Fail("unexpected end of array");
    if (offsets_.size() != 2) {
      return Fail(Tensor() + "data_offsets has " + std::to_string(offsets_.size()) +
                  (offsets_.size() == 1 ? " value" : " values") + ", not 2");
    }
    if (offsets_[0] > offsets_[1]) {
      return Fail(Tensor() + "data_offsets " + RangeText(offsets_[0], offsets_[1]) + " begin after they end");
    }
    entry_.begin = offsets_[0];
    entry_.end = offsets_[1];
    state_ = State::kEntry;
    return true;
  }

  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    std::string what = e.what();
    // "[json.exception.parse_error.101] parse error at ..." -> "parse error at ..."
    if (const size_t cut = what.find("] "); cut != std::string::npos) what.erase(0, cut + 2);
    return Fail("header is not valid JSON: " + Printable(what, 240));
  }

  // Whether the top-level object was complete: a later error is about what follows it.
  bool Done() const { return state_ == State::kDone; }
  absl::Status Error(const std::string& where) const { return absl::Status(code_, where + ": " + error_); }
  std::vector<SafetensorsEntry> TakeEntries() { return std::move(entries_); }
  std::map<std::string, std::string> TakeMetadata() { return std::move(metadata_); }

 private:
  enum class State {
    kStart,           // before the top-level object
    kTop,             // in the top-level object: a key or its end
    kMetadataValue,   // after "__metadata__":
    kMetadata,        // in __metadata__: a key or its end
    kMetadataString,  // after a __metadata__ key
    kEntryValue,      // after a tensor name
    kEntry,           // in a tensor entry: a key or its end
    kDtype,           // after "dtype":
    kShapeValue,      // after "shape":
    kShape,           // in the shape array
    kOffsetsValue,    // after "data_offsets":
    kOffsets,         // in the data_offsets array
    kDone,            // after the top-level object
  };

  std::string Tensor() const { return "tensor " + Quote(entry_.name) + ": "; }

  bool Fail(std::string message) {
    error_ = std::move(message);
    return false;
  }

  // A value of kind `what` where the schema has no place for it.
  bool Unexpected(const std::string& what) {
    switch (state_) {
      case State::kStart: return Fail("the header is " + what + ", not a JSON object");
      case State::kMetadataValue: return Fail("__metadata__ is " + what + ", not an object of strings");
      case State::kMetadataString:
        return Fail("__metadata__ value of key " + Quote(pending_key_) + " is " + what + ", not a string");
      case State::kEntryValue:
        return Fail(Tensor() + "the entry is " + what + ", not an object with dtype, shape and data_offsets");
      case State::kDtype: return Fail(Tensor() + "dtype is " + what + ", not a string");
      case State::kShapeValue: return Fail(Tensor() + "shape is " + what + ", not an array of integers");
      case State::kShape:
        return Fail(Tensor() + "shape[" + std::to_string(entry_.shape.size()) + "] is " + what +
                    ", not a non-negative integer");
      case State::kOffsetsValue:
        return Fail(Tensor() + "data_offsets is " + what + ", not an array of two integers");
      case State::kOffsets:
        return Fail(Tensor() + "data_offsets[" + std::to_string(offsets_.size()) + "] is " + what +
                    ", not a non-negative integer");
      default: return Fail("unexpected " + what);
    }
  }

  bool FinishEntry() {
    for (const auto& [bit, key] : {std::pair{1u, "dtype"}, std::pair{2u, "shape"}, std::pair{4u, "data_offsets"}}) {
      if (!(seen_ & bit)) return Fail(Tensor() + "the entry has no " + key);
    }
    // The element count must fit in int64 (torch's numel) whatever the order of the
    // dimensions, so a zero dimension does not excuse the others' overflow.
    uint64_t numel = 1;
    bool empty = false;
    for (int64_t d : entry_.shape) {
      if (d == 0) {
        empty = true;
        continue;
      }
      if (__builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel) ||
          numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return Fail(Tensor() + "shape " + ShapeText(entry_.shape) + " overflows: more than 2^63-1 elements");
      }
    }
    if (empty) numel = 0;
    uint64_t bytes = 0;
    if (__builtin_mul_overflow(numel, SafetensorsDtypeSize(entry_.dtype), &bytes)) {
      return Fail(Tensor() + "shape " + ShapeText(entry_.shape) + " of " + entry_.dtype +
                  " overflows: more than 2^64-1 bytes");
    }
    if (bytes != entry_.end - entry_.begin) {
      return Fail(Tensor() + "shape " + ShapeText(entry_.shape) + " of " + entry_.dtype + " needs " +
                  std::to_string(bytes) + " bytes but data_offsets " + RangeText(entry_.begin, entry_.end) +
                  " hold " + std::to_string(entry_.end - entry_.begin));
    }
    if (entry_.end > data_size_) {
      return Fail(Tensor() + "data_offsets " + RangeText(entry_.begin, entry_.end) +
                  " run past the end of the data section (" + std::to_string(data_size_) +
                  " bytes); the file is truncated or the offsets are wrong");
    }
    entries_.push_back(std::move(entry_));
    state_ = State::kTop;
    return true;
  }

  const uint64_t data_size_;
  State state_ = State::kStart;
  absl::StatusCode code_ = absl::StatusCode::kDataLoss;
  std::string error_;
  std::set<std::string> top_keys_;
  std::map<std::string, std::string> metadata_;
  std::string pending_key_;          // the __metadata__ key whose value comes next
  SafetensorsEntry entry_;           // the tensor entry being read
  std::vector<uint64_t> offsets_;    // its data_offsets so far
  unsigned seen_ = 0;                // its keys so far: 1 dtype, 2 shape, 4 data_offsets
  std::vector<SafetensorsEntry> entries_;
};

// One past the '}' that closes the object starting `json`, which the parser has read
// whole; the bytes after it are then what the header holds beyond the object.
size_t ObjectEnd(std::string_view json) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if ((c == '}' || c == ']') && --depth == 0) {
      return i + 1;
    }
  }
  return json.size();
}

}  // namespace

size_t SafetensorsDtypeSize(std::string_view dtype) {
  for (const DtypeSize& d : kDtypes) {
    if (d.name == dtype) return d.bytes;
  }
  return 0;
}

absl::StatusOr<uint64_t> SafetensorsHeaderSize(std::string_view first_bytes, uint64_t file_size,
                                               const std::string& where) {
  if (file_size < 8) {
    return absl::DataLossError(where + ": " + std::to_string(file_size) +
                               " bytes is too short for a safetensors file (it starts with an 8-byte header length)");
  }
  if (first_bytes.size() < 8) {
    return absl::InvalidArgumentError(where + ": the first 8 bytes are needed to read the header length, " +
                                      std::to_string(first_bytes.size()) + " were given");
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(first_bytes[i]);
  if (n > kMaxSafetensorsHeaderBytes) {
    return absl::DataLossError(where + ": header length " + std::to_string(n) + " is over the limit of " +
                               std::to_string(kMaxSafetensorsHeaderBytes) +
                               " bytes; the file is corrupt or not safetensors");
  }
  if (n > file_size - 8) {
    return absl::DataLossError(where + ": header length " + std::to_string(n) + " runs past the end of the file (" +
                               std::to_string(file_size) + " bytes); the file is truncated or not safetensors");
  }
  return n;
}

absl::StatusOr<SafetensorsIndex> ParseSafetensorsHeader(std::string_view prefix, uint64_t file_size,
                                                        const std::string& where) {
  const auto bad = [&](const std::string& why) { return absl::DataLossError(where + ": " + why); };
  absl::StatusOr<uint64_t> header_size = SafetensorsHeaderSize(prefix, file_size, where);
  if (!header_size.ok()) return header_size.status();
  SafetensorsIndex index;
  index.header_size = *header_size;
  index.data_start = 8 + index.header_size;
  if (prefix.size() < index.data_start || prefix.size() > file_size) {
    return absl::InvalidArgumentError(where + ": " + std::to_string(prefix.size()) +
                                      " bytes were given to parse a header that spans bytes [0, " +
                                      std::to_string(index.data_start) + ") of a " + std::to_string(file_size) +
                                      "-byte file");
  }
  const uint64_t data_size = file_size - index.data_start;
  std::string_view json = prefix.substr(8, index.header_size);
  if (json.empty() || json.front() != '{') {
    return bad("the header is not a JSON object: it starts with " +
               (json.empty() ? std::string("nothing") : Quote(json.substr(0, 1))) + ", not '{'");
  }
  // The writer pads with spaces so the data starts 8-byte aligned; nothing else may follow.
  json.remove_suffix(json.size() - 1 - json.find_last_not_of(' '));

  // nlohmann's lexer takes a NUL byte for the end of input, so "{}\0{...}" would pass as "{}";
  // NUL is never valid JSON outside a string and never raw inside one.
  if (const size_t nul = json.find('\0'); nul != std::string_view::npos) {
    return bad("the header holds a NUL byte at header byte " + std::to_string(nul) + "; it is not valid JSON");
  }
  HeaderHandler handler(data_size);
  bool parsed = false;
  try {
    parsed = Json::sax_parse(json.data(), json.data() + json.size(), &handler);
  } catch (const Json::exception& e) {
    return bad(std::string("header is not valid JSON: ") + Printable(e.what(), 240));
  }
  // sax_parse also skips tabs and newlines after the object; only the spaces stripped above
  // are padding.
  if (handler.Done() && (!parsed || json.back() != '}')) {
    // The stripped header ends in something other than a space, so there is a first one.
    const size_t extra = json.find_first_not_of(' ', ObjectEnd(json));
    return bad("unexpected bytes after the JSON object at header byte " + std::to_string(extra) +
               "; only space padding may follow it");
  }
  if (!parsed) return handler.Error(where);

  index.entries = handler.TakeEntries();
  index.metadata = handler.TakeMetadata();
  std::sort(index.entries.begin(), index.entries.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  // The format asks that the tensors tile the data section: no gap, no overlap, no tail.
  uint64_t covered = 0;
  const SafetensorsEntry* previous = nullptr;
  for (const SafetensorsEntry& e : index.entries) {
    if (e.begin > covered) {
      return bad("gap: no tensor holds data bytes " + BytesText(covered, e.begin) + " (before tensor " +
                 Quote(e.name) + "); the data section must be fully indexed");
    }
    if (e.begin < covered) {
      return bad("tensors " + Quote(previous->name) + " and " + Quote(e.name) + " overlap at data byte " +
                 std::to_string(e.begin));
    }
    covered = e.end;
    previous = &e;
  }
  if (covered != data_size) {
    return bad("data bytes " + BytesText(covered, data_size) + " (" + std::to_string(data_size - covered) +
               " trailing bytes) belong to no tensor; the data section must be fully indexed");
  }
  return index;
}

absl::StatusOr<SafetensorsIndex> ParseSafetensors(std::string_view bytes, const std::string& where) {
  return ParseSafetensorsHeader(bytes, bytes.size(), where);
}

}  // namespace loom
