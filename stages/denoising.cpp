// What the text-to-image diffusion stages share (see denoising.h).
#include "stages/denoising.h"

#include "core/rng.h"
#include "eval/image_grid.h"
#include "eval/prompt_eval.h"
#include "stages/registry.h"

namespace loom::stages {

void JudgedEvalOptions::Describe(config::Fields<JudgedEvalOptions>& f) {
  using O = JudgedEvalOptions;
  f.Add("judge", &O::judge, "judge directory made by 'loom eval classifier' (needed when train.eval_every > 0)");
  f.Add("per_class", &O::per_class, "samples per class and template").Rule(config::Positive());
  f.Add("steps", &O::steps, "DDIM steps of the evaluation samples").Rule(config::Positive());
  f.Add("cfg", &O::cfg, "guidance scale of the evaluation samples").Rule(config::AtLeast(0));
  f.Add("templates", &O::templates, "prompt templates ({class}, {a_class}); empty: the defaults");
}

TrainingDraws DrawTraining(const torch::Tensor& source, double latent_scale, const torch::Tensor& ids, uint64_t seed,
                           int64_t step, const diffusion::Process& process, int64_t tokens) {
  const bool latent = latent_scale > 0;
  const int64_t B = source.size(0);
  const int64_t C = latent ? source.size(1) / 2 : source.size(1);
  TrainingDraws d;
  if (latent) {
    std::vector<int64_t> shape = source.sizes().vec();  // [B, 2C, ...]
    shape[1] = C;
    d.x0 = torch::empty(shape);
  } else {
    d.x0 = source;
  }
  d.t = torch::empty({B}, process.time_dtype());
  d.noise = torch::empty_like(d.x0);
  const torch::Tensor row_ids = ids.to(torch::kCPU, torch::kLong).contiguous();
  for (int64_t i = 0; i < B; ++i) {
    const uint64_t id = static_cast<uint64_t>(row_ids.data_ptr<int64_t>()[i]);
    at::Generator gen = at::detail::createCPUGenerator(SeedFor(seed, static_cast<uint64_t>(step), id));
    d.t[i] = process.DrawTime(gen, tokens);
    d.noise[i].copy_(torch::randn(d.x0[i].sizes(), gen));
    if (latent) {
      const torch::Tensor mean = source[i].narrow(0, 0, C), logvar = source[i].narrow(0, C, C).clamp(-30, 20);
      const torch::Tensor z = mean + torch::exp(0.5 * logvar) * torch::randn(mean.sizes(), gen);
      d.x0[i].copy_(z * latent_scale);
    }
  }
  return d;
}

torch::Tensor SamplingNoise(int64_t rows, int64_t channels, int64_t size, uint64_t seed) {
  torch::Tensor noise = torch::empty({rows, channels, size, size});
  for (int64_t i = 0; i < rows; ++i) {
    at::Generator gen = at::detail::createCPUGenerator(SeedFor(seed, 0x53414d50ull, static_cast<uint64_t>(i)));
    noise[i].copy_(torch::randn(noise[i].sizes(), gen));
  }
  return noise;
}

std::vector<Trainable> WholeStage(std::shared_ptr<torch::nn::Module> stage, const train::OptimOptions& optim,
                                  double ema) {
  Trainable t;
  t.name = "model";
  t.module = std::move(stage);
  t.optim = optim;
  t.ema = ema;
  return {t};
}

bool DropsCaption(uint64_t seed, int64_t step, uint64_t id, double dropout) {
  SplitMix64 coin(SeedFor(seed ^ 0xD809ull, static_cast<uint64_t>(step), id));
  return coin.Uniform() < dropout;
}

void EmptyCaption(torch::Tensor tokens, torch::Tensor mask) {
  tokens.fill_(data::Tokenizer::kPad);
  tokens.select(1, 0).fill_(data::Tokenizer::kStart);
  mask.fill_(false);
  mask.select(1, 0).fill_(true);
}

void InsertNoiseTokens(torch::Tensor tokens, torch::Tensor mask, int64_t vocab, SplitMix64& rng) {
  const int64_t L = tokens.size(0);
  int64_t* ids = tokens.data_ptr<int64_t>();
  bool* real = mask.data_ptr<bool>();
  int64_t n = 0;
  while (n < L && real[n]) ++n;
  if (vocab <= data::Tokenizer::kStart + 1) return;
  const int inserts = 1 + static_cast<int>(rng.Below(2));
  for (int k = 0; k < inserts && n < L; ++k) {
    const int64_t at = 1 + static_cast<int64_t>(rng.Below(static_cast<uint64_t>(n)));  // after the start token
    for (int64_t j = n; j > at; --j) ids[j] = ids[j - 1];
    const int64_t first = data::Tokenizer::kStart + 1;  // the first id of a real piece
    ids[at] = first + static_cast<int64_t>(rng.Below(static_cast<uint64_t>(vocab - first)));
    real[n] = true;
    ++n;
  }
}

std::pair<torch::Tensor, torch::Tensor> TrainingCaptions(const data::Batch& batch, uint64_t seed, int64_t step,
                                                         double dropout, double caption_noise, int64_t vocab) {
  torch::Tensor tokens = batch.tokens.clone(), mask = batch.mask.clone();
  const torch::Tensor ids = batch.ids.to(torch::kCPU, torch::kLong).contiguous();
  for (int64_t i = 0; i < tokens.size(0); ++i) {
    const uint64_t id = static_cast<uint64_t>(ids.data_ptr<int64_t>()[i]);
    if (DropsCaption(seed, step, id, dropout)) {
      EmptyCaption(tokens.narrow(0, i, 1), mask.narrow(0, i, 1));
    } else if (caption_noise > 0) {
      SplitMix64 noise_coin(SeedFor(seed ^ 0x4E4F4953ull, static_cast<uint64_t>(step), id));
      if (noise_coin.Uniform() < caption_noise) InsertNoiseTokens(tokens[i], mask[i], vocab, noise_coin);
    }
  }
  return {tokens, mask};
}

absl::StatusOr<std::shared_ptr<const data::Tokenizer>> CaptionTokenizer(
    const std::map<std::string, std::string>& assets, const data::DataOptions& data, int64_t vocab) {
  std::shared_ptr<const data::Tokenizer> tokenizer;
  if (const auto it = assets.find("tokenizer.model"); it != assets.end()) {
    ASSIGN_OR_RETURN(tokenizer, data::Tokenizer::FromBytes(it->second, "the saved tokenizer.model"));
  } else {
    if (data.train.empty() && data.tokenizer.empty()) {
      return absl::InvalidArgumentError("data.train is empty: name a dataset directory");
    }
    const std::string path = data.tokenizer.empty() ? data.train + "/tokenizer.model" : data.tokenizer;
    ASSIGN_OR_RETURN(tokenizer, data::Tokenizer::Load(path));
  }
  if (tokenizer->vocab_size() > vocab) {
    return absl::InvalidArgumentError("the tokenizer has " + std::to_string(tokenizer->vocab_size()) +
                                      " tokens but stage.model.text.vocab is " + std::to_string(vocab) +
                                      "; raise stage.model.text.vocab");
  }
  return tokenizer;
}

torch::Tensor TokenizePrompts(const data::Tokenizer& tokenizer, const std::vector<std::string>& prompts,
                              int64_t max_tokens, torch::Tensor* mask) {
  const int64_t n = static_cast<int64_t>(prompts.size());
  torch::Tensor tokens = torch::empty({n, max_tokens}, torch::kLong);
  *mask = torch::empty({n, max_tokens}, torch::kBool);
  for (int64_t i = 0; i < n; ++i) {
    tokenizer.Encode(prompts[static_cast<size_t>(i)], static_cast<int>(max_tokens), tokens[i].data_ptr<int64_t>(),
                     (*mask)[i].data_ptr<bool>());
  }
  return tokens;
}

absl::Status PreviewPrompts(TextToImage& model, const PreviewData& data, const GenerateOptions& options,
                            const std::string& png_path) {
  std::vector<std::string> prompts;
  for (const std::string& name : data.label_names) prompts.push_back(eval::RenderTemplate("a photo of {a_class}", name));
  for (size_t i = 0; prompts.empty() && i < data.batch.captions.size() && i < 8; ++i) {
    prompts.push_back(data.batch.captions[i]);
  }
  if (prompts.empty()) return absl::OkStatus();
  constexpr int kPerPrompt = 4;
  std::vector<std::string> rows;
  for (size_t i = 0; i < prompts.size() * kPerPrompt; ++i) rows.push_back(prompts[i % prompts.size()]);
  ASSIGN_OR_RETURN(torch::Tensor images, model.Generate(rows, options));
  return eval::WriteGrid(png_path, images, static_cast<int>(prompts.size()));
}

absl::StatusOr<DenoisedSpace> ResolveDenoisedSpace(const StageInputs& in, const std::string& vae_option) {
  DenoisedSpace s{nullptr, in.data.channels, in.data.image_size, {in.data.image_size, in.data.channels, in.data.fit}};
  if (vae_option.empty()) return s;
  const auto it = in.dependencies.find("vae");
  if (it == in.dependencies.end() || it->second->AsAutoencoder() == nullptr) {
    return absl::InvalidArgumentError("stage.vae: " + vae_option + " is not loaded as a VAE");
  }
  s.vae = it->second;
  const Autoencoder* ae = s.vae->AsAutoencoder();
  const std::vector<int64_t> latent = ae->latent_shape();
  s.channels = latent[0];
  s.size = latent[1];
  s.images = ae->image_spec();
  return s;
}

nlohmann::ordered_json DescribeDiffusion(const diffusion::DiffusionOptions& o) {
  if (o.process == "flow") {
    return {{"process", "flow"},
            {"prediction", "velocity"},
            {"logit_mean", o.flow.logit_mean},
            {"logit_std", o.flow.logit_std},
            {"shift", o.flow.shift},
            {"shift_tokens", o.flow.shift_tokens}};
  }
  return {{"process", "gaussian"},
          {"schedule", o.schedule},
          {"timesteps", o.timesteps},
          {"prediction", o.prediction},
          {"loss_weight", o.loss_weight},
          {"snr_gamma", o.snr_gamma}};
}

absl::Status CheckJudgeNamed(const JudgedEvalOptions& eval, int64_t eval_every) {
  if (eval_every > 0 && eval.judge.empty()) {
    return absl::InvalidArgumentError("train.eval_every is " + std::to_string(eval_every) +
                                      " but stage.eval.judge is empty; name a judge made by 'loom eval classifier' "
                                      "or set train.eval_every: 0");
  }
  return absl::OkStatus();
}

absl::StatusOr<nlohmann::ordered_json> JudgedEvaluation::Run(TextToImage& model, const PreviewData& data) {
  if (!judge_) {
    if (options_.judge.empty()) {
      return absl::InvalidArgumentError("train.eval_every is set but stage.eval.judge is empty; name a judge made by "
                                        "'loom eval classifier' or set train.eval_every: 0");
    }
    ASSIGN_OR_RETURN(eval::Judge judge, eval::Judge::Load(options_.judge));
    RETURN_IF_ERROR(eval::CheckJudgeFits(judge, images_.size, images_.channels, images_.fit));
    judge_ = std::move(judge);
  }
  eval::PromptEvalOptions eo;
  eo.per_class = options_.per_class;
  eo.steps = options_.steps;
  eo.cfg = options_.cfg;
  eo.seed = data.seed;
  eo.templates = options_.templates;
  const auto generate = [&](const std::vector<std::string>& prompts, uint64_t seed) {
    return model.Generate(prompts, {eo.cfg, eo.steps, seed});
  };
  ASSIGN_OR_RETURN(eval::PromptEvalResult r, eval::EvaluatePrompts(generate, *judge_, eo));
  return r.ToJson();
}

}  // namespace loom::stages
