// DDP and ZeRO under mpirun: DDP gradients equal single-process gradients over the
// concatenated batch; zero1/zero2/zero3 train to the same parameters as ddp; their
// per-rank optimizer state and gradients are about 1/N of ddp's; accumulation without
// sync equals one large batch; a parameter without gradient is handled; no-decay groups
// behave alike under every strategy; the slices a strategy hands out make whole weights.
#include <gtest/gtest.h>

#include "core/unit.h"
#include "core/rng.h"
#include "dist/process_group.h"
#include "dist/runtime.h"
#include "dist/strategy.h"

namespace loom::dist {
namespace {

// A tanh layer marked as a Unit (core/unit.h): ZeRO-3 finds it by walking the tree.
struct TanhLayerImpl : torch::nn::Module, Unit {
  TanhLayerImpl(int64_t in, int64_t out) { lin = register_module("lin", torch::nn::Linear(in, out)); }
  torch::Tensor forward(const torch::Tensor& x) {
    return Call({x}, [this](const Tensors& in) { return Tensors{torch::tanh(lin->forward(in[0]))}; })[0];
  }
  torch::nn::Linear lin{nullptr};
};
TORCH_MODULE(TanhLayer);

// Two units (a, b), a root layer (c) and a parameter that never gets a gradient.
struct NetImpl : torch::nn::Module {
  NetImpl() {
    a = register_module("a", TanhLayer(12, 64));
    b = register_module("b", TanhLayer(64, 64));
    c = register_module("c", torch::nn::Linear(64, 5));
    unused = register_parameter("unused", torch::ones({7}));
  }
  torch::Tensor forward(const torch::Tensor& x) { return c->forward(b->forward(a->forward(x))); }
  TanhLayer a{nullptr}, b{nullptr};
  torch::nn::Linear c{nullptr};
  torch::Tensor unused;
};
TORCH_MODULE(Net);

ProcessGroup& Group() {
  static std::unique_ptr<ProcessGroup> group = CreateMpiGroup(120);
  return *group;
}

// The global batch of step `step`: the same on every rank (counter-based).
std::pair<torch::Tensor, torch::Tensor> GlobalBatch(int64_t step, int64_t n) {
  torch::manual_seed(static_cast<uint64_t>(SeedFor(99, static_cast<uint64_t>(step), 0)));
  return {torch::randn({n, 12}), torch::randn({n, 5})};
}

std::pair<torch::Tensor, torch::Tensor> MySlice(const std::pair<torch::Tensor, torch::Tensor>& b) {
  const int64_t n = b.first.size(0) / Group().size();
  return {b.first.narrow(0, Group().rank() * n, n), b.second.narrow(0, Group().rank() * n, n)};
}

Net MakeNet() {
  torch::manual_seed(1234 + Group().rank());  // different on purpose: SyncParameters fixes it
  return Net();
}

double MaxRelDiff(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double scale = std::max(1e-12, a[i].abs().max().item<double>());
    worst = std::max(worst, (a[i] - b[i]).abs().max().item<double>() / scale);
  }
  return worst;
}

std::vector<torch::Tensor> Snapshot(Net& net) {
  std::vector<torch::Tensor> out;
  for (const auto& p : net->parameters()) out.push_back(p.detach().clone());
  return out;
}

TEST(Ddp, GradientsEqualSingleProcessOverConcatenatedBatch) {
  const int64_t n = 8 * Group().size();
  Net net = MakeNet();
  DistOptions options;
  options.bucket_mb = 0.005;  // several buckets
  auto strategy = ApplyStrategy(net.ptr(), Group(), options, {});
  ASSERT_TRUE(strategy.ok()) << strategy.status();
  const auto batch = GlobalBatch(0, n);
  (*strategy)->ZeroGrad();
  const auto mine = MySlice(batch);
  torch::mse_loss(net->forward(mine.first), mine.second).backward();
  ASSERT_TRUE((*strategy)->FinishBackward().ok());

  // The reference: the same weights, the whole batch, one process.
  Net ref = Net();
  {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < ref->parameters().size(); ++i) ref->parameters()[i].copy_(net->parameters()[i]);
  }
  torch::mse_loss(ref->forward(batch.first), batch.second).backward();
  std::vector<torch::Tensor> got, want;
  for (size_t i = 0; i < ref->parameters().size(); ++i) {
    if (!ref->parameters()[i].grad().defined()) continue;  // `unused`
    got.push_back(net->parameters()[i].grad());
    want.push_back(ref->parameters()[i].grad());
  }
  EXPECT_LE(MaxRelDiff(want, got), 1e-6);
  // The parameter that got no gradient holds zeros, not garbage.
  EXPECT_TRUE(net->unused.grad().defined());
  EXPECT_EQ(net->unused.grad().abs().sum().item<float>(), 0.0f);
}

