// Schema of the `data:` config section (see options.h).
#include "data/options.h"

namespace loom::data {

void DataOptions::Describe(config::Fields<DataOptions>& f) {
  using O = DataOptions;
  f.Add("train", &O::train, "directory of training shards (*.h5 + manifest.json)");
  f.Add("test", &O::test, "directory of held-out shards for evaluation (optional)");
  f.Add("image_size", &O::image_size, "side of the square images the model sees, in pixels")
      .Rule(config::Between(4, 4096));
  f.Add("fit", &O::fit, "how stored images reach image_size: resize (antialiased) or pad (centred, black)")
      .Rule(config::OneOf({"resize", "pad"}));
  f.Add("channels", &O::channels, "image channels: 1 (grayscale) or 3 (RGB)")
      .Rule([](const int& c) -> std::string { return c == 1 || c == 3 ? "" : "must be 1 or 3"; });
  f.Add("frames", &O::frames, "frames per sample: 1 for images, more for video")
      .Rule(config::Between(1, 1024));
  f.Add("batch_size", &O::batch_size,
        "global batch per optimizer step, over all ranks and accumulation steps")
      .Rule(config::Positive());
  f.Add("workers", &O::workers, "decode threads per rank").Rule(config::Between(0, 64));
  f.Add("prefetch", &O::prefetch, "batches prepared ahead per rank").Rule(config::Between(1, 64));
  f.Add("caption_dropout", &O::caption_dropout,
        "share of captions replaced by the empty caption (classifier-free guidance)")
      .Rule(config::InHalfOpen(0, 1));
  f.Add("flip", &O::flip, "random horizontal flips");
  f.Add("max_tokens", &O::max_tokens, "caption length in tokens (padded or cut)")
      .Rule(config::Between(1, 1024));
  f.Add("tokenizer", &O::tokenizer,
        "tokenizer model file; empty: the one beside the training shards");
  f.Add("on_error", &O::on_error, "a defective sample fails the run or is skipped and counted")
      .Rule(config::OneOf({"fail", "skip"}));
  f.Add("max_skipped", &O::max_skipped, "with on_error=skip: fail once more samples were skipped")
      .Rule(config::AtLeast(0));
}

}  // namespace loom::data
