// A pretrained BERT-family text encoder as a stage (`stage.kind: bert`), frozen: its
// per-token outputs for a caption are the context that later stages attend to. loom
// does not train it; `loom import text-encoder` makes its export from a Hugging Face
// checkpoint (config.json, model.safetensors, vocab.txt). The export carries vocab.txt
// as an asset, so it tokenizes captions itself.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>

#include "core/config/schema.h"
#include "data/wordpiece.h"
#include "models/bert.h"
#include "models/options.h"
#include "stages/stage.h"

namespace loom::stages {

struct BertStageOptions {
  models::BertOptions model;
  int64_t max_tokens = 32;  // word pieces per caption, [CLS] and [SEP] included
  bool lowercase = true;    // lower-case and strip accents before WordPiece (an uncased model)
  std::string source;       // the checkpoint it was imported from (a record, not read)

  static void Describe(config::Fields<BertStageOptions>& f);
};

class BertStage : public Stage, public TextEncoding, public CacheProducer {
 public:
  BertStage(const BertStageOptions& options, std::shared_ptr<const data::WordPieceTokenizer> tokenizer);

  std::string kind() const override { return "bert"; }
  std::vector<Trainable> Trainables() override { return {}; }
  DataNeeds Needs() const override { return {}; }
  LossResult Loss(const data::Batch& batch, const StepContext& ctx) override;
  absl::Status Preview(const PreviewData& data, const std::string& png_path) override;
  nlohmann::ordered_json Describe() const override;
  std::map<std::string, std::string> Assets() const override { return {{"vocab.txt", tokenizer_->serialized()}}; }
  TextEncoding* AsTextEncoding() override { return this; }
  CacheProducer* AsCacheProducer() override { return this; }

  // TextEncoding
  int64_t context_dim() const override { return options.model.hidden_size; }
  int64_t max_tokens() const override { return options.max_tokens; }
  std::pair<torch::Tensor, torch::Tensor> EncodeText(const std::vector<std::string>& captions) override;

  // CacheProducer: "text" [max_tokens, D], the per-token features, and "text_mask"
  // [max_tokens] (1 = real token), of each sample's caption.
  std::vector<CacheField> CacheFields() const override;
  bool needs_pixels() const override { return false; }
  ImageSpec input_spec() const override { return {}; }
  std::map<std::string, torch::Tensor> EncodeBatch(const data::Batch& batch) override;

  // Token ids [B, max_tokens] and mask [B, max_tokens] of `captions`, on the CPU.
  std::pair<torch::Tensor, torch::Tensor> Tokenize(const std::vector<std::string>& captions) const;

  BertStageOptions options;
  models::Bert bert{nullptr};

 private:
  std::shared_ptr<const data::WordPieceTokenizer> tokenizer_;
};

struct StageInputs;
absl::StatusOr<std::shared_ptr<Stage>> MakeBertStage(const StageInputs& inputs);

}  // namespace loom::stages
