// bfloat16 autocast for one forward pass, on the device the model lives on: matmuls and
// attention run in bfloat16, weights, gradients and losses stay float32.
#pragma once

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

namespace loom::stages {

class Autocast {
 public:
  Autocast(torch::Device device, bool enabled) : type_(device.type()), enabled_(enabled) {
    if (!enabled_) return;
    was_ = at::autocast::is_autocast_enabled(type_);
    at::autocast::set_autocast_enabled(type_, true);
    at::autocast::set_autocast_dtype(type_, torch::kBFloat16);
    at::autocast::increment_nesting();
  }
  ~Autocast() {
    if (!enabled_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(type_, was_);
  }
  Autocast(const Autocast&) = delete;
  Autocast& operator=(const Autocast&) = delete;

 private:
  c10::DeviceType type_;
  bool enabled_;
  bool was_ = false;
};

}  // namespace loom::stages
