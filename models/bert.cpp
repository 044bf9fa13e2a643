// The BERT encoder (see bert.h).
#include "models/bert.h"

#include <optional>
#include <string>

namespace loom::models {
namespace {

// A named level of the module tree that holds submodules only, so parameter names
// follow BertModel's ("attention.self.query.weight").
std::shared_ptr<torch::nn::Module> Level(torch::nn::Module& parent, const std::string& name) {
  return parent.register_module(name, std::make_shared<torch::nn::Module>(name));
}

torch::nn::LayerNorm Norm(const BertOptions& o) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.hidden_size}).eps(o.layer_norm_eps));
}

}  // namespace

BertLayerImpl::BertLayerImpl(const BertOptions& o) : heads(o.num_attention_heads) {
  const int64_t d = o.hidden_size;
  auto attention = Level(*this, "attention");
  auto self = Level(*attention, "self");
  query = self->register_module("query", torch::nn::Linear(d, d));
  key = self->register_module("key", torch::nn::Linear(d, d));
  value = self->register_module("value", torch::nn::Linear(d, d));
  auto attention_output = Level(*attention, "output");
  attention_dense = attention_output->register_module("dense", torch::nn::Linear(d, d));
  attention_norm = attention_output->register_module("LayerNorm", Norm(o));
  intermediate = Level(*this, "intermediate")->register_module("dense", torch::nn::Linear(d, o.intermediate_size));
  auto output = Level(*this, "output");
  output_dense = output->register_module("dense", torch::nn::Linear(o.intermediate_size, d));
  output_norm = output->register_module("LayerNorm", Norm(o));
}

torch::Tensor BertLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  const int64_t B = x.size(0), L = x.size(1), D = x.size(2);
  auto split = [&](const torch::Tensor& t) { return t.view({B, L, heads, D / heads}).transpose(1, 2); };
  const torch::Tensor q = split(query->forward(x));  // [B, H, L, D/H]
  const torch::Tensor k = split(key->forward(x));    // [B, H, L, D/H]
  const torch::Tensor v = split(value->forward(x));  // [B, H, L, D/H]
  const std::optional<torch::Tensor> attend = mask.view({B, 1, 1, L});          // keys every query may see
  torch::Tensor a = torch::scaled_dot_product_attention(q, k, v, attend);       // [B, H, L, D/H]
  a = a.transpose(1, 2).reshape({B, L, D});                                      // [B, L, D]
  const torch::Tensor h = attention_norm->forward(x + attention_dense->forward(a));  // [B, L, D]
  const torch::Tensor f = output_dense->forward(torch::gelu(intermediate->forward(h)));  // [B, L, D], exact GELU
  return output_norm->forward(h + f);                                            // [B, L, D]
}

BertImpl::BertImpl(const BertOptions& o) : options(o) {
  auto embeddings = Level(*this, "embeddings");
  word_embeddings = embeddings->register_module("word_embeddings", torch::nn::Embedding(o.vocab_size, o.hidden_size));
  position_embeddings = embeddings->register_module(
      "position_embeddings", torch::nn::Embedding(o.max_position_embeddings, o.hidden_size));
  token_type_embeddings =
      embeddings->register_module("token_type_embeddings", torch::nn::Embedding(o.type_vocab_size, o.hidden_size));
  embedding_norm = embeddings->register_module("LayerNorm", Norm(o));
  auto list = Level(*this, "encoder")->register_module("layer", torch::nn::ModuleList());
  for (int i = 0; i < o.num_hidden_layers; ++i) {
    layers.push_back(BertLayer(o));
    list->push_back(layers.back());
  }
}

torch::Tensor BertImpl::forward(const torch::Tensor& tokens, const torch::Tensor& mask) {
  const int64_t L = tokens.size(1);
  TORCH_CHECK(L <= options.max_position_embeddings, "Bert: ", L, " tokens but ", options.max_position_embeddings,
              " positions");
  const torch::Tensor positions = torch::arange(L, tokens.options());  // [L]
  torch::Tensor x = word_embeddings->forward(tokens) + token_type_embeddings->forward(torch::zeros_like(tokens));
  x = embedding_norm->forward(x + position_embeddings->forward(positions).unsqueeze(0));  // [B, L, D]
  for (BertLayer& layer : layers) x = layer->forward(x, mask);                            // [B, L, D]
  return x;
}

}  // namespace loom::models
