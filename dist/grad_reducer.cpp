// Bucketed gradient reduction overlapping backward (see grad_reducer.h).
#include "dist/grad_reducer.h"

#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include "core/log.h"

namespace loom::dist {
namespace {

// Runs after autograd has accumulated a parameter's gradient into its .grad (the bucket
// view), so the bucket really holds the value when its collective starts.
class ReadyHook : public torch::autograd::PostAccumulateGradHook {
 public:
  ReadyHook(GradReducer* reducer, int param) : reducer_(reducer), param_(param) {}
  void operator()(const torch::autograd::Variable&) override { reducer_->OnGradReady(param_); }

 private:
  GradReducer* reducer_;
  int param_;
};

}  // namespace

BucketLayout BucketLayout::Make(const std::vector<torch::Tensor>& params, double bucket_mb,
                                int world) {
  BucketLayout layout;
  layout.where.resize(params.size());
  const int64_t limit = std::max<int64_t>(1, static_cast<int64_t>(bucket_mb * (1 << 20)));
  Bucket current;
  int64_t current_bytes = 0;
  const auto close = [&] {
    if (current.entries.empty()) return;
    current.padded = (current.numel + world - 1) / world * world;
    layout.buckets.push_back(std::move(current));
    current = Bucket();
    current_bytes = 0;
  };
  for (int i = static_cast<int>(params.size()) - 1; i >= 0; --i) {
    const int64_t bytes = params[i].numel() * static_cast<int64_t>(params[i].element_size());
    if (!current.entries.empty() && current_bytes + bytes > limit) close();
    layout.where[i] = {static_cast<int>(layout.buckets.size()), static_cast<int>(current.entries.size())};
    current.entries.push_back({i, current.numel, params[i].numel()});
    current.numel += params[i].numel();
    current_bytes += bytes;
  }
  close();
  return layout;
}

GradReducer::GradReducer(std::vector<torch::Tensor> params, std::vector<std::string> names,
                         BucketLayout layout, ProcessGroup& group, Mode mode, bool overlap)
    : params_(std::move(params)),
      names_(std::move(names)),
      layout_(std::move(layout)),
      group_(group),
      mode_(mode),
      overlap_(overlap),
      flat_(layout_.buckets.size()),
      shards_(layout_.buckets.size()),
      pending_(layout_.buckets.size()),
      seen_(params_.size()),
      work_(layout_.buckets.size()) {
  for (size_t i = 0; i < params_.size(); ++i) {
    torch::autograd::impl::set_post_acc_grad_hooks(params_[i],
                                                   std::make_unique<ReadyHook>(this, static_cast<int>(i)));
  }
  ZeroGrad();
}

GradReducer::~GradReducer() {
  for (const torch::Tensor& p : params_) torch::autograd::impl::set_post_acc_grad_hooks(p, nullptr);
}

void GradReducer::ZeroGrad() {
  torch::NoGradGuard no_grad;
  for (size_t b = 0; b < layout_.buckets.size(); ++b) {
    const auto& bucket = layout_.buckets[b];
    const torch::Tensor& first = params_[bucket.entries.front().param];
    if (!flat_[b].defined()) {
      flat_[b] = torch::zeros({bucket.padded}, first.options().requires_grad(false));
    } else {
      flat_[b].zero_();
    }
    for (const auto& e : bucket.entries) {
      params_[e.param].mutable_grad() = flat_[b].narrow(0, e.offset, e.numel).view(params_[e.param].sizes());
    }
    if (mode_ == Mode::kReduceScatter && !shards_[b].defined()) {
      shards_[b] = torch::zeros({bucket.padded / group_.size()}, flat_[b].options());
    }
    pending_[b] = static_cast<int>(bucket.entries.size());
    work_[b].reset();
  }
  std::fill(seen_.begin(), seen_.end(), false);
  next_launch_ = 0;
}

void GradReducer::OnGradReady(int param) {
  if (!sync_ || seen_[param]) return;
  seen_[param] = true;
  const int b = layout_.where[param].first;
  if (--pending_[b] == 0 && overlap_) LaunchReady();
}

void GradReducer::LaunchReady() {
  while (next_launch_ < layout_.buckets.size() && pending_[next_launch_] == 0) Launch(next_launch_++);
}

void GradReducer::Launch(size_t b) {
  if (mode_ == Mode::kAllReduce) {
    work_[b] = group_.AllReduce(flat_[b], ReduceOp::kAverage);
  } else {
    work_[b] = group_.ReduceScatter(shards_[b], flat_[b], ReduceOp::kAverage);
  }
}

absl::Status GradReducer::Finish() {
  if (!sync_) return absl::OkStatus();
  std::vector<std::string> unused;
  for (size_t i = 0; i < params_.size(); ++i) {
    const torch::Tensor& grad = params_[i].grad();
    const auto [b, e] = layout_.where[i];
    const auto& entry = layout_.buckets[b].entries[e];
    if (!seen_[i]) unused.push_back(names_[i]);
    // Autograd may have replaced .grad instead of accumulating into the view; keep the
    // bucket authoritative either way.
    if (grad.defined() && grad.data_ptr() != flat_[b].narrow(0, entry.offset, 1).data_ptr()) {
      torch::NoGradGuard no_grad;
      flat_[b].narrow(0, entry.offset, entry.numel).copy_(grad.reshape({-1}));
      params_[i].mutable_grad() = flat_[b].narrow(0, entry.offset, entry.numel).view(params_[i].sizes());
    }
  }
  // Every rank has the same model, so rank 0 speaks for all.
  if (!unused.empty() && !reported_unused_ && group_.rank() == 0) {
    reported_unused_ = true;
    log::Warning() << unused.size() << " parameter(s) received no gradient (reduced as zeros): "
                   << unused.front() << (unused.size() > 1 ? ", ..." : "");
  }
  // Launch what backward did not (all of it without overlap), still in index order.
  for (size_t b = next_launch_; b < layout_.buckets.size(); ++b) pending_[b] = 0;
  LaunchReady();
  for (auto& w : work_) {
    if (w) RETURN_IF_ERROR(w->Wait());
  }
  if (mode_ == Mode::kReduceScatter) {
    // Only the shard is kept: the full gradients go until the next ZeroGrad.
    for (size_t i = 0; i < params_.size(); ++i) params_[i].mutable_grad() = torch::Tensor();
    for (auto& f : flat_) f = torch::Tensor();
  }
  return absl::OkStatus();
}

int64_t GradReducer::GradBytes() const {
  int64_t bytes = 0;
  for (const auto& f : flat_) bytes += Bytes(f);
  for (const auto& s : shards_) bytes += Bytes(s);
  return bytes;
}

}  // namespace loom::dist
