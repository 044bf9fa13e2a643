// `loom data inspect`, `loom data tokenizer` and `loom data encode` (single process).
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/single_process.h"
#include "core/args.h"
#include "core/log.h"
#include "core/status.h"
#include "data/inspect.h"
#include "data/manifest.h"
#include "data/shard_reader.h"
#include "data/tokenizer.h"
#include "dist/placement.h"
#include "dist/runtime.h"
#include "pipeline/encode.h"

namespace loom::cli {
namespace {

absl::Status RunInspect(const std::string& name, const std::vector<std::string>& argv) {
  std::string path;
  ArgParser args(name, "Checks every shard of a dataset directory (or of each dataset directory\n"
                       "inside PATH) against the manifest, the schema and the checksums, reading\n"
                       "every sample. Exits non-zero naming the first defective file.");
  args.Positional("PATH", &path, "dataset directory, or a directory of them");
  ASSIGN_OR_RETURN(bool run, args.Parse(argv));
  if (!run) return absl::OkStatus();
  RETURN_IF_ERROR(SingleProcess(name));
  ASSIGN_OR_RETURN(data::InspectReport report, data::Inspect(path));
  log::Info() << path << ": ok, " << report.datasets << " dataset(s), " << report.shards
              << " shard(s), " << report.samples << " samples, " << report.bytes << " bytes";
  nlohmann::json j = {{"path", path},          {"ok", true},
                      {"datasets", report.datasets}, {"shards", report.shards},
                      {"samples", report.samples},   {"bytes", report.bytes}};
  log::Info() << j.dump();
  return absl::OkStatus();
}

absl::Status RunTokenizer(const std::string& name, const std::vector<std::string>& argv) {
  std::string dir, out;
  int64_t vocab = 1024;
  ArgParser args(name, "Trains the caption tokenizer (SentencePiece BPE) on every caption of a\n"
                       "dataset and writes its model file; deterministic for the same captions.");
  args.Flag("data", &dir, "dataset directory (manifest.json + shards)").Required();
  args.Flag("out", &out, "tokenizer file to write (default: DATA/tokenizer.model)");
  args.Flag("vocab", &vocab, "vocabulary size (an upper bound for small caption sets)");
  ASSIGN_OR_RETURN(bool run, args.Parse(argv));
  if (!run) return absl::OkStatus();
  RETURN_IF_ERROR(SingleProcess(name));
  if (out.empty()) out = dir + "/tokenizer.model";
  ASSIGN_OR_RETURN(data::Manifest manifest, data::ReadManifest(dir));
  std::vector<std::string> captions;
  captions.reserve(static_cast<size_t>(manifest.total));
  for (const data::ShardEntry& e : manifest.shards) {
    ASSIGN_OR_RETURN(auto reader, data::ShardReader::Open(dir + "/" + e.file, &manifest.spec, manifest.caches));
    captions.insert(captions.end(), reader->captions().begin(), reader->captions().end());
  }
  ASSIGN_OR_RETURN(auto tokenizer, data::Tokenizer::Train(captions, static_cast<int>(vocab)));
  RETURN_IF_ERROR(tokenizer->Save(out));
  log::Info() << "wrote " << out << ": vocabulary " << tokenizer->vocab_size() << " from "
              << captions.size() << " captions";
  log::Info() << nlohmann::json({{"out", out}, {"vocab", tokenizer->vocab_size()},
                                 {"captions", captions.size()}})
                     .dump();
  return absl::OkStatus();
}

absl::Status RunEncode(const std::string& name, const std::vector<std::string>& argv) {
  pipeline::EncodeOptions o;
  ArgParser args(name, "Writes a copy of a dataset whose samples also carry what a frozen model computes\n"
                       "from them (a VAE export: its latents; a text encoder: per-token features of the\n"
                       "caption), beside the caches the source already carries, for stages that train on\n"
                       "them. The manifest records each cache's model and content hash. Last line: JSON.");
  args.Flag("data", &o.data, "source dataset directory (e.g. datasets/fashion/train)").Required();
  args.Flag("with", &o.with, "the export that computes the cache (e.g. a vae export)").Required();
  args.Flag("out", &o.out, "new dataset directory").Required();
  args.Flag("flip", &o.flip, "also store the encoding of each horizontally flipped image (for data.flip)");
  args.Flag("batch", &o.batch, "images encoded at once");
  ASSIGN_OR_RETURN(bool run, args.Parse(argv));
  if (!run) return absl::OkStatus();
  RETURN_IF_ERROR(SingleProcess(name));
  dist::PlaceProcess(dist::Runtime::Info());
  ASSIGN_OR_RETURN(pipeline::EncodeReport r, pipeline::EncodeDataset(o));
  log::Info() << "wrote " << o.out << ": " << r.samples << " samples encoded by " << o.with << " in "
              << static_cast<int64_t>(r.seconds) << " s";
  log::Info() << nlohmann::json({{"out", o.out}, {"data", o.data}, {"with", o.with}, {"hash", r.hash},
                                 {"samples", r.samples}, {"flip", o.flip}, {"seconds", r.seconds}})
                     .dump();
  return absl::OkStatus();
}

}  // namespace

std::vector<Command> DataCommands() {
  return {
      {"data inspect", "check every shard against manifest, schema and checksums", RunInspect},
      {"data tokenizer", "train the caption tokenizer of a dataset", RunTokenizer},
      {"data encode", "cache a frozen model's outputs (VAE latents, text features) with a dataset", RunEncode},
  };
}

}  // namespace loom::cli
