// `loom import text-encoder`: a pretrained BERT-family checkpoint in Hugging Face's
// layout (config.json, model.safetensors, vocab.txt, optionally tokenizer_config.json)
// as a loom export of kind "bert", frozen, for stages that condition on its per-token
// outputs. Clusters are air-gapped: the files come from a local directory, never the
// network.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "core/status.h"

namespace loom::pipeline {

struct TextEncoderImport {
  std::string from;         // the checkpoint's directory
  std::string out;          // the export to write
  int64_t max_tokens = 32;  // word pieces per caption, [CLS] and [SEP] included
};

struct ImportReport {
  std::string hash;  // the export's content hash
  int64_t parameters = 0;
  int64_t vocab = 0;
  int64_t width = 0;     // per-token output width (the context width)
  int64_t ignored = 0;   // tensors of the checkpoint loom does not use (pooler, heads)
  bool lowercase = true;
};

absl::StatusOr<ImportReport> ImportTextEncoder(const TextEncoderImport& options);

}  // namespace loom::pipeline
