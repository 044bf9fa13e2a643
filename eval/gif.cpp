// Animated GIFs and frame strips of video clips (see gif.h).
#include "eval/gif.h"

#include <gif_lib.h>  // defines: EGifOpen, EGifPut*, EGifCloseFile, EGifGCBToExtension, GifErrorString

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "core/fs.h"          // defines: WriteFileAtomic
#include "eval/image_grid.h"  // defines: WriteGrid

static_assert(GIFLIB_MAJOR >= 5, "giflib 5 or newer: errors come back through int* arguments");

namespace loom::eval {
namespace {

// The RGB palette: 6 x 7 x 6 = 252 evenly spaced colours. Green gets the extra level
// because the eye tells greens apart best; 256 - 252 entries stay black and unused.
constexpr int kRedLevels = 6, kGreenLevels = 7, kBlueLevels = 6;
constexpr int kPaletteSize = 256;  // giflib wants a power of two

// Level i of n evenly spaced values over 0..255.
uint8_t Level(int i, int n) { return static_cast<uint8_t>(std::lround(i * 255.0 / (n - 1))); }

// For each 8-bit value, the index of its nearest level among n. The cube is separable,
// so the nearest colour is the nearest level in each channel on its own.
std::array<uint8_t, 256> NearestLevel(int n) {
  std::array<uint8_t, 256> nearest{};
  for (int v = 0; v < 256; ++v) {
    int best = 0;
    for (int i = 1; i < n; ++i) {
      if (std::abs(Level(i, n) - v) < std::abs(Level(best, n) - v)) best = i;
    }
    nearest[v] = static_cast<uint8_t>(best);
  }
  return nearest;
}

std::array<GifColorType, kPaletteSize> Palette(bool rgb) {
  std::array<GifColorType, kPaletteSize> colors{};
  if (!rgb) {
    for (int i = 0; i < kPaletteSize; ++i) {
      const auto v = static_cast<GifByteType>(i);
      colors[i].Red = colors[i].Green = colors[i].Blue = v;
    }
    return colors;
  }
  for (int r = 0; r < kRedLevels; ++r) {
    for (int g = 0; g < kGreenLevels; ++g) {
      for (int b = 0; b < kBlueLevels; ++b) {
        GifColorType& c = colors[(r * kGreenLevels + g) * kBlueLevels + b];
        c.Red = Level(r, kRedLevels);
        c.Green = Level(g, kGreenLevels);
        c.Blue = Level(b, kBlueLevels);
      }
    }
  }
  return colors;
}

// giflib's error strings are NULL for codes it does not know.
std::string GifError(int code) {
  const char* what = GifErrorString(code);
  return what != nullptr ? what : "giflib error " + std::to_string(code);
}

// giflib encodes into memory and WriteFileAtomic puts the bytes on disk, so a failed
// or interrupted write never leaves a partial GIF at the path.
int AppendBytes(GifFileType* gif, const GifByteType* bytes, int size) {
  static_cast<std::string*>(gif->UserData)->append(reinterpret_cast<const char*>(bytes), static_cast<size_t>(size));
  return size;
}

// Palette indices, frame after frame, row after row: [T * H * W] from [T, H, W, C] uint8.
std::vector<GifPixelType> PaletteIndices(const torch::Tensor& pixels) {
  const int64_t count = pixels.size(0) * pixels.size(1) * pixels.size(2), c = pixels.size(3);
  const uint8_t* px = pixels.data_ptr<uint8_t>();
  std::vector<GifPixelType> indices(static_cast<size_t>(count));
  if (c == 1) {
    std::copy(px, px + count, indices.begin());
    return indices;
  }
  const std::array<uint8_t, 256> red = NearestLevel(kRedLevels), green = NearestLevel(kGreenLevels),
                                 blue = NearestLevel(kBlueLevels);
  for (int64_t i = 0; i < count; ++i) {
    const uint8_t* p = px + i * 3;
    indices[i] = static_cast<GifPixelType>((red[p[0]] * kGreenLevels + green[p[1]]) * kBlueLevels + blue[p[2]]);
  }
  return indices;
}

}  // namespace

absl::Status WriteGif(const std::string& path, const torch::Tensor& frames, int delay_cs, int scale) {
  if (frames.dim() != 4 || frames.size(0) < 1 || (frames.size(1) != 1 && frames.size(1) != 3) ||
      frames.size(2) < 1 || frames.size(3) < 1) {
    return absl::InvalidArgumentError("cannot write " + path + ": frames of shape " + c10::str(frames.sizes()) +
                                      "; expected [T, C, H, W] with T, H, W >= 1 and C = 1 (gray) or 3 (RGB)");
  }
  if (delay_cs < 1 || delay_cs > 65535) {
    return absl::InvalidArgumentError("cannot write " + path + ": a frame delay of " + std::to_string(delay_cs) +
                                      " hundredths of a second; a GIF holds 1..65535");
  }
  if (scale < 1) {
    return absl::InvalidArgumentError("cannot write " + path + ": scale " + std::to_string(scale) +
                                      "; expected an integer >= 1");
  }
  const int64_t t = frames.size(0), c = frames.size(1);
  const int64_t h = frames.size(2) * scale, w = frames.size(3) * scale;
  if (h > 65535 || w > 65535) {  // the screen descriptor's sizes are 16-bit
    return absl::InvalidArgumentError("cannot write " + path + ": " + std::to_string(w) + "x" + std::to_string(h) +
                                      " pixels after scaling by " + std::to_string(scale) +
                                      "; a GIF is at most 65535 on a side");
  }

  // The same 8-bit rounding as WriteGrid's PNGs.
  torch::Tensor pixels =
      ((frames.detach().to(torch::kCPU, torch::kFloat).clamp(-1, 1) + 1) * 127.5).round().to(torch::kUInt8);
  if (scale > 1) pixels = pixels.repeat_interleave(scale, 2).repeat_interleave(scale, 3);
  pixels = pixels.permute({0, 2, 3, 1}).contiguous();  // [T, H*scale, W*scale, C]
  std::vector<GifPixelType> indices = PaletteIndices(pixels);

  const std::array<GifColorType, kPaletteSize> colors = Palette(c == 3);
  const std::unique_ptr<ColorMapObject, void (*)(ColorMapObject*)> palette(
      GifMakeMapObject(kPaletteSize, colors.data()), GifFreeMapObject);
  if (palette == nullptr) return absl::InternalError("cannot write " + path + ": no memory for the GIF palette");

  std::string bytes;
  int error = 0;
  GifFileType* gif = EGifOpen(&bytes, AppendBytes, &error);
  if (gif == nullptr) return absl::InternalError("cannot write " + path + ": " + GifError(error));
  // Closes the encoder (which frees it) and reports what failed.
  const auto fail = [&](const std::string& step) {
    const std::string why = GifError(gif->Error);
    int ignored = 0;
    EGifCloseFile(gif, &ignored);
    return absl::InternalError("cannot write " + path + ": " + step + ": " + why);
  };
  // The sequential API writes "GIF87a" unless told: the loop and delay extensions are GIF89a's.
  EGifSetGifVersion(gif, true);
  const int width = static_cast<int>(w), height = static_cast<int>(h);
  if (EGifPutScreenDesc(gif, width, height, 8, 0, palette.get()) == GIF_ERROR) return fail("screen descriptor");

  // NETSCAPE2.0 application extension, sub-block {1, loop count (little-endian)}: 0 loops forever.
  const GifByteType loop[3] = {1, 0, 0};
  if (EGifPutExtensionLeader(gif, APPLICATION_EXT_FUNC_CODE) == GIF_ERROR ||
      EGifPutExtensionBlock(gif, 11, "NETSCAPE2.0") == GIF_ERROR || EGifPutExtensionBlock(gif, 3, loop) == GIF_ERROR ||
      EGifPutExtensionTrailer(gif) == GIF_ERROR) {
    return fail("loop extension");
  }

  GraphicsControlBlock timing{};
  timing.DisposalMode = DISPOSE_DO_NOT;  // every frame covers the whole screen
  timing.UserInputFlag = false;
  timing.DelayTime = delay_cs;
  timing.TransparentColor = NO_TRANSPARENT_COLOR;
  GifByteType control[4];
  const int control_size = static_cast<int>(EGifGCBToExtension(&timing, control));
  for (int64_t f = 0; f < t; ++f) {
    const std::string frame = "frame " + std::to_string(f);
    if (EGifPutExtension(gif, GRAPHICS_EXT_FUNC_CODE, control_size, control) == GIF_ERROR) {
      return fail(frame + " delay");
    }
    if (EGifPutImageDesc(gif, 0, 0, width, height, false, nullptr) == GIF_ERROR) return fail(frame + " descriptor");
    for (int64_t y = 0; y < h; ++y) {
      if (EGifPutLine(gif, indices.data() + (f * h + y) * w, width) == GIF_ERROR) return fail(frame + " pixels");
    }
  }
  if (EGifCloseFile(gif, &error) == GIF_ERROR) {
    return absl::InternalError("cannot write " + path + ": " + GifError(error));
  }
  return WriteFileAtomic(path, bytes);
}

absl::Status WriteStrip(const std::string& path, const torch::Tensor& clips, int scale) {
  if (clips.dim() != 5 || clips.size(0) < 1 || clips.size(1) < 1 || (clips.size(2) != 1 && clips.size(2) != 3) ||
      clips.size(3) < 1 || clips.size(4) < 1) {
    return absl::InvalidArgumentError("cannot write " + path + ": clips of shape " + c10::str(clips.sizes()) +
                                      "; expected [N, T, C, H, W] with N, T, H, W >= 1 and C = 1 (gray) or 3 (RGB)");
  }
  if (scale < 1) {
    return absl::InvalidArgumentError("cannot write " + path + ": scale " + std::to_string(scale) +
                                      "; expected an integer >= 1");
  }
  const int64_t n = clips.size(0), t = clips.size(1);
  // [N*T, C, H, W]: clip-major, so each grid row of T columns is one clip.
  torch::Tensor frames = clips.detach().to(torch::kCPU).reshape({n * t, clips.size(2), clips.size(3), clips.size(4)});
  if (scale > 1) frames = frames.repeat_interleave(scale, 2).repeat_interleave(scale, 3);  // [N*T, C, H*s, W*s]
  return WriteGrid(path, frames, static_cast<int>(t));
}

torch::Tensor TileClips(const torch::Tensor& clips, int columns) {
  const int64_t N = clips.size(0), T = clips.size(1), C = clips.size(2), H = clips.size(3), W = clips.size(4);
  const int64_t cols = std::max<int64_t>(1, std::min<int64_t>(columns, N)), rows = (N + cols - 1) / cols;
  constexpr int64_t kGap = 2;
  torch::Tensor out = torch::full({T, C, rows * (H + kGap) - kGap, cols * (W + kGap) - kGap}, -1.0f);
  for (int64_t i = 0; i < N; ++i) {
    const int64_t r = i / cols, c = i % cols;
    out.narrow(2, r * (H + kGap), H).narrow(3, c * (W + kGap), W).copy_(clips[i].to(torch::kCPU, torch::kFloat32));
  }
  return out;
}

}  // namespace loom::eval
