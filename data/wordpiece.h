// BERT's tokenizer, for pretrained BERT-family text encoders: special pieces written in
// the text ([SEP], ...) kept as they are, then basic tokenization
// (control characters dropped, whitespace normalised, CJK ideographs split, accents
// stripped, lower-casing, punctuation split) and greedy longest-match-first WordPiece
// over a vocab.txt, then [CLS] pieces... [SEP] cut or padded to a fixed length with a
// mask. It follows Hugging Face's BertTokenizer (tokenizers' BertNormalizer,
// BertPreTokenizer and WordPiece) id for id; Unicode properties come from ICU.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "core/status.h"

namespace loom::data {

class WordPieceTokenizer {
 public:
  // `vocab`: the text of a vocab.txt (one piece per line; a piece's id is its line);
  // `where` names it in errors. It must hold [PAD], [UNK], [CLS] and [SEP].
  static absl::StatusOr<std::shared_ptr<const WordPieceTokenizer>> FromVocab(const std::string& vocab,
                                                                            const std::string& where,
                                                                            bool lowercase = true);

  // The pieces of `text` (no [CLS]/[SEP]), as strings.
  std::vector<std::string> Tokenize(const std::string& text) const;
  // Writes max_tokens ids and mask values (1 = real token): [CLS] pieces [SEP] [PAD]...,
  // the pieces cut to max_tokens - 2. max_tokens >= 2.
  void Encode(const std::string& text, int max_tokens, int64_t* ids, bool* mask) const;
  std::vector<int64_t> Encode(const std::string& text, int max_tokens) const;

  int64_t vocab_size() const { return static_cast<int64_t>(pieces_.size()); }
  int64_t pad_id() const { return pad_; }
  bool lowercase() const { return lowercase_; }
  const std::string& piece(int64_t id) const { return pieces_.at(static_cast<size_t>(id)); }
  // The vocab.txt it was made from, byte for byte.
  const std::string& serialized() const { return vocab_text_; }

 private:
  WordPieceTokenizer() = default;
  // The ids of one word (a run without whitespace or punctuation), [UNK] when it
  // cannot be split into pieces of the vocab.
  void AddWord(const std::u32string& word, std::vector<int64_t>* ids) const;
  // The ids of a span without special pieces, appended to `out`.
  void AddSpan(const std::string& text, std::vector<int64_t>* out) const;
  std::vector<int64_t> PieceIds(const std::string& text) const;

  std::string vocab_text_;
  std::vector<std::string> pieces_;
  std::unordered_map<std::string, int64_t> ids_;
  std::vector<std::pair<std::string, int64_t>> specials_;  // matched in the raw text
  bool lowercase_ = true;
  int64_t pad_ = 0, unknown_ = 0, cls_ = 0, sep_ = 0;
};

}  // namespace loom::data
