// Fashion-MNIST IDX -> shards (see fashion_mnist.h).
#include "data/ingest/fashion_mnist.h"

#include <zlib.h>

#include <algorithm>
#include <filesystem>

#include "core/log.h"
#include "data/shard_writer.h"

namespace loom::data {
namespace {

// Reads a gzip-compressed IDX file: big-endian magic, dims, then uint8 data.
absl::Status ReadIdx(const std::string& path, int expected_dims, std::vector<uint32_t>* dims,
                     std::vector<uint8_t>* data) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) {
    return absl::NotFoundError(path + ": cannot open (install Debian's dataset-fashion-mnist, "
                                      "which launch/setup.sh does)");
  }
  const auto read_u32 = [&](uint32_t* v) {
    unsigned char b[4];
    if (gzread(f, b, 4) != 4) return false;
    *v = (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
    return true;
  };
  uint32_t magic = 0;
  if (!read_u32(&magic) || magic != static_cast<uint32_t>(0x800 + expected_dims)) {
    gzclose(f);
    return absl::InvalidArgumentError(path + ": not an IDX file of " +
                                      std::to_string(expected_dims) + " dimensions");
  }
  dims->assign(expected_dims, 0);
  size_t total = 1;
  for (int i = 0; i < expected_dims; ++i) {
    if (!read_u32(&(*dims)[i])) {
      gzclose(f);
      return absl::DataLossError(path + ": truncated header");
    }
    total *= (*dims)[i];
  }
  data->resize(total);
  size_t done = 0;
  while (done < total) {
    const int n = gzread(f, data->data() + done, static_cast<unsigned>(std::min<size_t>(total - done, 1 << 30)));
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  gzclose(f);
  if (done != total) return absl::DataLossError(path + ": truncated data");
  return absl::OkStatus();
}

absl::Status IngestSplit(const std::string& source_dir, const std::string& out,
                         const std::string& split, int64_t limit) {
  ASSIGN_OR_RETURN(FashionMnist data, LoadFashionMnist(split, source_dir));
  SampleSpec spec;
  spec.height = data.height;
  spec.width = data.width;
  spec.channels = 1;
  ShardWriterOptions options;
  options.dir = out + "/" + split;
  options.prefix = split;
  options.samples_per_shard = 4096;
  options.labels = true;
  options.label_names = FashionClassNames();
  options.source = "fashion-mnist " + split;
  ASSIGN_OR_RETURN(auto writer, ShardWriter::Create(spec, options));
  int64_t n = data.count;
  if (limit > 0) n = std::min(n, limit);
  for (int64_t i = 0; i < n; ++i) {
    const int label = data.labels[i];
    // The wording depends on the split and index only: re-running gives the same data.
    const uint64_t variant = static_cast<uint64_t>(i) * 0x9E3779B97F4A7C15ull + (split == "test");
    RETURN_IF_ERROR(writer->Add(data.image(i), FashionCaption(label, variant >> 32), label));
  }
  ASSIGN_OR_RETURN(Manifest m, writer->Finish());
  log::Info() << "wrote " << options.dir << ": " << m.total << " samples in " << m.shards.size()
              << " shard(s)";
  return absl::OkStatus();
}

}  // namespace

const std::vector<std::string>& FashionClassNames() {
  static const std::vector<std::string> names = {"t-shirt", "trousers", "pullover", "dress",
                                                 "coat",    "sandal",   "shirt",    "sneaker",
                                                 "bag",     "ankle boot"};
  return names;
}

const std::string& FashionItemPhrase(int label) {
  static const std::vector<std::string> phrases = {
      "a t-shirt", "a pair of trousers", "a pullover", "a dress", "a coat",
      "a sandal",  "a shirt",            "a sneaker",  "a bag",   "an ankle boot"};
  return phrases[label];
}

std::string FashionCaption(int label, uint64_t variant) {
  const std::string bare = FashionClassNames()[label];
  const std::string& a = FashionItemPhrase(label);
  switch (variant % 6) {
    case 0: return "a photo of " + a;
    case 1: return bare;
    case 2: return "a black and white picture of " + a;
    case 3: return a;
    case 4: return "a grayscale photo of " + a;
    default: return "a product photo of " + a;
  }
}

absl::StatusOr<FashionMnist> LoadFashionMnist(const std::string& split,
                                              const std::string& source_dir) {
  if (split != "train" && split != "test") {
    return absl::InvalidArgumentError("Fashion-MNIST has splits train and test, not '" + split +
                                      "'");
  }
  // The files are named train-* and t10k-* (the test split).
  const std::string stem = source_dir + (split == "train" ? "/train" : "/t10k");
  const std::string images_path = stem + "-images-idx3-ubyte.gz";
  const std::string labels_path = stem + "-labels-idx1-ubyte.gz";
  std::vector<uint32_t> image_dims, label_dims;
  FashionMnist data;
  RETURN_IF_ERROR(ReadIdx(images_path, 3, &image_dims, &data.images));
  RETURN_IF_ERROR(ReadIdx(labels_path, 1, &label_dims, &data.labels));
  if (image_dims[0] != label_dims[0]) {
    return absl::InvalidArgumentError(images_path + ": image and label counts differ");
  }
  data.count = image_dims[0];
  data.height = static_cast<int>(image_dims[1]);
  data.width = static_cast<int>(image_dims[2]);
  for (int64_t i = 0; i < data.count; ++i) {
    if (data.labels[i] > 9) {
      return absl::InvalidArgumentError(labels_path + ": label " +
                                        std::to_string(data.labels[i]) + " at " +
                                        std::to_string(i) + " is not a class 0..9");
    }
  }
  return data;
}

absl::Status IngestFashionMnist(const std::string& source_dir, const std::string& out, int64_t limit) {
  RETURN_IF_ERROR(IngestSplit(source_dir, out, "train", limit));
  return IngestSplit(source_dir, out, "test", limit);
}

}  // namespace loom::data
