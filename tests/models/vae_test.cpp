// The KL autoencoder and the patch discriminator: shapes through every level, latent
// diffusion's parameter names, the downsampling factor, FLOPs against PyTorch's own
// count, and option checks.
#include <gtest/gtest.h>

#include "models/vae.h"

namespace loom::models {
namespace {

VaeOptions Small() {
  VaeOptions o;
  o.ch = 32;
  o.ch_mult = {1, 2, 4};
  o.num_res_blocks = 1;
  o.z_channels = 4;
  o.groups = 32;
  return o;
}

TEST(Vae, EncodesToMomentsAtOneFourthAndDecodesBack) {
  AutoencoderKL vae(Small(), 1);
  const torch::Tensor x = torch::rand({2, 1, 32, 32}) * 2 - 1;
  const torch::Tensor moments = vae->encode(x);
  EXPECT_EQ(moments.sizes(), (std::vector<int64_t>{2, 8, 8, 8}));
  EXPECT_EQ(vae->decode(moments.narrow(1, 0, 4)).sizes(), x.sizes());
  EXPECT_EQ(VaeFactor(Small()), 4);
  // Latent diffusion's names, so its weights map one to one.
  std::vector<std::string> names;
  for (const auto& p : vae->named_parameters()) names.push_back(p.key());
  for (const char* want : {"encoder.down.0.block.0.conv1.weight", "encoder.down.1.downsample.conv.weight",
                           "encoder.down.2.block.0.nin_shortcut.weight", "encoder.mid.attn_1.proj_out.weight",
                           "decoder.up.2.block.1.norm2.weight", "decoder.up.1.upsample.conv.weight",
                           "decoder.conv_out.bias", "quant_conv.weight", "post_quant_conv.bias"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
  }
  int64_t n = 0;
  for (const auto& p : vae->parameters()) n += p.numel();
  EXPECT_EQ(n, 2700933);  // what PyTorch's reference of the same options counts
}

TEST(Vae, CountsTheFlopsPyTorchCounts) {
  // torch.utils.flop_counter on bench/reference/vae_ref.py, one 32x32 image, encode +
  // decode: 704,456,704.
  EXPECT_NEAR(VaeForwardFlops(Small(), 1, 32), 704456704.0, 704456704.0 * 0.001);
}

TEST(Vae, ChecksItsOptions) {
  VaeOptions o = Small();
  EXPECT_TRUE(CheckVae(o, 32).ok());
  EXPECT_NE(CheckVae(o, 30).message().find("divisible by f = 4"), absl::string_view::npos);
  o.groups = 24;
  EXPECT_NE(CheckVae(o, 32).message().find("divisible by groups 24"), absl::string_view::npos);
}

TEST(Discriminator, GivesALogitPerPatch) {
  PatchDiscriminator d(1, 16, 2);
  EXPECT_EQ(d->forward(torch::randn({3, 1, 32, 32})).sizes(), (std::vector<int64_t>{3, 1, 6, 6}));
  int batch_norms = 0;
  for (const auto& b : d->named_buffers()) batch_norms += b.key().ends_with("running_mean");
  EXPECT_EQ(batch_norms, 2);
}

}  // namespace
}  // namespace loom::models
