// Gradient buckets and their reduction during backward. Parameters are laid out in
// buckets of about bucket_mb, in reverse registration order (roughly the order
// backward produces gradients); each parameter's .grad is a view into its bucket's flat
// buffer, and a post-accumulate hook launches a bucket's collective as soon as its last
// gradient is in, so communication overlaps the rest of backward. Buckets launch in
// index order on every rank, so all ranks issue the same collectives in the same order.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "dist/process_group.h"

namespace loom::dist {

struct BucketLayout {
  struct Entry {
    int param = 0;       // index into the parameter list
    int64_t offset = 0;  // element offset in the bucket
    int64_t numel = 0;
  };
  struct Bucket {
    std::vector<Entry> entries;
    int64_t numel = 0;   // elements used
    int64_t padded = 0;  // numel rounded up to a multiple of the world size
  };
  std::vector<Bucket> buckets;
  std::vector<std::pair<int, int>> where;  // param -> (bucket, entry)

  static BucketLayout Make(const std::vector<torch::Tensor>& params, double bucket_mb, int world);
};

class GradReducer {
 public:
  enum class Mode {
    kAllReduce,      // every rank ends with the whole averaged gradient (ddp, zero1)
    kReduceScatter,  // every rank ends with its shard of each bucket (zero2)
  };

  GradReducer(std::vector<torch::Tensor> params, std::vector<std::string> names,
              BucketLayout layout, ProcessGroup& group, Mode mode, bool overlap);
  ~GradReducer();

  // Zeroes the gradients (allocating bucket buffers that a reduce-scatter freed) and
  // points each parameter's .grad at its bucket view.
  void ZeroGrad();
  // false: the next backward accumulates locally without communicating (no_sync).
  void SetSync(bool sync) { sync_ = sync; }
  // Launches the buckets not launched during backward and waits for all. Parameters
  // that received no gradient count as zero gradients; they are reported once.
  absl::Status Finish();

  const BucketLayout& layout() const { return layout_; }
  // The whole flat gradient of bucket b (undefined after a reduce-scatter freed it).
  const torch::Tensor& bucket_grad(size_t b) const { return flat_[b]; }
  // This rank's shard of bucket b's gradient (reduce-scatter mode).
  const torch::Tensor& shard_grad(size_t b) const { return shards_[b]; }
  // Bytes of gradient memory this rank holds now.
  int64_t GradBytes() const;

  // Called by the hooks.
  void OnGradReady(int param);

 private:
  void LaunchReady();
  void Launch(size_t b);

  std::vector<torch::Tensor> params_;
  std::vector<std::string> names_;
  BucketLayout layout_;
  ProcessGroup& group_;
  Mode mode_;
  bool overlap_;
  bool sync_ = true;
  bool reported_unused_ = false;
  std::vector<torch::Tensor> flat_;    // per bucket
  std::vector<torch::Tensor> shards_;  // per bucket, reduce-scatter mode
  std::vector<int> pending_;           // gradients still missing per bucket
  std::vector<bool> seen_;             // per parameter, this backward
  std::vector<std::shared_ptr<Work>> work_;
  size_t next_launch_ = 0;
};

}  // namespace loom::dist