std::vector<torch::Tensor> Train(const std::string& name, int steps, MemoryStats* memory = nullptr,
                                 int accumulate = 1, bool no_decay_biases = false) {
  Net net = MakeNet();
  DistOptions options;
  options.strategy = name;
  options.bucket_mb = 0.01;
  AdamWSettings adamw;
  adamw.lr = 1e-2;
  adamw.weight_decay = no_decay_biases ? 0.5 : 0.01;
  if (no_decay_biases) {
    adamw.no_decay = [](const std::string& n) { return n.ends_with("bias") || n == "unused"; };
  }
  auto strategy = ApplyStrategy(net.ptr(), Group(), options, adamw);
  EXPECT_TRUE(strategy.ok()) << strategy.status();
  const int64_t n = 8 * Group().size();
  for (int step = 0; step < steps; ++step) {
    Group().SetStep(step);
    const auto batch = GlobalBatch(step, n);
    const auto mine = MySlice(batch);
    (*strategy)->ZeroGrad();
    const int64_t m = mine.first.size(0) / accumulate;
    for (int k = 0; k < accumulate; ++k) {
      (*strategy)->SetSync(k == accumulate - 1);
      const auto loss = torch::mse_loss(net->forward(mine.first.narrow(0, k * m, m)),
                                        mine.second.narrow(0, k * m, m)) / accumulate;
      loss.backward();
    }
    EXPECT_TRUE((*strategy)->FinishBackward().ok());
    EXPECT_TRUE((*strategy)->ClipGradNorm(0.5).ok());
    EXPECT_TRUE((*strategy)->Step(adamw.lr).ok());
  }
  if (memory) *memory = (*strategy)->Memory();
  EXPECT_TRUE((*strategy)->GatherFullParameters().ok());
  return Snapshot(net);
}

TEST(Zero, TwentyStepsMatchDdp) {
  const auto ddp = Train("ddp", 20);
  EXPECT_LE(MaxRelDiff(ddp, Train("zero1", 20)), 1e-5);
  EXPECT_LE(MaxRelDiff(ddp, Train("zero2", 20)), 1e-5);
  EXPECT_LE(MaxRelDiff(ddp, Train("zero3", 20)), 1e-5);
  // Every rank ends with the same parameters.
  for (const auto& p : ddp) {
    torch::Tensor root = p.clone();
    ASSERT_TRUE(Group().Broadcast(root, 0)->Wait().ok());
    EXPECT_TRUE(torch::equal(root, p));
  }
}

TEST(Zero, AccumulationWithoutSyncEqualsOneLargeBatch) {
  // Micro-batches sum the float32 gradient in another order than one batch; Adam's
  // normalisation lets that roundoff grow a little over steps, hence 1e-4, not 1e-5.
  EXPECT_LE(MaxRelDiff(Train("ddp", 5, nullptr, 1), Train("ddp", 5, nullptr, 2)), 1e-4);
  EXPECT_LE(MaxRelDiff(Train("ddp", 5, nullptr, 1), Train("zero2", 5, nullptr, 4)), 1e-4);
  EXPECT_LE(MaxRelDiff(Train("ddp", 5, nullptr, 1), Train("zero3", 5, nullptr, 2)), 1e-4);
}

TEST(Zero, NoDecayGroupsAreTheSameUnderEveryStrategy) {
  const auto ddp = Train("ddp", 5, nullptr, 1, /*no_decay_biases=*/true);
  EXPECT_LE(MaxRelDiff(ddp, Train("zero1", 5, nullptr, 1, true)), 1e-5);
  EXPECT_LE(MaxRelDiff(ddp, Train("zero2", 5, nullptr, 1, true)), 1e-5);
  EXPECT_LE(MaxRelDiff(ddp, Train("zero3", 5, nullptr, 1, true)), 1e-5);
  // `unused` gets no gradient: excluded from decay it stays exactly 1, decayed it shrinks.
  EXPECT_TRUE(torch::equal(ddp.front(), torch::ones({7})));  // parameters() lists the own first
  EXPECT_LT(Train("ddp", 5).front()[0].item<float>(), 1.0f);
}

TEST(Zero, ParameterSlicesMakeTheWholeWeightsOnRankZero) {
  for (const char* name : {"ddp", "zero1", "zero2", "zero3"}) {
    Net net = MakeNet();
    DistOptions options;
    options.strategy = name;
    options.bucket_mb = 0.005;
    auto strategy = ApplyStrategy(net.ptr(), Group(), options, {});
    ASSERT_TRUE(strategy.ok()) << strategy.status();
    std::vector<torch::Tensor> values;
    int64_t held = 0;
    for (const Slice& s : (*strategy)->ParameterSlices()) {
      values.push_back(s.data * 2);  // any values laid out as the slices
      held += s.end - s.begin;
    }
    auto whole = (*strategy)->GatherOnRoot(values);
    ASSERT_TRUE(whole.ok()) << whole.status();
    ASSERT_TRUE((*strategy)->GatherFullParameters().ok());
    if (Group().rank() == 0) {
      ASSERT_EQ(whole->size(), net->named_parameters().size()) << name;
      for (const auto& p : net->named_parameters()) {
        EXPECT_TRUE(torch::equal(whole->at(p.key()), p.value() * 2)) << name << " " << p.key();
      }
    } else {
      EXPECT_TRUE(whole->empty());
    }
    int64_t total = 0;
    for (const auto& p : net->parameters()) total += p.numel();
    // zero3 holds 1/N of the elements (plus padding); the others every one.
    if (std::string(name) == "zero3") {
      EXPECT_LE(held, total / Group().size() + 3 * Group().size()) << held;
    } else {
      EXPECT_EQ(held, total);
    }
  }
}

