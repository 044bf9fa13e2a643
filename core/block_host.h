// A model whose forward runs a sequence of blocks exposes them through BlockHost and
// calls each through RunBlock, so something outside the model can run code around each
// block's call, as PyTorch's module hooks allow: ZeRO-3 gathers a block's sharded
// parameters just before it runs and frees them after. The model knows nothing of what
// the wrapper does. (Header only; include it from torch-using code.)
#pragma once

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <vector>

namespace loom {

class BlockHost {
 public:
  using Tensors = std::vector<torch::Tensor>;
  // Runs one block on its inputs. It must capture by value (a wrapper may call it again
  // during backward, after the model's forward has returned) and be deterministic given
  // its inputs and the CPU/CUDA generator state.
  using Run = std::function<Tensors(const Tensors&)>;
  using Wrapper = std::function<Tensors(size_t block, const Tensors& inputs, const Run& run)>;

  virtual ~BlockHost() = default;

  // The blocks, in the order forward runs them.
  virtual std::vector<std::shared_ptr<torch::nn::Module>> blocks() = 0;

  // Virtual so a module that contains the block-running model can pass it on.
  virtual void set_block_wrapper(Wrapper wrapper) { wrapper_ = std::move(wrapper); }

 protected:
  Tensors RunBlock(size_t block, const Tensors& inputs, const Run& run) const {
    return wrapper_ ? wrapper_(block, inputs, run) : run(inputs);
  }

 private:
  Wrapper wrapper_;
};

}  // namespace loom
