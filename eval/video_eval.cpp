// Judged text-to-video (see video_eval.h).
#include "eval/video_eval.h"

#include <chrono>
#include <cmath>
#include <limits>
#include <sstream>

#include "core/status.h"
#include "eval/prompt_eval.h"     // RenderTemplate
#include "eval/reconstruction.h"  // OpenEvalImages

namespace loom::eval {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Judged classes [B, T] of every frame of clips [B, T, C, H, W].
absl::StatusOr<torch::Tensor> JudgeFrames(const Judge& judge, const torch::Tensor& clips) {
  const JudgeSpec& spec = judge.spec();
  if (clips.size(2) != spec.channels || clips.size(3) != spec.image_size || clips.size(4) != spec.image_size) {
    return absl::InvalidArgumentError("the clips' frames are " + c10::str(clips.sizes().slice(2)) +
                                      "; the judge reads [" + std::to_string(spec.channels) + ", " +
                                      std::to_string(spec.image_size) + ", " + std::to_string(spec.image_size) + "]");
  }
  const int64_t B = clips.size(0), T = clips.size(1);
  return judge.Predict(clips.flatten(0, 1)).to(torch::kCPU, torch::kLong).view({B, T});
}

// Per clip: frames judged `want`, whether the majority vote is `want`, class changes.
struct FrameFigures {
  double correct_frames = 0, votes = 0, flips = 0;
};
FrameFigures Score(const torch::Tensor& judged, const torch::Tensor& want, int64_t classes) {
  FrameFigures f;
  const int64_t B = judged.size(0), T = judged.size(1);
  const auto j = judged.accessor<int64_t, 2>();
  const auto w = want.accessor<int64_t, 1>();
  for (int64_t i = 0; i < B; ++i) {
    std::vector<int64_t> count(static_cast<size_t>(classes), 0);
    for (int64_t t = 0; t < T; ++t) {
      f.correct_frames += j[i][t] == w[i];
      if (j[i][t] >= 0 && j[i][t] < classes) ++count[static_cast<size_t>(j[i][t])];
      if (t > 0) f.flips += j[i][t] != j[i][t - 1];
    }
    f.votes += std::max_element(count.begin(), count.end()) - count.begin() == w[i];
  }
  return f;
}

}  // namespace

const std::vector<std::string>& Directions() {
  static const std::vector<std::string> names = {"left", "right", "up", "down"};
  return names;
}

torch::Tensor ReadDirections(const torch::Tensor& clips) {
  const torch::Tensor x = clips.detach().to(torch::kCPU, torch::kFloat64);
  const int64_t B = x.size(0), T = x.size(1), H = x.size(3), W = x.size(4);
  const torch::Tensor w = ((x + 1) / 2).clamp(0, 1).mean(2);  // [B, T, H, W] intensity
  const torch::Tensor mass = w.sum({2, 3}).clamp_min(1e-9);  // [B, T]
  const torch::Tensor ys = torch::arange(H, torch::kFloat64).view({1, 1, H, 1});
  const torch::Tensor xs = torch::arange(W, torch::kFloat64).view({1, 1, 1, W});
  const torch::Tensor cx = (w * xs).sum({2, 3}) / mass, cy = (w * ys).sum({2, 3}) / mass;  // [B, T]
  // Least-squares slopes against the frame index, each frame weighted by its mass above a
  // quarter of the clip's largest, so a frame the garment has (nearly) left, holding
  // little but background, tells nothing.
  const torch::Tensor weight = ((mass / mass.amax(1, true) - 0.25) / 0.75).clamp_min(0);  // [B, T]
  const torch::Tensor frame = torch::arange(T, torch::kFloat64).unsqueeze(0);
  const torch::Tensor t = frame - (weight * frame).sum(1, true) / weight.sum(1, true);  // centred per clip
  const auto slope = [&](const torch::Tensor& c) {
    const torch::Tensor centred = c - (weight * c).sum(1, true) / weight.sum(1, true);
    return (weight * centred * t).sum(1) / (weight * t.pow(2)).sum(1).clamp_min(1e-9);
  };
  const torch::Tensor sx = slope(cx), sy = slope(cy);
  torch::Tensor out = torch::empty({B}, torch::kLong);
  for (int64_t i = 0; i < B; ++i) {
    const double a = sx[i].item<double>(), b = sy[i].item<double>();
    out[i] = std::abs(a) >= std::abs(b) ? (a < 0 ? 0 : 1) : (b < 0 ? 2 : 3);  // image y grows downwards
  }
  return out;
}

int DirectionOfCaption(const std::string& caption) {
  std::istringstream words(caption);
  for (std::string word; words >> word;) {
    if (word == "left") return 0;
    if (word == "right") return 1;
    if (word == "up" || word == "upwards") return 2;
    if (word == "down" || word == "downwards") return 3;
  }
  return -1;
}

