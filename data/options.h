// data: the `data:` section of an experiment config (loader and dataset settings).
#pragma once

#include <cstdint>
#include <string>

#include "core/config/schema.h"

namespace loom::data {

struct DataOptions {
  std::string train = "";        // directory of HDF5 shards with manifest.json
  std::string test = "";         // optional held-out shards
  int image_size = 32;
  std::string fit = "resize";   // stored size -> image_size: resize | pad
  int channels = 1;
  int frames = 1;                // > 1 for video
  int64_t batch_size = 128;      // global batch (all ranks, one optimizer step)
  int workers = 2;
  int prefetch = 4;
  double caption_dropout = 0.1;
  bool flip = false;
  int max_tokens = 16;
  std::string tokenizer = "";
  std::string on_error = "fail";
  int64_t max_skipped = 100;

  static void Describe(config::Fields<DataOptions>& f);
};

}  // namespace loom::data
