// The frozen BERT text encoder stage (see bert_stage.h).
#include "stages/bert_stage.h"

#include <stdexcept>

#include "stages/registry.h"

namespace loom::stages {

void BertStageOptions::Describe(config::Fields<BertStageOptions>& f) {
  using O = BertStageOptions;
  f.Add("model", &O::model, "the encoder's sizes (Hugging Face BertConfig names)");
  f.Add("max_tokens", &O::max_tokens, "word pieces per caption, [CLS] and [SEP] included").Rule(config::Between(2, 1 << 16));
  f.Add("lowercase", &O::lowercase, "lower-case and strip accents before WordPiece (uncased models)");
  f.Add("source", &O::source, "the checkpoint it was imported from (a record)");
  f.Check([](const O& o) -> std::string {
    if (o.max_tokens > o.model.max_position_embeddings) {
      return "max_tokens " + std::to_string(o.max_tokens) + " exceeds the model's " +
             std::to_string(o.model.max_position_embeddings) + " positions";
    }
    return "";
  });
}

BertStage::BertStage(const BertStageOptions& o, std::shared_ptr<const data::WordPieceTokenizer> tokenizer)
    : options(o), tokenizer_(std::move(tokenizer)) {
  bert = register_module("bert", models::Bert(o.model));
}

LossResult BertStage::Loss(const data::Batch&, const StepContext&) {
  throw std::logic_error("the bert stage is frozen: it has no loss");
}

absl::Status BertStage::Preview(const PreviewData&, const std::string&) {
  return absl::UnimplementedError("a bert text encoder makes no pictures");
}

nlohmann::ordered_json BertStage::Describe() const {
  const models::BertOptions& m = options.model;
  return {{"architecture", "BertModel"},
          {"vocab_size", m.vocab_size},
          {"hidden_size", m.hidden_size},
          {"num_hidden_layers", m.num_hidden_layers},
          {"num_attention_heads", m.num_attention_heads},
          {"intermediate_size", m.intermediate_size},
          {"max_position_embeddings", m.max_position_embeddings},
          {"type_vocab_size", m.type_vocab_size},
          {"layer_norm_eps", m.layer_norm_eps},
          {"max_tokens", options.max_tokens},
          {"lowercase", options.lowercase},
          {"source", options.source}};
}

std::pair<torch::Tensor, torch::Tensor> BertStage::Tokenize(const std::vector<std::string>& captions) const {
  const int64_t B = static_cast<int64_t>(captions.size()), L = options.max_tokens;
  torch::Tensor ids = torch::empty({B, L}, torch::kLong);
  torch::Tensor mask = torch::empty({B, L}, torch::kBool);
  for (int64_t i = 0; i < B; ++i) {
    tokenizer_->Encode(captions[static_cast<size_t>(i)], static_cast<int>(L), ids[i].data_ptr<int64_t>(),
                       mask[i].data_ptr<bool>());
  }
  return {ids, mask};
}

std::pair<torch::Tensor, torch::Tensor> BertStage::EncodeText(const std::vector<std::string>& captions) {
  torch::NoGradGuard no_grad;
  const torch::Device device = bert->word_embeddings->weight.device();
  auto [ids, mask] = Tokenize(captions);
  ids = ids.to(device);
  mask = mask.to(device);
  torch::Tensor features = bert->forward(ids, mask).to(torch::kFloat32);  // [B, L, D]
  return {features, mask};
}

std::vector<CacheField> BertStage::CacheFields() const {
  return {{"text", {options.max_tokens, options.model.hidden_size}}, {"text_mask", {options.max_tokens}}};
}

std::map<std::string, torch::Tensor> BertStage::EncodeBatch(const data::Batch& batch) {
  auto [features, mask] = EncodeText(batch.captions);
  return {{"text", features.to(torch::kCPU).contiguous()},
          {"text_mask", mask.to(torch::kCPU, torch::kFloat32).contiguous()}};
}

absl::StatusOr<std::shared_ptr<Stage>> MakeBertStage(const StageInputs& in) {
  const BertStageOptions& o = *in.options->As<BertStageOptions>();
  const auto vocab = in.assets.find("vocab.txt");
  if (vocab == in.assets.end()) {
    return absl::InvalidArgumentError(
        "a bert text encoder is pretrained, not trained by loom: make its export with "
        "'loom import text-encoder --from DIR --out EXPORT' and name that export where a stage needs one");
  }
  ASSIGN_OR_RETURN(auto tokenizer, data::WordPieceTokenizer::FromVocab(vocab->second, "vocab.txt", o.lowercase));
  if (tokenizer->vocab_size() != o.model.vocab_size) {
    return absl::InvalidArgumentError("vocab.txt holds " + std::to_string(tokenizer->vocab_size()) +
                                      " pieces but the encoder's embedding table has " +
                                      std::to_string(o.model.vocab_size) + " rows; pass the vocab of these weights");
  }
  return std::shared_ptr<Stage>(std::make_shared<BertStage>(o, std::move(tokenizer)));
}

}  // namespace loom::stages
