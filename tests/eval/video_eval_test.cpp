// The direction reader and the prompts of the video evaluation: a bright square sliding
// on a dark canvas in each direction is read as that direction, also when it leaves the
// canvas (frames without it count for nothing) and under faint noise; captions name their directions; the
// templates fill {class}, {a_class} and {direction}.
#include <gtest/gtest.h>

#include "eval/video_eval.h"

namespace loom::eval {
namespace {

// Clips [1, T, 1, S, S] of a 6x6 square starting at (x, y) and moving (dx, dy) per frame.
torch::Tensor Sliding(int x, int y, int dx, int dy, int T = 9, int S = 24) {
  torch::Tensor clip = torch::full({1, T, 1, S, S}, -1.0f);
  for (int t = 0; t < T; ++t) {
    for (int r = 0; r < 6; ++r) {
      for (int c = 0; c < 6; ++c) {
        const int yy = y + dy * t + r, xx = x + dx * t + c;
        if (yy >= 0 && yy < S && xx >= 0 && xx < S) clip[0][t][0][yy][xx] = 1.0f;
      }
    }
  }
  return clip;
}

TEST(VideoEval, TheReaderFollowsTheCentroid) {
  const torch::Tensor clips = torch::cat({Sliding(2, 9, 2, 0), Sliding(16, 9, -2, 0), Sliding(9, 16, 0, -2),
                                          Sliding(9, 2, 0, 2),
                                          // leaving the canvas on the right, with a small sideways wobble
                                          Sliding(14, 8, 2, 0), Sliding(8, 14, 1, -2)});
  const torch::Tensor read = ReadDirections(clips);
  const std::vector<int64_t> want = {1, 0, 2, 3, 1, 2};
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(read[static_cast<int64_t>(i)].item<int64_t>(), want[i]) << "clip " << i;
  }
  // Faint noise (as a sampler leaves on a dark background) leaves the reading as it is.
  torch::manual_seed(2);
  const torch::Tensor noisy = (clips + 0.05 * torch::randn(clips.sizes())).clamp(-1, 1);
  EXPECT_TRUE(torch::equal(ReadDirections(noisy), read)) << ReadDirections(noisy) << read;
}

TEST(VideoEval, CaptionsAndTemplatesNameDirections) {
  EXPECT_EQ(Directions(), (std::vector<std::string>{"left", "right", "up", "down"}));
  EXPECT_EQ(DirectionOfCaption("a sneaker moving right"), 1);
  EXPECT_EQ(DirectionOfCaption("a pair of trousers sliding to the left"), 0);
  EXPECT_EQ(DirectionOfCaption("a bag that moves upwards"), 2);
  EXPECT_EQ(DirectionOfCaption("a video of a shirt moving down"), 3);
  EXPECT_EQ(DirectionOfCaption("a photo of a shirt"), -1);
  EXPECT_EQ(RenderVideoTemplate("{a_class} drifting {direction}", "ankle boot", "up"), "an ankle boot drifting up");
  EXPECT_EQ(RenderVideoTemplate("{class}, {direction}", "bag", "left"), "bag, left");
  for (const std::string& t : DefaultVideoTemplates()) EXPECT_NE(t.find("{direction}"), std::string::npos) << t;
}

}  // namespace
}  // namespace loom::eval