std::string RenderVideoTemplate(const std::string& templ, const std::string& name, const std::string& direction) {
  std::string out = RenderTemplate(templ, name);
  const std::string key = "{direction}";
  for (size_t at = out.find(key); at != std::string::npos; at = out.find(key, at + direction.size())) {
    out.replace(at, key.size(), direction);
  }
  return out;
}

std::vector<std::string> DefaultVideoTemplates() {
  return {
      "{a_class} moving {direction}",             // a training wording
      "a video of {a_class} moving {direction}",  // a training wording
      "{a_class} drifting {direction}",           // never in the training captions
      "a clip of {a_class} going {direction}",    // never in the training captions
  };
}

nlohmann::ordered_json VideoEvalResult::ToJson() const {
  nlohmann::ordered_json per_template = nlohmann::ordered_json::object();
  for (const PerTemplate& t : templates) {
    per_template[t.templ] = {{"class_accuracy", t.class_accuracy},
                             {"vote_accuracy", t.vote_accuracy},
                             {"direction_accuracy", t.direction_accuracy}};
  }
  nlohmann::ordered_json by_class = nlohmann::ordered_json::object(), by_direction = by_class;
  for (size_t c = 0; c < classes.size() && c < per_class.size(); ++c) by_class[classes[c]] = per_class[c];
  for (size_t d = 0; d < Directions().size() && d < per_direction.size(); ++d) by_direction[Directions()[d]] = per_direction[d];
  const auto number = [](double v) { return std::isnan(v) ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(v); };
  return {{"class_accuracy", class_accuracy},
          {"vote_accuracy", vote_accuracy},
          {"direction_accuracy", direction_accuracy},
          {"class_flips", class_flips},
          {"templates", per_template},
          {"per_class", by_class},
          {"per_direction", by_direction},
          {"real_direction_accuracy", number(real_direction_accuracy)},
          {"real_class_accuracy", number(real_class_accuracy)},
          {"real_vote_accuracy", number(real_vote_accuracy)},
          {"real_clips", real_clips},
          {"clips", clips},
          {"frames", frames},
          {"seconds", seconds}};
}

