// SentencePiece training and encoding behind an Abseil-free interface (see the header).
#include "data/sentencepiece_bridge.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

namespace loom::data::sp {
namespace {

class VectorIterator : public sentencepiece::SentenceIterator {
 public:
  explicit VectorIterator(const std::vector<std::string>& s) : sentences_(s) {}
  bool done() const override { return i_ >= sentences_.size(); }
  void Next() override { ++i_; }
  const std::string& value() const override { return sentences_[i_]; }
  sentencepiece::util::Status status() const override { return sentencepiece::util::Status(); }

 private:
  const std::vector<std::string>& sentences_;
  size_t i_ = 0;
};

}  // namespace

std::string Train(const std::vector<std::string>& sentences, int vocab_size,
                  std::string* model_proto) {
  VectorIterator it(sentences);
  // Ids: 0 pad, 1 unknown, 2 start-of-caption; no end token (the mask marks the end).
  // One thread, every sentence, no shuffling: the same captions give the same model.
  const std::string args =
      "--model_type=bpe --vocab_size=" + std::to_string(vocab_size) +
      " --hard_vocab_limit=false --character_coverage=1.0 --num_threads=1"
      " --input_sentence_size=0 --shuffle_input_sentence=false"
      " --pad_id=0 --unk_id=1 --bos_id=2 --eos_id=-1 --minloglevel=2"
      " --max_sentence_length=4096 --split_digits=true";
  const auto status = sentencepiece::SentencePieceTrainer::Train(args, &it, model_proto);
  return status.ok() ? "" : status.ToString();
}

struct Processor::Impl {
  sentencepiece::SentencePieceProcessor processor;
};

Processor::Processor() : impl_(std::make_unique<Impl>()) {}
Processor::~Processor() = default;

std::string Processor::Load(const std::string& model_proto) {
  const auto status = impl_->processor.LoadFromSerializedProto(model_proto);
  return status.ok() ? "" : status.ToString();
}

std::vector<int> Processor::Encode(const std::string& text) const {
  std::vector<int> ids;
  impl_->processor.Encode(text, &ids).IgnoreError();
  return ids;
}

std::string Processor::Decode(const std::vector<int>& ids) const {
  std::string text;
  impl_->processor.Decode(ids, &text).IgnoreError();
  return text;
}

int Processor::vocab_size() const { return impl_->processor.GetPieceSize(); }

int Processor::PieceToId(const std::string& piece) const { return impl_->processor.PieceToId(piece); }

}  // namespace loom::data::sp
