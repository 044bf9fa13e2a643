// The DiT stage's caption handling: the empty caption, and the noise tokens inserted for
// robustness (they keep every real token, in order, and fit the padding).
#include <gtest/gtest.h>

#include "stages/dit_stage.h"

namespace loom::stages {
namespace {

TEST(Captions, EmptyCaptionIsTheStartTokenAlone) {
  torch::Tensor tokens = torch::randint(3, 50, {2, 6}, torch::kLong), mask = torch::ones({2, 6}, torch::kBool);
  EmptyCaption(tokens.narrow(0, 1, 1), mask.narrow(0, 1, 1));
  EXPECT_EQ(tokens[1][0].item<int64_t>(), data::Tokenizer::kStart);
  EXPECT_EQ(mask[1].sum().item<int64_t>(), 1);
  EXPECT_EQ(mask[0].sum().item<int64_t>(), 6);  // the other row untouched
}

TEST(Captions, NoiseTokensAreInsertedAroundTheRealOnes) {
  for (uint64_t seed = 0; seed < 200; ++seed) {
    torch::Tensor tokens = torch::tensor({2, 50, 51, 52, 0, 0, 0}, torch::kLong);  // ids the noise never draws
    torch::Tensor mask = torch::tensor({1, 1, 1, 1, 0, 0, 0}, torch::kBool);
    SplitMix64 rng(seed);
    InsertNoiseTokens(tokens, mask, /*vocab=*/40, rng);
    const int64_t n = mask.sum().item<int64_t>();
    ASSERT_TRUE(n == 5 || n == 6) << seed;
    EXPECT_TRUE(mask.narrow(0, 0, n).all().item<bool>());  // real tokens first, then padding
    EXPECT_EQ(tokens[0].item<int64_t>(), 2);               // the start token stays first
    // The caption's own tokens keep their order; the new ones are ordinary pieces.
    std::vector<int64_t> own;
    for (int64_t i = 1; i < n; ++i) {
      const int64_t id = tokens[i].item<int64_t>();
      if (id >= 50) {
        own.push_back(id);
      } else {
        EXPECT_GE(id, 3) << seed;
        EXPECT_LT(id, 40) << seed;
      }
    }
    EXPECT_EQ(own.size(), 3u);
    EXPECT_TRUE(std::is_sorted(own.begin(), own.end())) << seed;
  }
  // A full row has no room: nothing changes.
  torch::Tensor full = torch::tensor({2, 5, 6}, torch::kLong), on = torch::ones({3}, torch::kBool);
  SplitMix64 rng(1);
  InsertNoiseTokens(full, on, 40, rng);
  EXPECT_TRUE(torch::equal(full, torch::tensor({2, 5, 6}, torch::kLong)));
}

}  // namespace
}  // namespace loom::stages