absl::StatusOr<VideoEvalResult> EvaluateVideo(const ClipSampler& sample, const Judge& judge,
                                              const VideoEvalOptions& o) {
  const auto started = std::chrono::steady_clock::now();
  if (o.per_prompt < 1) return absl::InvalidArgumentError("per_prompt must be at least 1");
  VideoEvalResult r;
  r.classes = judge.spec().classes;
  const int64_t K = static_cast<int64_t>(r.classes.size()), D = static_cast<int64_t>(Directions().size());
  torch::NoGradGuard no_grad;

  // The reader and the judge on real clips first.
  r.real_direction_accuracy = r.real_class_accuracy = r.real_vote_accuracy = kNaN;
  if (!o.real.empty()) {
    const JudgeSpec& spec = judge.spec();
    ASSIGN_OR_RETURN(EvalImages real, OpenEvalImages(o.real, spec.image_size, spec.channels, spec.fit, o.real_limit,
                                                     50, o.seed, 1));
    // The dataset's label names as the judge's class indices.
    std::vector<int64_t> to_judge;
    for (const std::string& n : real.label_names) {
      const auto it = std::find(r.classes.begin(), r.classes.end(), n);
      to_judge.push_back(it == r.classes.end() ? -1 : it - r.classes.begin());
    }
    double directions = 0, frames = 0, votes = 0, judged_clips = 0, frame_count = 0;
    for (int64_t done = 0; done + real.batch <= real.total; done += real.batch) {
      ASSIGN_OR_RETURN(data::Batch batch, real.loader->Next());
      if (batch.pixels.dim() != 5) return absl::InvalidArgumentError("--real " + o.real + " holds images, not clips");
      const torch::Tensor read = ReadDirections(batch.pixels);
      const int64_t B = batch.pixels.size(0), T = batch.pixels.size(1);
      for (int64_t i = 0; i < B; ++i) {
        const int want = DirectionOfCaption(batch.captions[i]);
        if (want < 0) {
          return absl::InvalidArgumentError("--real " + o.real + ": the caption '" + batch.captions[i] +
                                            "' names no direction");
        }
        directions += read[i].item<int64_t>() == want;
      }
      torch::Tensor want = torch::full({B}, -1, torch::kLong);
      const torch::Tensor labels = batch.labels.to(torch::kCPU, torch::kLong);
      for (int64_t i = 0; i < B; ++i) {
        const int64_t l = labels[i].item<int64_t>();
        if (l >= 0 && l < static_cast<int64_t>(to_judge.size())) want[i] = to_judge[static_cast<size_t>(l)];
      }
      if ((want >= 0).all().item<bool>()) {
        ASSIGN_OR_RETURN(const torch::Tensor judged, JudgeFrames(judge, batch.pixels));
        const FrameFigures f = Score(judged, want, K);
        frames += f.correct_frames;
        votes += f.votes;
        judged_clips += B;
        frame_count += static_cast<double>(B * T);
      }
      r.real_clips += B;
    }
    if (r.real_clips == 0) return absl::InvalidArgumentError("--real " + o.real + " has no clips");
    r.real_direction_accuracy = directions / static_cast<double>(r.real_clips);
    if (judged_clips > 0) {
      r.real_class_accuracy = frames / frame_count;
      r.real_vote_accuracy = votes / judged_clips;
    }
  }

  // Every (template, class, direction) per_prompt times, sampled `batch` at a time.
  const std::vector<std::string> templates = o.templates.empty() ? DefaultVideoTemplates() : o.templates;
  struct Row {
    int64_t templ, cls, dir;
  };
  std::vector<Row> rows;
  std::vector<std::string> prompts;
  for (int64_t m = 0; m < static_cast<int64_t>(templates.size()); ++m) {
    for (int64_t c = 0; c < K; ++c) {
      for (int64_t d = 0; d < D; ++d) {
        for (int64_t k = 0; k < o.per_prompt; ++k) {
          rows.push_back({m, c, d});
          prompts.push_back(RenderVideoTemplate(templates[m], r.classes[c], Directions()[d]));
        }
      }
    }
  }
  const size_t M = templates.size();
  std::vector<double> t_frames(M, 0), t_votes(M, 0), t_dirs(M, 0), t_clips(M, 0), t_frame_count(M, 0);
  std::vector<double> c_frames(K, 0), c_count(K, 0), d_right(D, 0), d_count(D, 0);
  double flips = 0, pairs = 0;
  for (size_t from = 0; from < rows.size(); from += static_cast<size_t>(o.batch)) {
    const size_t to = std::min(rows.size(), from + static_cast<size_t>(o.batch));
    const std::vector<std::string> chunk(prompts.begin() + from, prompts.begin() + to);
    ASSIGN_OR_RETURN(const torch::Tensor clips, sample(chunk, o.seed + from));
    if (clips.dim() != 5 || clips.size(0) != static_cast<int64_t>(chunk.size())) {
      return absl::InternalError("the sampler returned " + c10::str(clips.sizes()) + " for " +
                                 std::to_string(chunk.size()) + " prompts");
    }
    const int64_t T = clips.size(1);
    r.frames = T;
    ASSIGN_OR_RETURN(const torch::Tensor judged, JudgeFrames(judge, clips));
    const torch::Tensor read = ReadDirections(clips);
    for (size_t i = 0; i < chunk.size(); ++i) {
      const Row& row = rows[from + i];
      const torch::Tensor one = judged.narrow(0, static_cast<int64_t>(i), 1);
      const FrameFigures f = Score(one, torch::full({1}, row.cls, torch::kLong), K);
      const bool direction = read[static_cast<int64_t>(i)].item<int64_t>() == row.dir;
      t_frames[row.templ] += f.correct_frames;
      t_frame_count[row.templ] += static_cast<double>(T);
      t_votes[row.templ] += f.votes;
      t_dirs[row.templ] += direction;
      t_clips[row.templ] += 1;
      c_frames[row.cls] += f.correct_frames;
      c_count[row.cls] += static_cast<double>(T);
      d_right[row.dir] += direction;
      d_count[row.dir] += 1;
      flips += f.flips;
      pairs += static_cast<double>(T - 1);
    }
    r.clips += static_cast<int64_t>(chunk.size());
  }
  double all_frames = 0, all_frame_count = 0, all_votes = 0, all_dirs = 0;
  for (size_t m = 0; m < M; ++m) {
    r.templates.push_back({templates[m], t_frames[m] / t_frame_count[m], t_votes[m] / t_clips[m], t_dirs[m] / t_clips[m]});
    all_frames += t_frames[m];
    all_frame_count += t_frame_count[m];
    all_votes += t_votes[m];
    all_dirs += t_dirs[m];
  }
  r.class_accuracy = all_frames / all_frame_count;
  r.vote_accuracy = all_votes / static_cast<double>(r.clips);
  r.direction_accuracy = all_dirs / static_cast<double>(r.clips);
  r.class_flips = pairs > 0 ? flips / pairs : 0;
  for (int64_t c = 0; c < K; ++c) r.per_class.push_back(c_frames[c] / c_count[c]);
  for (int64_t d = 0; d < D; ++d) r.per_direction.push_back(d_right[d] / d_count[d]);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return r;
}

}  // namespace loom::eval
