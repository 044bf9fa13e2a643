// Caption tokenizer over the SentencePiece bridge (see tokenizer.h).
#include "data/tokenizer.h"

#include <fstream>
#include <sstream>

#include "core/fs.h"
#include "data/sentencepiece_bridge.h"

namespace loom::data {

Tokenizer::Tokenizer() : processor_(std::make_unique<sp::Processor>()) {}
Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::shared_ptr<const Tokenizer>> Tokenizer::Train(
    const std::vector<std::string>& captions, int vocab_size) {
  if (captions.empty()) return absl::InvalidArgumentError("no captions to train a tokenizer on");
  if (vocab_size < 16) {
    return absl::InvalidArgumentError("tokenizer vocab must be >= 16, not " + std::to_string(vocab_size));
  }
  std::string proto;
  if (std::string error = sp::Train(captions, vocab_size, &proto); !error.empty()) {
    return absl::InvalidArgumentError("tokenizer training failed: " + error);
  }
  return FromBytes(proto, "trained tokenizer");
}

absl::StatusOr<std::shared_ptr<const Tokenizer>> Tokenizer::FromBytes(const std::string& bytes,
                                                                      const std::string& where) {
  std::shared_ptr<Tokenizer> t(new Tokenizer());
  if (std::string error = t->processor_->Load(bytes); !error.empty()) {
    return absl::InvalidArgumentError(where + ": not a SentencePiece model (" + error + ")");
  }
  if (t->processor_->PieceToId("<pad>") != kPad || t->processor_->PieceToId("<s>") != kStart) {
    return absl::InvalidArgumentError(where + ": tokenizer ids differ from loom's (pad 0, start 2); "
                                      "make it with 'loom data tokenizer'");
  }
  t->bytes_ = bytes;
  return std::shared_ptr<const Tokenizer>(std::move(t));
}

absl::StatusOr<std::shared_ptr<const Tokenizer>> Tokenizer::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(path + ": no tokenizer (make one with 'loom data tokenizer --data DIR')");
  }
  std::stringstream s;
  s << in.rdbuf();
  return FromBytes(s.str(), path);
}

absl::Status Tokenizer::Save(const std::string& path) const { return WriteFileAtomic(path, bytes_); }

void Tokenizer::Encode(const std::string& caption, int max_tokens, int64_t* ids, bool* mask) const {
  const std::vector<int> pieces = processor_->Encode(caption);
  int n = 0;
  if (max_tokens > 0) ids[n++] = kStart;
  for (size_t i = 0; i < pieces.size() && n < max_tokens; ++i) ids[n++] = pieces[i];
  for (int i = 0; i < max_tokens; ++i) {
    mask[i] = i < n;
    if (i >= n) ids[i] = kPad;
  }
}

std::vector<int64_t> Tokenizer::Encode(const std::string& caption, int max_tokens) const {
  std::vector<int64_t> ids(max_tokens);
  std::unique_ptr<bool[]> mask(new bool[max_tokens]);
  Encode(caption, max_tokens, ids.data(), mask.get());
  return ids;
}

std::string Tokenizer::Decode(const std::vector<int64_t>& ids) const {
  std::vector<int> pieces;
  for (int64_t id : ids) {
    if (id != kPad && id != kStart) pieces.push_back(static_cast<int>(id));
  }
  return processor_->Decode(pieces);
}

int Tokenizer::vocab_size() const { return processor_->vocab_size(); }

}  // namespace loom::data
