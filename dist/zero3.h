// ZeRO-3 (FSDP style): see zero3.cpp. Use ApplyStrategy with dist.strategy zero3.
#pragma once

#include <torch/torch.h>

#include <memory>

#include "dist/strategy.h"

namespace loom::dist {

// Shards `model`'s parameters over `group` (parameters must already agree across ranks).
absl::StatusOr<std::unique_ptr<Strategy>> MakeZero3(std::shared_ptr<torch::nn::Module> model,
                                                    ProcessGroup& group, const AdamWSettings& adamw);

}  // namespace loom::dist
