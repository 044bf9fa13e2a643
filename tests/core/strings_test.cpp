// Edit distance, suggestions, and exact double formatting.
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>

#include "core/strings.h"

namespace loom {
namespace {

TEST(Strings, EditDistance) {
  EXPECT_EQ(EditDistance("", ""), 0);
  EXPECT_EQ(EditDistance("lr", "lrr"), 1);
  EXPECT_EQ(EditDistance("kitten", "sitting"), 3);
  EXPECT_EQ(EditDistance("abc", ""), 3);
}

TEST(Strings, NearestNameOnlyForPlausibleTypos) {
  const std::vector<std::string> keys = {"optim.lr", "optim.betas", "train.steps"};
  EXPECT_EQ(NearestName("optim.lrr", keys), "optim.lr");
  EXPECT_EQ(NearestName("train.step", keys), "train.steps");
  EXPECT_EQ(NearestName("completely.else", keys), "");
  EXPECT_EQ(DidYouMean("optim.bets", keys), " (did you mean 'optim.betas'?)");
  EXPECT_EQ(DidYouMean("zzz", keys), "");
}

TEST(Strings, FormatDoubleIsExactAndReadable) {
  EXPECT_EQ(FormatDouble(0.0003), "0.0003");
  EXPECT_EQ(FormatDouble(1.0), "1.0");
  EXPECT_EQ(FormatDouble(25), "25.0");
  EXPECT_EQ(FormatDouble(1e-8), "1.0e-08");
  EXPECT_EQ(FormatDouble(-2.5), "-2.5");
  EXPECT_EQ(FormatDouble(0.0), "0.0");
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> exponent(-30, 30);
  for (int i = 0; i < 2000; ++i) {
    const double v = std::pow(10.0, exponent(rng)) * (i % 2 ? 1 : -1);
    const std::string text = FormatDouble(v);
    EXPECT_EQ(std::strtod(text.c_str(), nullptr), v) << text;
  }
}

}  // namespace
}  // namespace loom
