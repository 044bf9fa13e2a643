// The caption tokenizer: a SentencePiece BPE model trained on a dataset's captions.
// Captions become [start, pieces...] cut or padded to a fixed length, with a mask.
// The model file travels with checkpoints and exports (serialized() is its bytes).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/status.h"

namespace loom::data {

namespace sp {
class Processor;
}

class Tokenizer {
 public:
  static constexpr int kPad = 0;
  static constexpr int kUnknown = 1;
  static constexpr int kStart = 2;

  // Trains on `captions` (deterministic for the same captions and vocab).
  static absl::StatusOr<std::shared_ptr<const Tokenizer>> Train(
      const std::vector<std::string>& captions, int vocab_size);
  static absl::StatusOr<std::shared_ptr<const Tokenizer>> FromBytes(const std::string& bytes,
                                                                   const std::string& where);
  static absl::StatusOr<std::shared_ptr<const Tokenizer>> Load(const std::string& path);
  absl::Status Save(const std::string& path) const;  // atomic

  ~Tokenizer();

  // Writes max_tokens ids and mask values (1 = real token) for `caption`.
  void Encode(const std::string& caption, int max_tokens, int64_t* ids, bool* mask) const;
  std::vector<int64_t> Encode(const std::string& caption, int max_tokens) const;
  std::string Decode(const std::vector<int64_t>& ids) const;
  int vocab_size() const;
  const std::string& serialized() const { return bytes_; }

 private:
  Tokenizer();
  std::string bytes_;
  std::unique_ptr<sp::Processor> processor_;
};

}  // namespace loom::data
