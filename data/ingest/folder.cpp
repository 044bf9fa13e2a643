// Image folder + JSONL captions -> shards (see folder.h). Every bad line becomes one
// error naming FILE:LINE and the image, so a user can fix the list in one pass.
#include "data/ingest/folder.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/log.h"
#include "core/status.h"
#include "data/ingest/image_ops.h"
#include "data/ingest/output_guard.h"
#include "data/shard_format.h"
#include "data/shard_writer.h"

namespace loom::data {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Entry {
  std::string file;
  std::string caption;
};

constexpr char kLineShape[] = R"({"file": "rel/path.png", "caption": "..."})";

// `text` with every byte that is not part of a well-formed UTF-8 sequence replaced by '?',
// so a line with a bad caption can still be parsed far enough to name its image.
std::string Sanitized(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    const size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;
    if (i + len <= text.size() && IsValidUtf8(text.substr(i, len))) {
      out.append(text.substr(i, len));
      i += len;
    } else {
      out += '?';
      i += 1;
    }
  }
  return out;
}

// The "file" value of a line that is not valid JSON, as far as it can be read, so the
// error can still name the image; "" when the line holds no such text.
std::string GuessFile(std::string_view line) {
  size_t i = line.find("\"file\"");
  if (i == std::string_view::npos) return "";
  i = line.find_first_not_of(" \t", i + 6);
  if (i == std::string_view::npos || line[i] != ':') return "";
  i = line.find_first_not_of(" \t", i + 1);
  if (i == std::string_view::npos || line[i] != '"') return "";
  const size_t end = line.find('"', i + 1);
  return end == std::string_view::npos ? "" : std::string(line.substr(i + 1, end - i - 1));
}

// Parses one line; fills `file` as soon as the image's name is known, for the error.
absl::StatusOr<Entry> ParseLine(const std::string& line, std::string* file) {
  const bool utf8 = IsValidUtf8(line);
  json j;
  try {
    j = json::parse(utf8 ? line : Sanitized(line));
  } catch (const json::parse_error& e) {
    *file = GuessFile(Sanitized(line));
    // what() starts with nlohmann's "[json.exception.parse_error.101] " tag.
    std::string what = e.what();
    what = what.substr(what.find("] ") == std::string::npos ? 0 : what.find("] ") + 2);
    return absl::InvalidArgumentError("not valid JSON (" + what +
                                      "); each line must be an object like " + kLineShape);
  }
  if (!j.is_object()) {
    return absl::InvalidArgumentError(std::string("expected a JSON object like ") + kLineShape +
                                      ", found a " + j.type_name());
  }
  const auto field = [&](const char* name, std::string* value) -> absl::Status {
    const auto it = j.find(name);
    if (it == j.end()) {
      return absl::InvalidArgumentError(std::string("no \"") + name +
                                        "\" field; each line must be " + kLineShape);
    }
    if (!it->is_string()) {
      return absl::InvalidArgumentError(std::string("\"") + name + "\" must be a string, not a " +
                                        it->type_name());
    }
    *value = it->get<std::string>();
    return absl::OkStatus();
  };
  Entry entry;
  RETURN_IF_ERROR(field("file", &entry.file));
  *file = entry.file;
  RETURN_IF_ERROR(field("caption", &entry.caption));
  if (!utf8) {
    return absl::InvalidArgumentError(
        "the line is not valid UTF-8; captions and file names must be UTF-8: convert the "
        "file, e.g. with iconv -t UTF-8");
  }
  if (entry.caption.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError("the caption contains a NUL character (\\u0000)");
  }
  return entry;
}

// True when `path` is `dir` or below it, compared by whole components: /data/src2 is
// not inside /data/src.
bool IsWithin(const fs::path& path, const fs::path& dir) {
  auto p = path.begin();
  for (auto d = dir.begin(); d != dir.end(); ++d, ++p) {
    if (d->empty()) continue;  // a trailing separator's empty component
    if (p == path.end() || *p != *d) return false;
  }
  return true;
}

