// The latent diffusion U-Net: shapes through down, middle and up paths with skips; a
// fresh network predicts zero (its last convolution starts at zero); text enters by
// cross-attention and padded tokens are ignored; every parameter is reached by the
// gradient; the extra conditioning (input channels, an embedding vector, context tokens
// made from it); option checks.
#include <gtest/gtest.h>

#include "models/unet.h"

namespace loom::models {
namespace {

UNetConfig Small() {
  UNetConfig c;
  c.in_channels = 4;
  c.out_channels = 4;
  c.model_channels = 16;
  c.channel_mult = {1, 2, 2};
  c.num_res_blocks = 1;
  c.attention_resolutions = {2, 4};
  c.heads = 2;
  c.groups = 8;
  c.context_dim = 12;
  return c;
}

// Gives every zero-initialised layer random weights, so that outputs and gradients are
// not trivially zero.
void Wake(UNet& net) {
  torch::NoGradGuard no_grad;
  for (auto& p : net->parameters()) {
    if (p.abs().max().item<double>() == 0) p.normal_(0, 0.05);
  }
}

struct Inputs {
  torch::Tensor x = torch::randn({2, 4, 8, 8});
  torch::Tensor t = torch::tensor({3, 700}, torch::kLong);
  torch::Tensor context = torch::randn({2, 5, 12});
  torch::Tensor mask = torch::tensor({1, 1, 1, 0, 0, 1, 1, 1, 1, 1}, torch::kBool).view({2, 5});
};

TEST(UNet, StartsAtZeroAndKeepsTheShape) {
  torch::manual_seed(1);
  UNet net(Small());
  Inputs in;
  const torch::Tensor out = net->forward(in.x, in.t, in.context, in.mask);
  EXPECT_EQ(out.sizes(), in.x.sizes());
  EXPECT_EQ(out.abs().max().item<double>(), 0.0);
  // Levels 8x8, 4x4, 2x2: one ResBlock + (transformer at factors 2 and 4) per level,
  // two downsamplers; each output level has num_res_blocks + 1 ResBlocks.
  EXPECT_EQ(net->input_blocks.size(), 5u);
  EXPECT_EQ(net->output_blocks.size(), 6u);
  std::vector<std::string> names;
  for (const auto& p : net->named_parameters()) names.push_back(p.key());
  for (const char* want : {"input_blocks.1.down.weight", "input_blocks.2.attn.transformer_blocks.0.attn2.k.weight",
                           "middle_attn.proj_out.weight", "output_blocks.1.up.weight", "output_blocks.0.res.skip.weight",
                           "time_embed.2.weight", "conv_out.bias"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
  }
}

TEST(UNet, AttendsToRealTokensOnlyAndReachesEveryParameter) {
  torch::manual_seed(2);
  UNet net(Small());
  Wake(net);
  Inputs in;
  const torch::Tensor out = net->forward(in.x, in.t, in.context, in.mask);
  // A padded token of sample 0 changed: nothing changes.
  torch::Tensor other = in.context.clone();
  other[0][4] += 3;
  EXPECT_TRUE(torch::allclose(net->forward(in.x, in.t, other, in.mask), out, 1e-5, 1e-6));
  // A real token changed: sample 0's prediction changes, sample 1's does not.
  other[0][1] += 3;
  const torch::Tensor moved = net->forward(in.x, in.t, other, in.mask);
  EXPECT_GT((moved[0] - out[0]).abs().max().item<double>(), 1e-4);
  EXPECT_TRUE(torch::allclose(moved[1], out[1], 1e-5, 1e-6));
  // The timestep matters too.
  EXPECT_GT((net->forward(in.x, in.t + 100, in.context, in.mask) - out).abs().max().item<double>(), 1e-4);

  out.pow(2).sum().backward();
  for (const auto& p : net->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    if (p.key().ends_with(".k.bias")) continue;  // softmax ignores a bias shared by all keys
    EXPECT_GT(p.value().grad().abs().max().item<double>(), 0) << p.key();
  }
}

TEST(UNet, TakesExtraChannelsAndAnEmbedding) {
  torch::manual_seed(3);
  UNetOptions o;
  o.model_channels = 16;
  o.groups = 8;
  o.heads = 2;
  o.extra_in_channels = 1;
  o.embed_dim = 6;
  o.embed_tokens = 2;
  const auto c = ResolveUNet(o, 4, 4, 8, 12);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->in_channels, 5);
  UNet net(*c);
  Wake(net);
  Inputs in;
  const torch::Tensor x = torch::cat({in.x, torch::randn({2, 1, 8, 8})}, 1);
  const torch::Tensor e = torch::randn({2, 6});
  const torch::Tensor out = net->forward(x, in.t, in.context, in.mask, e);
  EXPECT_EQ(out.sizes(), in.x.sizes());
  EXPECT_GT((net->forward(x, in.t, in.context, in.mask, e * 2) - out).abs().max().item<double>(), 1e-4);
  EXPECT_ANY_THROW(net->forward(x, in.t, in.context, in.mask));  // the embedding is required
}

TEST(UNet, ChecksItsOptions) {
  UNetOptions o;
  EXPECT_TRUE(ResolveUNet(o, 4, 4, 8, 384).ok());
  EXPECT_NE(ResolveUNet(o, 4, 4, 6, 384).status().message().find("divisible by 4"), absl::string_view::npos);
  o.attention_resolutions = {8};
  EXPECT_NE(ResolveUNet(o, 4, 4, 8, 384).status().message().find("attention_resolutions holds 8"),
            absl::string_view::npos);
  o.attention_resolutions = {2};
  o.groups = 24;
  EXPECT_NE(ResolveUNet(o, 4, 4, 8, 384).status().message().find("divisible by groups 24"), absl::string_view::npos);
  o.size = "XL";
  EXPECT_NE(ResolveUNet(o, 4, 4, 8, 384).status().message().find("not a registered U-Net size (B, S, XS)"),
            absl::string_view::npos);
  o.size = "S";
  o.groups = 32;
  EXPECT_TRUE(ResolveUNet(o, 4, 4, 8, 384).ok());
  const auto s = ResolveUNet(o, 4, 4, 8, 384);
  EXPECT_EQ(s->model_channels, 64);
  EXPECT_GT(UNetForwardFlops(*s, 8, 2, 32), 1.99 * UNetForwardFlops(*s, 8, 1, 32));
}

}  // namespace
}  // namespace loom::models
