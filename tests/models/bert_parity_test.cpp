// The imported pretrained text encoder against Hugging Face's own code: loom imports the
// all-MiniLM-L6-v2 checkpoint that launch/setup.sh installs into the venv, tokenizes a
// few hundred captions (punctuation, digits, accents, scripts, emoji, unknown and
// over-long words, control characters, captions longer than the window) and encodes
// them; bench/reference/bert_parity.py runs transformers' tokenizer and BertModel on
// the same captions: every id equal, every real token's hidden state within 1e-5
// (relative L2).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/fs.h"                   // WriteFileAtomic
#include "core/safetensors.h"          // WriteSafetensors
#include "data/manifest.h"             // ReadManifest
#include "data/shard_reader.h"         // ShardReader
#include "data/shard_writer.h"         // ShardWriter
#include "pipeline/encode.h"           // EncodeDataset
#include "pipeline/import.h"           // ImportTextEncoder
#include "pipeline/model.h"            // LoadExport
#include "stages/bert_stage.h"         // BertStage
#include "tests/support/pretrained.h"   // MiniLmDir
#include "tests/support/subprocess.h"  // Run, TempDir, LastLine

namespace loom::stages {
namespace {

const std::string kPython = LOOM_PYTHON;
const std::string kParity = std::string(LOOM_SOURCE_DIR) + "/bench/reference/bert_parity.py";
constexpr int kMaxTokens = 40;
using testing::kNoMiniLm;

std::string MiniLmDir() { return testing::MiniLmDir(kPython); }

// Captions of every kind a user's data holds, and the odd ones a tokenizer trips on.
std::vector<std::string> Captions() {
  const std::vector<std::string> things = {
      "T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot",
      "Café au lait jacket", "naïve résumé", "Ångström-sized Straße", "İstanbul scarf", "ΣΟΦΙΑ ΣΑΣ",
      "привет, мир", "日本語のテキスト", "连衣裙和外套", "한국어 치마", "مرحبا بالعالم", "नमस्ते दुनिया", "สวัสดีครับ",
      "👗👠 party", "emoji 😀 dress", "zxqvbnmplk", "supercalifragilisticexpialidocious", std::string(120, 'w'),
      "ﬁne ＦＵＬＬ-width ＡＢＣ", "e\xCC\x81l\xC3\xA9gant", "zero\xE2\x80\x8Dwidth\xE2\x80\x8Bjoin", "non\xC2\xA0" "breaking",
      "tab\tand\nnewline\r\nbag", "control\x01\x1F" "chars\x7F", "$20 (50% off!)", "size 9\xC2\xBD, 3.5cm, 1,000",
      "e-mail: shop@example.com #1", "\"quoted\" 'single' `back`", "what's this?!... <b>bold</b> ~~~",
      "UPPER lower MiXeD", "x" + std::string(3, ' ') + "  spaced   out  ", "", "   ", "[CLS] [SEP] [PAD] literal"};
  const std::vector<std::string> frames = {"{}", "a photo of a {}", "A drawing of a {}.", "an illustration: {}!",
                                           "{}, on a white background, centred and well lit; product shot #7",
                                           "Item 0042 -- {} (new)", "\u00bfD\u00f3nde est\u00e1 mi {}?"};
  std::vector<std::string> out;
  for (const std::string& f : frames) {
    for (const std::string& t : things) {
      const size_t at = f.find("{}");
      out.push_back(f.substr(0, at) + t + f.substr(at + 2));
    }
  }
  // Longer than the window: cut to kMaxTokens - 2 pieces before [SEP].
  std::string long_caption;
  for (int i = 0; i < 30; ++i) long_caption += things[static_cast<size_t>(i)] + " ";
  out.push_back(long_caption);
  out.push_back(long_caption + long_caption);
  return out;
}

TEST(BertParityTest, TokensAndHiddenStatesMatchTransformers) {
  ASSERT_FALSE(kPython.empty()) << "LOOM_PYTHON is not set: launch/setup.sh configures it";
  const std::string model_dir = MiniLmDir();
  ASSERT_FALSE(model_dir.empty()) << kNoMiniLm;

  testing::TempDir dir;
  pipeline::TextEncoderImport o;
  o.from = model_dir;
  o.out = dir.str() + "/minilm";
  o.max_tokens = kMaxTokens;
  const auto report = pipeline::ImportTextEncoder(o);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->width, 384);
  EXPECT_EQ(report->vocab, 30522);
  auto model = pipeline::LoadExport(o.out);
  ASSERT_TRUE(model.ok()) << model.status();
  auto* bert = dynamic_cast<BertStage*>(model->stage.get());
  ASSERT_NE(bert, nullptr);

