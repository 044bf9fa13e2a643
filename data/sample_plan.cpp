// Epoch permutations and batch slicing (see sample_plan.h).
#include "data/sample_plan.h"

#include <nlohmann/json.hpp>
#include <numeric>

#include "core/rng.h"

namespace loom::data {

std::string LoaderState::ToJson() const {
  return nlohmann::json{{"epoch", epoch}, {"position", position}, {"seed", seed}}.dump();
}

absl::StatusOr<LoaderState> LoaderState::FromJson(const std::string& text) {
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    LoaderState s;
    s.epoch = j.at("epoch").get<int64_t>();
    s.position = j.at("position").get<int64_t>();
    s.seed = j.at("seed").get<uint64_t>();
    if (s.epoch < 0 || s.position < 0) return absl::InvalidArgumentError("negative loader state");
    return s;
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(std::string("loader state is not valid: ") + e.what());
  }
}

SamplePlan::SamplePlan(int64_t total, int64_t batch, uint64_t seed)
    : total_(total), batch_(batch), seed_(seed) {}

std::vector<int64_t> SamplePlan::Permutation(int64_t epoch) const {
  std::vector<int64_t> p(static_cast<size_t>(total_));
  std::iota(p.begin(), p.end(), 0);
  SplitMix64 rng(SeedFor(seed_, 0x5045524dull /* "PERM" */, static_cast<uint64_t>(epoch)));
  for (int64_t i = total_ - 1; i > 0; --i) {
    const int64_t j = static_cast<int64_t>(rng.Below(static_cast<uint64_t>(i) + 1));
    std::swap(p[i], p[j]);
  }
  return p;
}

const std::vector<int64_t>& SamplePlan::CachedPermutation(int64_t epoch) const {
  if (epoch != cached_epoch_) {
    cached_ = Permutation(epoch);
    cached_epoch_ = epoch;
  }
  return cached_;
}

LoaderState SamplePlan::Normalize(const LoaderState& state) const {
  LoaderState s = state;
  if (s.position + batch_ > total_) {
    s.epoch += 1;
    s.position = 0;
  }
  return s;
}

std::vector<int64_t> SamplePlan::GlobalBatch(const LoaderState& state) const {
  const LoaderState s = Normalize(state);
  const std::vector<int64_t>& perm = CachedPermutation(s.epoch);
  return std::vector<int64_t>(perm.begin() + s.position, perm.begin() + s.position + batch_);
}

LoaderState SamplePlan::Advance(const LoaderState& state) const {
  LoaderState s = Normalize(state);
  s.position += batch_;
  return s;
}

std::pair<int64_t, int64_t> SamplePlan::RankSlice(int64_t batch, int rank, int world) {
  return {batch * rank / world, batch * (rank + 1) / world};
}

}  // namespace loom::data