// The image's real path, if it exists inside `src` (already canonical).
absl::StatusOr<fs::path> Resolve(const fs::path& src, const std::string& file) {
  if (file.empty()) return absl::InvalidArgumentError("\"file\" is empty");
  if (file.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError("the file name contains a NUL character");
  }
  const fs::path rel(file);
  if (rel.is_absolute() || rel.has_root_path()) {
    return absl::InvalidArgumentError(
        "absolute paths are not allowed; give paths relative to --src " + src.string());
  }
  for (const fs::path& part : rel) {
    if (part == "..") {
      return absl::InvalidArgumentError("'..' would leave --src " + src.string() +
                                        "; list only files inside it");
    }
  }
  std::error_code ec;
  const fs::path full = fs::weakly_canonical(src / rel, ec);
  if (ec) return absl::InvalidArgumentError("cannot resolve the path: " + ec.message());
  if (!IsWithin(full, src)) {
    return absl::InvalidArgumentError("resolves to " + full.string() + ", outside --src " +
                                      src.string() +
                                      " (a symlink pointing out?); list only files inside it");
  }
  if (!fs::exists(full, ec)) {
    return absl::NotFoundError("no such file under --src " + src.string());
  }
  if (!fs::is_regular_file(full, ec)) return absl::InvalidArgumentError("not a regular file");
  return full;
}

// Reads, crops and resizes one listed image to RGB size x size.
absl::StatusOr<Image> LoadImage(const fs::path& src, const std::string& file, int size) {
  ASSIGN_OR_RETURN(const fs::path full, Resolve(src, file));
  ASSIGN_OR_RETURN(const Image rgb, DecodeToRgb(full.string()));
  return CentreCropResize(rgb, size);
}

// "captions.jsonl:12 (image 'cats/a.png'): " + what: where a bad line is, for the user.
absl::Status AtLine(const absl::Status& status, const std::string& captions, int64_t line,
                    const std::string& file) {
  std::string where = captions + ":" + std::to_string(line);
  where += file.empty() ? " (no image file named)" : " (image '" + file + "')";
  return absl::Status(status.code(), where + ": " + std::string(status.message()));
}

}  // namespace

absl::StatusOr<FolderReport> IngestFolder(const FolderOptions& options) {
  if (options.size < 8 || options.size > 4096) {
    return absl::InvalidArgumentError("--size must be 8..4096, not " +
                                      std::to_string(options.size));
  }
  if (options.max_skipped < 0) return absl::InvalidArgumentError("--max-skipped must be >= 0");
  std::error_code ec;
  const fs::path src = fs::canonical(options.src, ec);
  if (ec || !fs::is_directory(src)) {
    return absl::NotFoundError("--src " + options.src + " is not a directory");
  }
  std::ifstream list(options.captions);
  if (!list || !fs::is_regular_file(options.captions, ec)) {
    return absl::NotFoundError("cannot open --captions " + options.captions +
                               " (a JSONL file, one {\"file\": ..., \"caption\": ...} per line)");
  }

  SampleSpec spec;
  spec.height = spec.width = options.size;
  spec.channels = 3;
  ShardWriterOptions writer_options;
  writer_options.dir = options.out;
  writer_options.source = "loom data folder --captions " + options.captions;
  OutputGuard guard(options.out);
  ASSIGN_OR_RETURN(auto writer, ShardWriter::Create(spec, writer_options));

  FolderReport report;
  std::string line;
  for (int64_t number = 1; std::getline(list, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();  // CRLF files
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    std::string file;
    absl::StatusOr<Entry> entry = ParseLine(line, &file);
    absl::StatusOr<Image> image = entry.ok() ? LoadImage(src, entry->file, options.size)
                                             : absl::StatusOr<Image>(entry.status());
    if (!image.ok()) {
      const absl::Status bad = AtLine(image.status(), options.captions, number, file);
      if (!options.skip_errors) return bad;
      log::Warning() << "skipped " << bad.message();
      ++report.skipped;
      continue;
    }
    RETURN_IF_ERROR(writer->Add(image->pixels.data(), entry->caption));
  }
  if (list.bad()) return absl::DataLossError("cannot read --captions " + options.captions);
  if (report.skipped > options.max_skipped) {
    return absl::InvalidArgumentError(
        options.captions + ": " + std::to_string(report.skipped) + " lines skipped, more than " +
        "--max-skipped " + std::to_string(options.max_skipped) +
        "; no dataset written (fix the lines warned about above, or raise --max-skipped)");
  }
  if (writer->count() == 0) {
    return absl::InvalidArgumentError(options.captions + ": no usable images listed (" +
                                      std::to_string(report.skipped) + " lines skipped)");
  }
  ASSIGN_OR_RETURN(report.manifest, writer->Finish());
  guard.Commit();
  report.samples = report.manifest.total;
  return report;
}

}  // namespace loom::data
