// Video clips as pictures: GIFs read back with giflib's own decoder (frame count, size,
// pixels, each frame's delay, the endless loop), RGB through the 6x7x6 colour cube, bad
// shapes refused with nothing written, and the frame strip's PNG layout.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include <gif_lib.h>  // defines: DGifOpenFileName, DGifSlurp, DGifSavedExtensionToGCB, DGifCloseFile

#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC  // private to this test; loom_ingest compiles its own reader
#define STBI_ONLY_PNG
#include <stb/stb_image.h>  // defines: stbi_info, stbi_load, stbi_image_free

#include "eval/gif.h"
#include "tests/support/subprocess.h"  // TempDir

namespace loom::eval {
namespace {

struct GifCloser {
  void operator()(GifFileType* gif) const {
    int error = 0;
    DGifCloseFile(gif, &error);
  }
};
using Gif = std::unique_ptr<GifFileType, GifCloser>;

std::string Why(int code) {
  const char* why = GifErrorString(code);
  return why != nullptr ? why : "giflib error " + std::to_string(code);
}

// The whole file decoded, or null after a test failure saying why.
Gif ReadGif(const std::string& path) {
  int error = 0;
  Gif gif(DGifOpenFileName(path.c_str(), &error));
  if (gif == nullptr) {
    ADD_FAILURE() << path << ": " << Why(error);
    return nullptr;
  }
  if (DGifSlurp(gif.get()) != GIF_OK) {
    ADD_FAILURE() << path << ": " << Why(gif->Error);
    return nullptr;
  }
  return gif;
}

// The colour of pixel (x, y) of frame f, through its palette.
GifColorType Colour(const GifFileType& gif, int f, int x, int y) {
  const SavedImage& image = gif.SavedImages[f];
  const ColorMapObject* map = image.ImageDesc.ColorMap != nullptr ? image.ImageDesc.ColorMap : gif.SColorMap;
  return map->Colors[image.RasterBits[y * image.ImageDesc.Width + x]];
}

// A NETSCAPE2.0 application extension whose sub-block is {1, 0, 0}: loop forever.
// DGifSlurp files the records before an image under that image, the rest under the file.
bool LoopsForever(const GifFileType& gif) {
  const auto has_loop = [](int count, const ExtensionBlock* blocks) {
    for (int i = 0; i + 1 < count; ++i) {
      const ExtensionBlock& app = blocks[i];
      if (app.Function != APPLICATION_EXT_FUNC_CODE || app.ByteCount != 11 ||
          std::memcmp(app.Bytes, "NETSCAPE2.0", 11) != 0) {
        continue;
      }
      const ExtensionBlock& sub = blocks[i + 1];
      return sub.Function == CONTINUE_EXT_FUNC_CODE && sub.ByteCount == 3 && sub.Bytes[0] == 1 &&
             sub.Bytes[1] == 0 && sub.Bytes[2] == 0;
    }
    return false;
  };
  if (has_loop(gif.ExtensionBlockCount, gif.ExtensionBlocks)) return true;
  for (int i = 0; i < gif.ImageCount; ++i) {
    if (has_loop(gif.SavedImages[i].ExtensionBlockCount, gif.SavedImages[i].ExtensionBlocks)) return true;
  }
  return false;
}

size_t EntriesIn(const std::filesystem::path& dir) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(dir)) ++n;
  return n;
}

TEST(WriteGif, GrayClipReadsBackFrameByFrameWithItsDelayAndLoopsForever) {
  loom::testing::TempDir dir;
  const std::string path = dir.str() + "/clip.gif";
  // A bright 2x2 square on a dark 8x8 background, two pixels further right each frame:
  // rows 3-4, columns 1 + 2f and 2 + 2f.
  torch::Tensor frames = torch::full({3, 1, 8, 8}, -1.0);
  for (int64_t f = 0; f < 3; ++f) frames[f].narrow(1, 3, 2).narrow(2, 1 + 2 * f, 2).fill_(1.0);
  const absl::Status written = WriteGif(path, frames, /*delay_cs=*/7, /*scale=*/2);
  ASSERT_TRUE(written.ok()) << written;
  EXPECT_EQ(EntriesIn(dir.path()), 1u) << "no temporary file left beside the GIF";

  const Gif gif = ReadGif(path);
  ASSERT_TRUE(gif != nullptr);
  ASSERT_EQ(gif->ImageCount, 3);
  EXPECT_EQ(gif->SWidth, 16);
  EXPECT_EQ(gif->SHeight, 16);
  // Frame 2 at scale 2: the square covers rows 6-9 and columns 10-13.
  for (int y = 0; y < 16; ++y) {
    for (int x = 0; x < 16; ++x) {
      const int gray = Colour(*gif, 2, x, y).Red;
      if (y >= 6 && y < 10 && x >= 10 && x < 14) {
        EXPECT_GT(gray, 200) << "inside the square at (" << x << ", " << y << ")";
      } else {
        EXPECT_LT(gray, 50) << "outside the square at (" << x << ", " << y << ")";
      }
    }
  }
  // The square moved: frame 0 has it at columns 2-5, where frame 2 is dark.
  EXPECT_GT(int{Colour(*gif, 0, 3, 7).Red}, 200);
  EXPECT_LT(int{Colour(*gif, 2, 3, 7).Red}, 50);
  for (int f = 0; f < 3; ++f) {
    GraphicsControlBlock timing{};
    ASSERT_EQ(DGifSavedExtensionToGCB(gif.get(), f, &timing), GIF_OK) << "frame " << f << " has no control block";
    EXPECT_EQ(timing.DelayTime, 7) << "frame " << f;
    EXPECT_EQ(timing.TransparentColor, NO_TRANSPARENT_COLOR) << "frame " << f;
  }
  EXPECT_TRUE(LoopsForever(*gif));
}

