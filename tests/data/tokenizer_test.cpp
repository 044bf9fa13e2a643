// The caption tokenizer: deterministic training, start token, padding and mask, and
// loading a saved model.
#include <gtest/gtest.h>

#include <fstream>

#include "data/tokenizer.h"
#include "tests/support/subprocess.h"

namespace loom::data {
namespace {

std::vector<std::string> Captions() {
  std::vector<std::string> c;
  const char* colours[] = {"red", "green", "blue", "yellow"};
  const char* shapes[] = {"circle", "square", "triangle"};
  for (int i = 0; i < 400; ++i) {
    c.push_back(std::string("a ") + (i % 2 ? "small " : "large ") + colours[i % 4] + " " +
                shapes[i % 3] + " at the top left");
  }
  return c;
}

TEST(Tokenizer, TrainingIsDeterministic) {
  auto a = Tokenizer::Train(Captions(), 64);
  auto b = Tokenizer::Train(Captions(), 64);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok());
  EXPECT_EQ((*a)->serialized(), (*b)->serialized());
}

TEST(Tokenizer, EncodesWithStartPaddingAndMask) {
  auto t = Tokenizer::Train(Captions(), 64);
  ASSERT_TRUE(t.ok());
  std::vector<int64_t> ids(12);
  std::unique_ptr<bool[]> mask(new bool[12]);
  (*t)->Encode("a red circle", 12, ids.data(), mask.get());
  EXPECT_EQ(ids[0], Tokenizer::kStart);
  int real = 0;
  for (int i = 0; i < 12; ++i) {
    if (mask[i]) {
      ++real;
      EXPECT_NE(ids[i], Tokenizer::kPad);
    } else {
      EXPECT_EQ(ids[i], Tokenizer::kPad);
    }
  }
  EXPECT_GE(real, 2);
  EXPECT_LT(real, 12);
  EXPECT_EQ((*t)->Decode(ids), "a red circle");
  // The empty caption (classifier-free guidance's null condition) is the start token alone.
  (*t)->Encode("", 12, ids.data(), mask.get());
  EXPECT_EQ(ids[0], Tokenizer::kStart);
  EXPECT_TRUE(mask[0]);
  EXPECT_FALSE(mask[1]);
  // Long captions are cut to max_tokens.
  (*t)->Encode("a large red circle a large red circle a large red circle", 4, ids.data(), mask.get());
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(mask[i]);
}

TEST(Tokenizer, SaveLoadAndRejectGarbage) {
  testing::TempDir dir;
  auto t = Tokenizer::Train(Captions(), 64);
  ASSERT_TRUE(t.ok());
  const std::string path = dir.str() + "/tok.model";
  ASSERT_TRUE((*t)->Save(path).ok());
  auto loaded = Tokenizer::Load(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->Encode("a blue square", 8), (*t)->Encode("a blue square", 8));
  std::ofstream(path, std::ios::trunc) << "garbage";
  auto bad = Tokenizer::Load(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("not a SentencePiece model"), absl::string_view::npos);
  EXPECT_EQ(Tokenizer::Load(dir.str() + "/none.model").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace loom::data