  const std::vector<std::string> captions = Captions();
  ASSERT_GE(captions.size(), 300u);
  auto [ids, mask] = bert->Tokenize(captions);
  const auto [features, feature_mask] = bert->EncodeText(captions);
  ASSERT_TRUE(feature_mask.equal(mask));
  ASSERT_EQ(features.sizes(), (std::vector<int64_t>{static_cast<int64_t>(captions.size()), kMaxTokens, 384}));
  // The window is full for the long captions: cut, and closed by [SEP].
  EXPECT_TRUE(mask[static_cast<int64_t>(captions.size()) - 1].all().item<bool>());

  ASSERT_TRUE(WriteFileAtomic(dir.str() + "/captions.json", nlohmann::json(captions).dump()).ok());
  ASSERT_TRUE(WriteSafetensors(dir.str() + "/loom.safetensors",
                               {{"ids", ids}, {"mask", mask.to(torch::kLong)}, {"hidden", features}})
                  .ok());
  const testing::Result out =
      testing::Run(kPython + " " + kParity + " --model " + model_dir + " --captions " + dir.str() +
                   "/captions.json --loom " + dir.str() + "/loom.safetensors --max-tokens " +
                   std::to_string(kMaxTokens) + " --tolerance 1e-5");
  ASSERT_EQ(out.code, 0) << out.out << out.err;
  const nlohmann::json r = nlohmann::json::parse(testing::LastLine(out.out), nullptr, false);
  ASSERT_FALSE(r.is_discarded()) << out.out << out.err;
  std::cout << "bert parity: " << r.dump() << "\n";
  EXPECT_EQ(r["captions"].get<size_t>(), captions.size());
  EXPECT_EQ(r["ids_equal"].get<size_t>(), captions.size()) << out.out;
  EXPECT_GT(r["unknown_pieces"].get<int64_t>(), 0) << "the captions should exercise [UNK]";
  EXPECT_LE(r["max_token_rel_err"].get<double>(), 1e-5) << out.out;
  EXPECT_GT(r["tokens_checked"].get<int64_t>(), 2000);
}

// `loom data encode --with` a text encoder: each sample's caption as per-token features
// and mask beside the caches the dataset already carries, each cache with its producer.
TEST(BertCacheTest, EncodesCaptionsBesideTheCachesADatasetCarries) {
  ASSERT_FALSE(kPython.empty());
  testing::TempDir dir;
  pipeline::TextEncoderImport o;
  o.from = MiniLmDir();
  ASSERT_FALSE(o.from.empty()) << kNoMiniLm;
  o.out = dir.str() + "/minilm";
  o.max_tokens = 12;
  const auto imported = pipeline::ImportTextEncoder(o);
  ASSERT_TRUE(imported.ok()) << imported.status();

  // A source that already carries a cache "z" [2] made by another model.
  data::SampleSpec spec;
  spec.height = spec.width = 4;
  data::ShardWriterOptions wo;
  wo.dir = dir.str() + "/source";
  wo.samples_per_shard = 5;
  wo.caches = {{"z", {2}, {{"kind", "vae"}, {"export", "exports/vae"}, {"hash", "abc"}}}};
  auto writer = data::ShardWriter::Create(spec, wo);
  ASSERT_TRUE(writer.ok()) << writer.status();
  const std::vector<uint8_t> px(16, 7);
  const std::vector<std::string> captions = {"a photo of a bag", "Ankle boot!", "a drawing of a coat", "",
                                             "an illustration of a very long caption that will not fit", "shirt",
                                             "sandal", "T-shirt/top"};
  for (size_t i = 0; i < captions.size(); ++i) {
    const float z[] = {static_cast<float>(i), -1.0f};
    ASSERT_TRUE((*writer)->Add(px.data(), captions[i], -1, z).ok());
  }
  ASSERT_TRUE((*writer)->Finish().ok());

  pipeline::EncodeOptions e;
  e.data = wo.dir;
  e.with = o.out;
  e.out = dir.str() + "/encoded";
  e.batch = 3;
  const auto report = pipeline::EncodeDataset(e);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->samples, 8);
  const auto m = data::ReadManifest(e.out);
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->caches.size(), 3u);
  EXPECT_EQ(m->caches[0].name, "z");
  EXPECT_EQ(m->caches[0].producer.at("hash"), "abc");
  EXPECT_EQ(m->caches[1].name, "text");
  EXPECT_EQ(m->caches[1].shape, (std::vector<int64_t>{12, 384}));
  EXPECT_EQ(m->caches[2].name, "text_mask");
  EXPECT_EQ(m->caches[2].producer.at("hash"), imported->hash);
  EXPECT_EQ(m->caches[2].producer.at("kind"), "bert");

  auto model = pipeline::LoadExport(o.out);
  ASSERT_TRUE(model.ok()) << model.status();
  const auto [features, mask] = model->stage->AsTextEncoding()->EncodeText(captions);
  int64_t seen = 0;
  for (const data::ShardEntry& shard : m->shards) {
    auto reader = data::ShardReader::Open(e.out + "/" + shard.file, &m->spec, m->caches);
    ASSERT_TRUE(reader.ok()) << reader.status();
    for (int64_t k = 0; k < (*reader)->size(); ++k, ++seen) {
      data::Sample s;
      ASSERT_TRUE((*reader)->Read(k, &s).ok());
      EXPECT_EQ(s.caption, captions[static_cast<size_t>(seen)]);
      EXPECT_EQ(s.caches[0], static_cast<float>(seen));  // carried along
      const torch::Tensor text = torch::from_blob(s.caches.data() + 2, {12, 384}).clone();
      const torch::Tensor text_mask = torch::from_blob(s.caches.data() + 2 + 12 * 384, {12}).clone();
      EXPECT_TRUE(torch::allclose(text, features[seen], 1e-5, 1e-5)) << seen;
      EXPECT_TRUE(text_mask.equal(mask[seen].to(torch::kFloat32))) << seen;
    }
  }
  EXPECT_EQ(seen, 8);

  // No flips for captions; no second copy of a cache.
  e.flip = true;
  e.out = dir.str() + "/flipped";
  EXPECT_NE(std::string(pipeline::EncodeDataset(e).status().message()).find("drop --flip"), std::string::npos);
  e.flip = false;
  e.data = dir.str() + "/encoded";
  e.out = dir.str() + "/twice";
  EXPECT_NE(std::string(pipeline::EncodeDataset(e).status().message()).find("already carries 'text'"),
            std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir.str() + "/flipped"));
  EXPECT_FALSE(std::filesystem::exists(dir.str() + "/twice"));
}

