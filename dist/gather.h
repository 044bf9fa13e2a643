// All-gathers inside a loss: for objectives that score each rank's samples against every
// rank's (CLIP's contrastive loss over the global batch). LibTorch's collectives have no
// autograd; these do.
#pragma once

#include <torch/torch.h>

namespace loom::dist {

class ProcessGroup;

// [size * B, ...] from every rank's x [B, ...] (the same shape on every rank), block r
// being rank r's, on the group's device. Differentiable: the backward reduce-scatters
// (sums) the gradient of the gathered tensor, so rank r's x receives the gradient that
// every rank's loss has with respect to rank r's rows. A null group, or a group of one,
// returns x. Collective: every rank calls it, in the same order, forward and backward.
torch::Tensor AllGatherWithGrad(ProcessGroup* group, const torch::Tensor& x);

// The same values where only this rank's own block carries a gradient (it is x itself);
// the other ranks' blocks are constants. What a gather without autograd gives: rank r's
// rows then miss the gradient that the other ranks' losses have with respect to them
// (see docs/dalle2.md).
torch::Tensor AllGatherLocalGrad(ProcessGroup* group, const torch::Tensor& x);

}  // namespace loom::dist