TEST(WriteGif, RgbColoursComeBackAsTheirNearestCubeEntry) {
  loom::testing::TempDir dir;
  const std::string path = dir.str() + "/colours.gif";
  // One row of five pixels: red, green, blue, white (cube corners, exact) and mid gray
  // (128, between levels: within half a step of 51, 42.5 and 51).
  const torch::Tensor colours =
      torch::tensor({{1.0, -1.0, -1.0}, {-1.0, 1.0, -1.0}, {-1.0, -1.0, 1.0}, {1.0, 1.0, 1.0}, {0.0, 0.0, 0.0}});
  const torch::Tensor frames = colours.t().reshape({1, 3, 1, 5});  // [T, C, H, W]
  const absl::Status written = WriteGif(path, frames, 10);
  ASSERT_TRUE(written.ok()) << written;

  const Gif gif = ReadGif(path);
  ASSERT_TRUE(gif != nullptr);
  ASSERT_EQ(gif->ImageCount, 1);
  ASSERT_EQ(gif->SWidth, 5);
  ASSERT_EQ(gif->SHeight, 1);
  const int corners[4][3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {255, 255, 255}};
  for (int i = 0; i < 4; ++i) {
    const GifColorType c = Colour(*gif, 0, i, 0);
    EXPECT_EQ(int{c.Red}, corners[i][0]) << "pixel " << i;
    EXPECT_EQ(int{c.Green}, corners[i][1]) << "pixel " << i;
    EXPECT_EQ(int{c.Blue}, corners[i][2]) << "pixel " << i;
  }
  const GifColorType gray = Colour(*gif, 0, 4, 0);
  EXPECT_LE(std::abs(gray.Red - 128), 26);
  EXPECT_LE(std::abs(gray.Green - 128), 22);
  EXPECT_LE(std::abs(gray.Blue - 128), 26);
}

TEST(WriteGif, RefusesBadShapesNamingThemAndWritesNothing) {
  loom::testing::TempDir dir;
  const std::string path = dir.str() + "/bad.gif";
  const absl::Status flat = WriteGif(path, torch::zeros({3, 8, 8}), 5);
  EXPECT_EQ(flat.code(), absl::StatusCode::kInvalidArgument) << flat;
  EXPECT_NE(flat.message().find("[3, 8, 8]"), std::string::npos) << flat;
  EXPECT_NE(flat.message().find("[T, C, H, W]"), std::string::npos) << flat;
  EXPECT_NE(flat.message().find(path), std::string::npos) << flat;
  // Two channels, and no frames at all.
  EXPECT_EQ(WriteGif(path, torch::zeros({2, 2, 8, 8}), 5).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(WriteGif(path, torch::zeros({0, 1, 8, 8}), 5).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_EQ(EntriesIn(dir.path()), 0u);
}

TEST(WriteStrip, LaysOutOneRowPerClipWithItsFramesAcross) {
  loom::testing::TempDir dir;
  const std::string path = dir.str() + "/strip.png";
  // Two clips of three 8x8 gray frames, all mid gray but clip 1's last frame, white.
  torch::Tensor clips = torch::zeros({2, 3, 1, 8, 8});
  clips[1][2].fill_(1.0);
  const absl::Status written = WriteStrip(path, clips, /*scale=*/2);
  ASSERT_TRUE(written.ok()) << written;
  ASSERT_GT(std::filesystem::file_size(path), 0u);

  // WriteGrid's layout: 3 columns and 2 rows of 16x16 tiles, 2 pixels of padding around each.
  const int tile = 16 + 2;
  int width = 0, height = 0, channels = 0;
  ASSERT_EQ(stbi_info(path.c_str(), &width, &height, &channels), 1) << stbi_failure_reason();
  EXPECT_EQ(width, 3 * tile + 2);
  EXPECT_EQ(height, 2 * tile + 2);
  EXPECT_EQ(channels, 1);

  unsigned char* px = stbi_load(path.c_str(), &width, &height, &channels, 1);
  ASSERT_NE(px, nullptr) << stbi_failure_reason();
  // The centre of the tile of clip n, frame f.
  const auto centre = [&](int n, int f) { return int{px[(2 + n * tile + 8) * width + (2 + f * tile + 8)]}; };
  EXPECT_EQ(centre(1, 2), 255);
  EXPECT_EQ(centre(0, 2), 128);
  EXPECT_EQ(centre(1, 0), 128);
  EXPECT_EQ(int{px[0]}, 0) << "padding";
  stbi_image_free(px);
}

}  // namespace
}  // namespace loom::eval