// Checkpoints that are not what `loom import text-encoder` reads: one clear error each,
// and no export written.
TEST(BertImportTest, RefusesBadCheckpoints) {
  ASSERT_FALSE(kPython.empty());
  const std::filesystem::path model_dir = MiniLmDir();
  ASSERT_FALSE(model_dir.empty()) << kNoMiniLm;
  testing::TempDir dir;
  namespace fs = std::filesystem;
  // A copy to damage, file by file.
  auto copy = [&](const std::string& name) {
    const fs::path d = dir.path() / name;
    fs::create_directories(d);
    for (const char* f : {"config.json", "vocab.txt", "tokenizer_config.json"}) fs::copy_file(model_dir / f, d / f);
    fs::create_symlink(model_dir / "model.safetensors", d / "model.safetensors");
    return d;
  };
  auto import = [&](const fs::path& from, int64_t max_tokens = 32) {
    pipeline::TextEncoderImport o;
    o.from = from.string();
    o.out = (dir.path() / ("out-" + from.filename().string())).string();
    o.max_tokens = max_tokens;
    const auto r = pipeline::ImportTextEncoder(o);
    EXPECT_FALSE(fs::exists(o.out)) << o.out;
    return r.status();
  };
  const fs::path no_vocab = copy("no-vocab");
  fs::remove(no_vocab / "vocab.txt");
  EXPECT_NE(std::string(import(no_vocab).message()).find("has no vocab.txt"), std::string::npos);

  const fs::path no_weights = copy("no-weights");
  fs::remove(no_weights / "model.safetensors");
  EXPECT_NE(std::string(import(no_weights).message()).find("has no model.safetensors"), std::string::npos);

  const fs::path short_vocab = copy("short-vocab");
  ASSERT_TRUE(WriteFileAtomic((short_vocab / "vocab.txt").string(), "[PAD]\n[UNK]\n[CLS]\n[SEP]\na\nb\n").ok());
  EXPECT_NE(std::string(import(short_vocab).message()).find("vocab.txt holds 6 pieces"), std::string::npos);

  const fs::path other = copy("other-architecture");
  ASSERT_TRUE(WriteFileAtomic((other / "config.json").string(), R"({"model_type": "gpt2", "n_embd": 384})").ok());
  EXPECT_NE(std::string(import(other).message()).find("model_type is 'gpt2'"), std::string::npos);

  // The config says 8 layers, the weights hold 6: the first missing tensor is named.
  const fs::path deeper = copy("deeper");
  std::ifstream config_file(model_dir / "config.json");
  nlohmann::json config = nlohmann::json::parse(config_file);
  config["num_hidden_layers"] = 8;
  ASSERT_TRUE(WriteFileAtomic((deeper / "config.json").string(), config.dump()).ok());
  EXPECT_NE(std::string(import(deeper).message()).find("'bert.encoder.layer.6."), std::string::npos);

  const fs::path wider = copy("wider");
  config["num_hidden_layers"] = 6;
  config["intermediate_size"] = 1024;
  ASSERT_TRUE(WriteFileAtomic((wider / "config.json").string(), config.dump()).ok());
  EXPECT_NE(std::string(import(wider).message()).find("has shape"), std::string::npos);

  EXPECT_NE(std::string(import(copy("too-long"), 4096).message()).find("--max-tokens 4096"), std::string::npos);
}

}  // namespace
}  // namespace loom::stages