TEST(Zero, ShardedStateIsAboutOneNthOfDdp) {
  const double world = Group().size();
  MemoryStats ddp, z1, z2, z3;
  Train("ddp", 1, &ddp);
  Train("zero1", 1, &z1);
  Train("zero2", 1, &z2);
  Train("zero3", 1, &z3);
  // Parameters, gradients and optimizer state all about 1/N (ZeRO-3; measured between
  // steps, when no unit is gathered).
  EXPECT_NEAR(static_cast<double>(z3.param_bytes) / static_cast<double>(ddp.param_bytes), 1.0 / world, 0.03)
      << z3.param_bytes << " vs " << ddp.param_bytes;
  EXPECT_NEAR(static_cast<double>(z3.grad_bytes) / static_cast<double>(ddp.grad_bytes), 1.0 / world, 0.03);
  EXPECT_NEAR(static_cast<double>(z3.optimizer_bytes) / static_cast<double>(ddp.optimizer_bytes), 1.0 / world, 0.03);
  const double opt_ratio = static_cast<double>(z1.optimizer_bytes) / static_cast<double>(ddp.optimizer_bytes);
  const double grad_ratio = static_cast<double>(z2.grad_bytes) / static_cast<double>(ddp.grad_bytes);
  // Within padding (at most world-1 elements per bucket) of 1/N.
  EXPECT_NEAR(opt_ratio, 1.0 / world, 0.02) << z1.optimizer_bytes << " vs " << ddp.optimizer_bytes;
  EXPECT_NEAR(grad_ratio, 1.0 / world, 0.02) << z2.grad_bytes << " vs " << ddp.grad_bytes;
  EXPECT_NEAR(static_cast<double>(z2.optimizer_bytes) / static_cast<double>(ddp.optimizer_bytes),
              1.0 / world, 0.02);
  if (Group().rank() == 0) {
    for (const auto& [name, m] : {std::pair{"ddp", ddp}, {"zero1", z1}, {"zero2", z2}, {"zero3", z3}}) {
      std::printf("memory per rank at world %d, %s: params %lld B, grads %lld B, optimizer %lld B\n",
                  Group().size(), name, static_cast<long long>(m.param_bytes),
                  static_cast<long long>(m.grad_bytes), static_cast<long long>(m.optimizer_bytes));
    }
  }
}

TEST(ProcessGroup, CollectivesComputeWhatTheySay) {
  ProcessGroup& g = Group();
  const int world = g.size(), rank = g.rank();
  torch::Tensor x = torch::full({5}, static_cast<float>(rank + 1));
  ASSERT_TRUE(g.AllReduce(x, ReduceOp::kSum)->Wait().ok());
  EXPECT_EQ(x[0].item<float>(), world * (world + 1) / 2.0f);
  torch::Tensor avg = torch::full({3}, static_cast<double>(rank), torch::kFloat64);
  ASSERT_TRUE(g.AllReduce(avg, ReduceOp::kAverage)->Wait().ok());
  EXPECT_DOUBLE_EQ(avg[0].item<double>(), (world - 1) / 2.0);
  torch::Tensor in = torch::arange(world * 2, torch::kFloat32) + rank;
  torch::Tensor out = torch::empty({2});
  ASSERT_TRUE(g.ReduceScatter(out, in, ReduceOp::kSum)->Wait().ok());
  EXPECT_EQ(out[1].item<float>(), world * (2 * rank + 1) + world * (world - 1) / 2.0f);
  torch::Tensor gathered = torch::empty({world * 3}, torch::kInt64);
  ASSERT_TRUE(g.AllGather(gathered, torch::full({3}, rank, torch::kInt64))->Wait().ok());
  for (int r = 0; r < world; ++r) EXPECT_EQ(gathered[r * 3 + 2].item<int64_t>(), r);
  torch::Tensor b = torch::full({4}, rank == 1 ? 42.0f : 0.0f);
  ASSERT_TRUE(g.Broadcast(b, 1)->Wait().ok());
  EXPECT_EQ(b[3].item<float>(), 42.0f);
  EXPECT_TRUE(g.Barrier().ok());
  // A type MPI cannot reduce is an error, not a crash.
  EXPECT_FALSE(g.AllReduce(torch::ones({2}, torch::kBFloat16), ReduceOp::kSum)->Wait().ok());
}

}  // namespace
}  // namespace loom::dist
