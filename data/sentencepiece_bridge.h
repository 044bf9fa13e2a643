// A narrow bridge to SentencePiece. Its header defines `absl::string_view` as an alias
// of std::string_view, which collides with Debian's Abseil (its own string_view type),
// so SentencePiece is included in sentencepiece_bridge.cpp only and this interface uses
// nothing from Abseil. Errors come back as non-empty strings.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace loom::data::sp {

// Trains a BPE model on `sentences`; returns "" and the serialized model, or the error.
std::string Train(const std::vector<std::string>& sentences, int vocab_size,
                  std::string* model_proto);

class Processor {
 public:
  Processor();
  ~Processor();
  // Loads a serialized model; returns "" or the error.
  std::string Load(const std::string& model_proto);
  // Piece ids of `text` (no special tokens).
  std::vector<int> Encode(const std::string& text) const;
  std::string Decode(const std::vector<int>& ids) const;
  int vocab_size() const;
  int PieceToId(const std::string& piece) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace loom::data::sp
