// BERT's WordPiece tokenizer on a small vocab: normalisation (case, accents, control
// characters, whitespace, CJK), punctuation split, greedy longest-match pieces, [UNK]
// for words that do not split, and the fixed window. Parity with Hugging Face's
// tokenizer on the real vocab is tests/models/bert_parity_test.cpp.
#include <gtest/gtest.h>

#include "data/wordpiece.h"

namespace loom::data {
namespace {

const char kVocab[] =
    "[PAD]\n[UNK]\n[CLS]\n[SEP]\na\nphoto\nof\ncafe\nun\n##aff\n##able\n##a\n##ff\n,\n!\n-\nt\nshirt\n"
    "连\n衣\nhello\nworld\n$\n##s\n";

std::shared_ptr<const WordPieceTokenizer> Make(bool lowercase = true) {
  auto t = WordPieceTokenizer::FromVocab(kVocab, "test vocab", lowercase);
  EXPECT_TRUE(t.ok()) << t.status();
  return *t;
}

using Pieces = std::vector<std::string>;

TEST(WordPiece, LowercasesStripsAccentsAndSplitsPunctuation) {
  auto t = Make();
  EXPECT_EQ(t->Tokenize("Hello, WORLD!"), (Pieces{"hello", ",", "world", "!"}));
  EXPECT_EQ(t->Tokenize("A photo of a Café"), (Pieces{"a", "photo", "of", "a", "cafe"}));
  EXPECT_EQ(t->Tokenize("cafe\xCC\x81"), (Pieces{"cafe"}));  // a combining accent
  EXPECT_EQ(t->Tokenize("T-shirt"), (Pieces{"t", "-", "shirt"}));
  EXPECT_EQ(t->Tokenize("$a"), (Pieces{"$", "a"}));  // ASCII symbols split as punctuation
}

TEST(WordPiece, GreedyLongestMatchAndUnknownWords) {
  auto t = Make();
  EXPECT_EQ(t->Tokenize("unaffable"), (Pieces{"un", "##aff", "##able"}));
  EXPECT_EQ(t->Tokenize("unaffs"), (Pieces{"un", "##aff", "##s"}));
  // One piece that does not fit makes the whole word unknown.
  EXPECT_EQ(t->Tokenize("unaffx photo"), (Pieces{"[UNK]", "photo"}));
  EXPECT_EQ(t->Tokenize(std::string(101, 'a')), (Pieces{"[UNK]"}));  // over 100 characters
}

TEST(WordPiece, DropsControlCharactersAndSplitsIdeographs) {
  auto t = Make();
  EXPECT_EQ(t->Tokenize("hello\x01\tworld\n"), (Pieces{"hello", "world"}));
  EXPECT_EQ(t->Tokenize("hello\xC2\xA0world"), (Pieces{"hello", "world"}));  // no-break space
  EXPECT_EQ(t->Tokenize("hel\xE2\x80\x8Blo"), (Pieces{"hello"}));             // a format character
  EXPECT_EQ(t->Tokenize("连衣"), (Pieces{"连", "衣"}));
  EXPECT_EQ(t->Tokenize("\xFF" "a"), (Pieces{"a"}));  // an invalid byte is dropped
  EXPECT_TRUE(t->Tokenize(" \t ").empty());
}

TEST(WordPiece, KeepsSpecialPiecesWrittenInTheText) {
  auto t = Make();
  EXPECT_EQ(t->Tokenize("a[SEP]photo [UNK]!"), (Pieces{"a", "[SEP]", "photo", "[UNK]", "!"}));
  // Matched as written only: "[sep]" is three words ("[", "sep", "]"), none in this vocab.
  EXPECT_EQ(t->Tokenize("[sep]"), (Pieces{"[UNK]", "[UNK]", "[UNK]"}));
}

TEST(WordPiece, CasedKeepsCaseAndAccents) {
  auto t = Make(/*lowercase=*/false);
  EXPECT_EQ(t->Tokenize("Hello photo café"), (Pieces{"[UNK]", "photo", "[UNK]"}));
}

TEST(WordPiece, EncodesAWindowWithClsSepPaddingAndMask) {
  auto t = Make();
  std::vector<int64_t> ids(8);
  std::unique_ptr<bool[]> mask(new bool[8]);
  t->Encode("a photo of", 8, ids.data(), mask.get());
  EXPECT_EQ(ids, (std::vector<int64_t>{2, 4, 5, 6, 3, 0, 0, 0}));
  for (int i = 0; i < 8; ++i) EXPECT_EQ(mask[i], i < 5) << i;
  // Cut to the window, still closed by [SEP].
  EXPECT_EQ(t->Encode("a photo of a cafe", 5), (std::vector<int64_t>{2, 4, 5, 6, 3}));
  EXPECT_EQ(t->Encode("", 3), (std::vector<int64_t>{2, 3, 0}));
}

TEST(WordPiece, RefusesAVocabWithoutItsSpecialPieces) {
  const auto t = WordPieceTokenizer::FromVocab("[PAD]\n[UNK]\n[SEP]\na\n", "vocab.txt");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(std::string(t.status().message()).find("vocab.txt has no [CLS] piece"), std::string::npos);
}

}  // namespace
}  // namespace loom::data
