// DiT and the text encoder: shapes, DiT's zero initialisation, padding that never leaks
// into the image, gradients reaching the text encoder through cross-attention, patch
// round trips, registered sizes and the FLOP count.
#include <gtest/gtest.h>

#include "models/dit.h"
#include "models/text_encoder.h"

namespace loom::models {
namespace {

class DiTTest : public ::testing::Test {
 protected:
  void SetUp() override {
    torch::manual_seed(0);
    config.image_size = 16;
    config.channels = 3;
    config.patch = 4;
    config.width = 32;
    config.depth = 2;
    config.heads = 4;
    config.context_dim = 24;
    text_options.width = 24;
    text_options.depth = 1;
    text_options.heads = 2;
    text_options.vocab = 50;
  }
  // Random output weights, so the model's output depends on its inputs.
  void Wake(DiT& dit) {
    torch::NoGradGuard no_grad;
    dit->final_linear->weight.normal_(0, 0.1);
    dit->final_adaLN->weight.normal_(0, 0.1);
    for (auto& b : dit->block_list) b->adaLN_modulation->weight.normal_(0, 0.1);
  }
  DiTConfig config;
  TextEncoderOptions text_options;
};

TEST_F(DiTTest, OutputHasTheInputShapeAndStartsAtZero) {
  DiT dit(config);
  TextEncoder text(text_options, 8);
  const torch::Tensor x = torch::randn({2, 3, 16, 16});
  const torch::Tensor tokens = torch::randint(0, 50, {2, 8}, torch::kLong);
  const torch::Tensor mask = torch::ones({2, 8}, torch::kBool);
  const torch::Tensor out = dit->forward(x, torch::tensor({3, 700}), text->forward(tokens, mask), mask);
  EXPECT_EQ(out.sizes(), x.sizes());
  EXPECT_EQ(out.abs().max().item<float>(), 0.0f);  // adaLN-Zero / zero output layer
  EXPECT_EQ(dit->block_list.size(), 2u);
}

TEST_F(DiTTest, PaddedTokensNeverReachTheImage) {
  DiT dit(config);
  Wake(dit);
  TextEncoder text(text_options, 8);
  const torch::Tensor x = torch::randn({2, 3, 16, 16});
  const torch::Tensor t = torch::tensor({5, 500});
  torch::Tensor tokens = torch::randint(3, 50, {2, 8}, torch::kLong);
  torch::Tensor mask = torch::zeros({2, 8}, torch::kBool);
  mask.narrow(1, 0, 3).fill_(true);  // three real tokens, five padding
  const torch::Tensor a = dit->forward(x, t, text->forward(tokens, mask), mask);
  torch::Tensor other = tokens.clone();
  other.narrow(1, 3, 5).random_(3, 50);  // change only the padding
  const torch::Tensor b = dit->forward(x, t, text->forward(other, mask), mask);
  EXPECT_TRUE(torch::allclose(a, b, 1e-5, 1e-6));
  // A real token does change the image: the text is heard.
  other = tokens.clone();
  other[0][1] = (tokens[0][1].item<int64_t>() + 7) % 50;
  const torch::Tensor c = dit->forward(x, t, text->forward(other, mask), mask);
  EXPECT_GT((a[0] - c[0]).abs().max().item<float>(), 1e-4);
  EXPECT_TRUE(torch::allclose(a[1], c[1], 1e-5, 1e-6));  // and only its own sample's
}

TEST_F(DiTTest, GradientsReachTheTextEncoderThroughCrossAttention) {
  DiT dit(config);
  Wake(dit);
  TextEncoder text(text_options, 8);
  const torch::Tensor tokens = torch::randint(0, 50, {2, 8}, torch::kLong);
  const torch::Tensor mask = torch::ones({2, 8}, torch::kBool);
  dit->forward(torch::randn({2, 3, 16, 16}), torch::tensor({1, 2}), text->forward(tokens, mask), mask)
      .pow(2)
      .mean()
      .backward();
  EXPECT_GT(text->token_embedding->weight.grad().abs().sum().item<float>(), 0.0f);
  EXPECT_GT(dit->block_list[0]->cross_attn->k->weight.grad().abs().sum().item<float>(), 0.0f);
}

TEST(Embeddings, UnpatchifyInvertsPatchOrder) {
  const torch::Tensor img = torch::arange(2 * 3 * 8 * 8, torch::kFloat32).view({2, 3, 8, 8});
  // Patchify by hand in the layout the final layer produces: [B, N, p, p, C].
  const torch::Tensor tokens = img.view({2, 3, 2, 4, 2, 4}).permute({0, 2, 4, 3, 5, 1}).reshape({2, 4, 48});
  EXPECT_TRUE(torch::equal(Unpatchify(tokens, 3, 4, 8, 8), img));
}

TEST(Embeddings, SinusoidsAndPositions) {
  const torch::Tensor e = TimestepSinusoids(torch::tensor({0, 10}), 8);
  EXPECT_EQ(e.sizes(), (std::vector<int64_t>{2, 8}));
  EXPECT_TRUE(torch::allclose(e[0], torch::cat({torch::ones({4}), torch::zeros({4})})));
  const torch::Tensor p = SinCosPositions2d(16, 4);
  EXPECT_EQ(p.sizes(), (std::vector<int64_t>{16, 16}));
  EXPECT_FALSE(torch::equal(p[1], p[4]));  // (0,1) and (1,0) differ
}

TEST(DiTSizes, ResolveRegisteredAndSpelledOut) {
  DiTOptions m;
  m.size = "S/4";
  auto c = ResolveDiT(m, 32, 1);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->width, 384);
  EXPECT_EQ(c->depth, 12);
  EXPECT_EQ(c->patch, 4);
  m.size = "Q/4";
  EXPECT_NE(ResolveDiT(m, 32, 1).status().message().find("not a registered DiT size"), absl::string_view::npos);
  m.size = "";
  m.patch = 5;
  EXPECT_FALSE(ResolveDiT(m, 32, 1).ok());
  DiTConfig small;
  EXPECT_NEAR(DiTForwardFlops(small, 8, 16) / DiTForwardFlops(small, 4, 16), 2.0, 1e-12);
}

}  // namespace
}  // namespace loom::models
