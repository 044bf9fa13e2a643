// The list of stage kinds (see registry.h). Adding a kind: its options, its
// dependencies and its maker, here and nowhere else.
#include "stages/registry.h"

#include "stages/bert_stage.h"
#include "stages/clip_stage.h"
#include "stages/dit_stage.h"
#include "stages/ldm_stage.h"
#include "stages/prior_stage.h"
#include "stages/unclip_stage.h"
#include "stages/vae_stage.h"
#include "stages/video_dit_stage.h"
#include "stages/video_vae_stage.h"

namespace loom::stages {

const std::vector<StageKind>& StageKinds() {
  static const std::vector<StageKind> kinds = {
      {config::KindOf<DiTStageOptions>("dit", "text-to-image DiT on pixels, or on a frozen VAE's latents"),
       [](const config::Tagged& t) {
         const DiTStageOptions& o = *t.As<DiTStageOptions>();
         return o.vae.empty() ? std::vector<Dependency>{} : std::vector<Dependency>{{"vae", o.vae, "vae"}};
       },
       MakeDiTStage},
      {config::KindOf<VaeStageOptions>("vae", "KL-regularised autoencoder (+ patch discriminator) for latent models"),
       [](const config::Tagged&) { return std::vector<Dependency>{}; }, MakeVaeStage},
      {config::KindOf<LdmStageOptions>("ldm", "latent diffusion U-Net with cross-attention, under a frozen text encoder"),
       [](const config::Tagged& t) {
         const LdmStageOptions& o = *t.As<LdmStageOptions>();
         std::vector<Dependency> d;
         if (!o.vae.empty()) d.push_back({"vae", o.vae, "vae"});
         if (!o.text_encoder.empty()) d.push_back({"text_encoder", o.text_encoder, ""});  // any that encodes text
         return d;
       },
       MakeLdmStage},
      {config::KindOf<ClipStageOptions>("clip", "CLIP: image and text towers under a contrastive loss over the global batch"),
       [](const config::Tagged&) { return std::vector<Dependency>{}; }, MakeClipStage},
      {config::KindOf<PriorStageOptions>("prior", "DALL-E 2's diffusion prior: CLIP text to CLIP image embeddings"),
       [](const config::Tagged& t) {
         const PriorStageOptions& o = *t.As<PriorStageOptions>();
         return o.clip.empty() ? std::vector<Dependency>{} : std::vector<Dependency>{{"clip", o.clip, "clip"}};
       },
       MakePriorStage},
      {config::KindOf<UnclipStageOptions>("unclip", "DALL-E 2's decoder: pixels from a CLIP image embedding and the caption"),
       [](const config::Tagged& t) {
         const UnclipStageOptions& o = *t.As<UnclipStageOptions>();
         std::vector<Dependency> d;
         if (!o.clip.empty()) d.push_back({"clip", o.clip, "clip"});
         if (!o.prior.empty()) d.push_back({"prior", o.prior, "prior"});
         return d;
       },
       MakeUnclipStage},
      {config::KindOf<VideoVaeStageOptions>("video_vae", "causal 3-D convolutional VAE of clips (and images as one frame)"),
       [](const config::Tagged&) { return std::vector<Dependency>{}; }, MakeVideoVaeStage},
      {config::KindOf<VideoDiTStageOptions>("video_dit", "text-to-video DiT over space-time latent tokens of a frozen video VAE"),
       [](const config::Tagged& t) {
         const VideoDiTStageOptions& o = *t.As<VideoDiTStageOptions>();
         return o.vae.empty() ? std::vector<Dependency>{} : std::vector<Dependency>{{"vae", o.vae, "video_vae"}};
       },
       MakeVideoDiTStage},
      {config::KindOf<BertStageOptions>("bert", "pretrained BERT-family text encoder, frozen (made by loom import text-encoder)"),
       [](const config::Tagged&) { return std::vector<Dependency>{}; }, MakeBertStage},
  };
  return kinds;
}

std::vector<config::KindInfo> StageKindOptions() {
  std::vector<config::KindInfo> out;
  for (const StageKind& k : StageKinds()) out.push_back(k.options);
  return out;
}

absl::StatusOr<const StageKind*> FindStageKind(const std::string& name) {
  for (const StageKind& k : StageKinds()) {
    if (k.options.name == name) return &k;
  }
  return absl::InvalidArgumentError("'" + name + "' is not a stage kind; " + config::KindNames(StageKindOptions()));
}

absl::StatusOr<std::shared_ptr<Stage>> MakeStage(const StageInputs& inputs) {
  if (inputs.options == nullptr || inputs.options->options() == nullptr) {
    return absl::InvalidArgumentError("no stage kind chosen: set stage.kind to " + config::KindNames(StageKindOptions()));
  }
  ASSIGN_OR_RETURN(const StageKind* kind, FindStageKind(inputs.options->kind()));
  for (const Dependency& d : kind->dependencies(*inputs.options)) {
    const auto it = inputs.dependencies.find(d.name);
    if (it == inputs.dependencies.end()) {
      return absl::InvalidArgumentError("stage." + d.name + " (" + d.path + ") was not loaded");
    }
    if (!d.kind.empty() && it->second->kind() != d.kind) {
      return absl::InvalidArgumentError("stage." + d.name + ": " + d.path + " is a '" + it->second->kind() +
                                        "' model; this option needs a '" + d.kind + "' export");
    }
  }
  return kind->make(inputs);
}

}  // namespace loom::stages
