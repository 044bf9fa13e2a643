// Prompt sets: templates rendered for every class; a phrase file read, checked against the
// judge's classes (each mistake refused with a one-line message naming the file and the
// fix) and grouped by phrase index. Prompt evaluation with a hand-made judge that tells
// classes apart by image brightness and a fake sampler that draws each prompt's class at
// that brightness (one phrase "misunderstood"): every phrase is sampled per_class times
// and its accuracy, its class's and its group's are reported, in the result and the JSON.
#include "eval/prompt_eval.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>

#include "core/safetensors.h"
#include "tests/support/subprocess.h"

namespace loom::eval {
namespace {

const std::vector<std::string> kClasses = {"trousers", "bag", "ankle boot"};
const std::vector<double> kBrightness = {0.2, 0.5, 0.8};  // what the judge sees as each class

bool Contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

class PromptEvalTest : public ::testing::Test {
 protected:
  std::string WritePhrases(const std::string& text, const std::string& name = "phrases.json") {
    const std::string path = tmp_.str() + "/" + name;
    std::ofstream(path) << text;
    return path;
  }

  // A judge of 8x8 one-channel images whose network passes the mean brightness v of an
  // image to feature 0 (feature 1 is 1) and scores class c with 2 t_c v - t_c^2, i.e.
  // picks the class whose brightness t_c is nearest.
  std::string WriteBrightnessJudge() {
    const std::string dir = tmp_.str() + "/judge";
    std::filesystem::create_directories(dir);
    const int64_t width = 4, C = static_cast<int64_t>(kClasses.size());
    JudgeNet net(1, C, width);
    std::vector<NamedTensor> weights;
    {
      torch::NoGradGuard no_grad;
      for (auto& p : net->body->parameters()) {
        if (p.dim() == 4) {  // conv: channel 0 passes through, nothing else
          p.zero_();
          p[0][0][1][1] = 1.0;
        }
      }
      net->embed->weight.zero_();
      net->embed->weight[0][0] = 1.0;
      net->embed->bias.zero_();
      net->embed->bias[1] = 1.0;
      net->head->weight.zero_();
      net->head->bias.zero_();
      for (int64_t c = 0; c < C; ++c) {
        net->head->weight[c][0] = 2 * kBrightness[c];
        net->head->weight[c][1] = -kBrightness[c] * kBrightness[c];
      }
    }
    for (const auto& item : net->named_parameters()) weights.push_back({item.key(), item.value()});
    for (const auto& item : net->named_buffers()) weights.push_back({item.key(), item.value()});
    EXPECT_TRUE(WriteSafetensors(dir + "/judge.safetensors", weights, {{"format", "loom-judge"}}).ok());
    torch::manual_seed(0);
    const int64_t per_class = 8;
    EXPECT_TRUE(WriteSafetensors(dir + "/reference.safetensors",
                                 {{"test_mean", torch::zeros({JudgeNetImpl::kFeatures}, torch::kFloat64)},
                                  {"test_cov", torch::eye(JudgeNetImpl::kFeatures, torch::kFloat64)},
                                  {"test_count", torch::tensor({int64_t{100}}, torch::kLong)},
                                  {"train_features", torch::randn({C * per_class, JudgeNetImpl::kFeatures})},
                                  {"train_labels", torch::arange(C * per_class, torch::kLong).remainder(C)}},
                                 {{"format", "loom-judge"}})
                    .ok());
    const nlohmann::json info = {{"format", "loom-judge"}, {"version", 1},         {"image_size", 8},
                                 {"channels", 1},          {"width", width},       {"fit", "pad"},
                                 {"classes", kClasses},    {"test_accuracy", 1.0}};
    std::ofstream(dir + "/judge.json") << info.dump();
    return dir;
  }

  testing::TempDir tmp_;
};

TEST_F(PromptEvalTest, TemplatesAreRenderedForEveryClass) {
  const absl::StatusOr<PromptSet> set = BuildPromptSet(PromptEvalOptions{}, kClasses);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_FALSE(set->from_phrases);
  ASSERT_EQ(set->groups.size(), DefaultTemplates().size());
  EXPECT_EQ(set->groups[0].name, "a photo of {a_class}");
  EXPECT_EQ(set->groups[0].prompts, (std::vector<std::string>{"a photo of a trousers", "a photo of a bag",
                                                               "a photo of an ankle boot"}));
  PromptEvalOptions o;
  o.templates = {"{class} on a shelf"};
  const absl::StatusOr<PromptSet> one = BuildPromptSet(o, kClasses);
  ASSERT_TRUE(one.ok()) << one.status();
  ASSERT_EQ(one->groups.size(), 1u);
  EXPECT_EQ(one->groups[0].prompts[2], "ankle boot on a shelf");
}

TEST_F(PromptEvalTest, APhraseFileGivesOneGroupPerPhraseIndex) {
  PromptEvalOptions o;
  o.phrases = WritePhrases(
      R"({"bag": ["a handbag", "a purse"], "trousers": ["a pair of jeans", "slacks", "chinos"],
          "ankle boot": ["a chelsea boot", "a winter bootie"]})");
  const absl::StatusOr<PromptSet> set = BuildPromptSet(o, kClasses);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_TRUE(set->from_phrases);
  EXPECT_EQ(set->classes, kClasses);
  ASSERT_EQ(set->groups.size(), 3u);
  EXPECT_EQ(set->groups[0].name, "phrase 1");
  // Classes in the judge's order, not the file's; phrases verbatim, in the file's order.
  EXPECT_EQ(set->groups[0].prompts, (std::vector<std::string>{"a pair of jeans", "a handbag", "a chelsea boot"}));
  EXPECT_EQ(set->groups[1].prompts, (std::vector<std::string>{"slacks", "a purse", "a winter bootie"}));
  EXPECT_EQ(set->groups[2].name, "phrase 3");
  EXPECT_EQ(set->groups[2].prompts, (std::vector<std::string>{"chinos", "", ""}));  // only trousers has a third
}

TEST_F(PromptEvalTest, PhraseFileMistakesAreRefusedNamingTheFileAndTheFix) {
  struct Case {
    std::string text, want;
  };
  const std::vector<Case> cases = {
      // A class of the judge missing: named, with what to add.
      {R"({"trousers": ["a pair of jeans"], "bag": ["a handbag"]})",
       R"(has no phrases for class "ankle boot"; every class the judge knows needs a list: add "ankle boot": [)"},
      {R"({"trousers": ["slacks"]})", R"(no phrases for classes "bag", "ankle boot")"},
      // A name the judge does not know: named, with the judge's classes.
      {R"({"trousers": ["slacks"], "bag": ["a purse"], "ankle boot": ["a boot"], "jeans": ["denim"]})",
       R"("jeans" is not a class of the judge; its classes are "trousers", "bag", "ankle boot")"},
      {R"({"trousers": [], "bag": ["a purse"], "ankle boot": ["a boot"]})",
       R"(class "trousers" has an empty list; give it at least one phrase)"},
      {R"({"trousers": "slacks", "bag": ["a purse"], "ankle boot": ["a boot"]})",
       R"(class "trousers" maps to a JSON string, not a list of phrases)"},
      {R"({"trousers": ["slacks", 3], "bag": ["a purse"], "ankle boot": ["a boot"]})",
       R"(class "trousers": phrase 2 (3) is not a non-empty string)"},
      {R"({"trousers": ["slacks"], "bag": [""], "ankle boot": ["a boot"]})",
       R"(class "bag": phrase 1 ("") is not a non-empty string)"},
      {R"({"trousers": ["slacks", "slacks"], "bag": ["a purse"], "ankle boot": ["a boot"]})",
       R"(class "trousers" lists "slacks" twice)"},
      {R"(["trousers", "bag"])", "holds a JSON array, not an object; a phrase file is a JSON object mapping"},
      {R"({"trousers": ["slacks"],)", "is not JSON (parse error"},
      {"", "is not JSON"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    PromptEvalOptions o;
    o.phrases = WritePhrases(cases[i].text, "bad" + std::to_string(i) + ".json");
    const absl::StatusOr<PromptSet> set = BuildPromptSet(o, kClasses);
    ASSERT_FALSE(set.ok()) << cases[i].text;
    EXPECT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument) << set.status();
    const std::string message(set.status().message());
    EXPECT_TRUE(Contains(message, "phrase file " + o.phrases)) << message;
    EXPECT_TRUE(Contains(message, cases[i].want)) << "case " << i << ": " << message;
    EXPECT_FALSE(Contains(message, "\n")) << message;
  }
  PromptEvalOptions absent;
  absent.phrases = tmp_.str() + "/none.json";
  const absl::StatusOr<PromptSet> none = BuildPromptSet(absent, kClasses);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(Contains(std::string(none.status().message()), absent.phrases + " does not exist")) << none.status();
}

TEST_F(PromptEvalTest, PhrasesAndTemplatesExcludeEachOther) {
  PromptEvalOptions o;
  o.phrases = WritePhrases(R"({"trousers": ["slacks"], "bag": ["a purse"], "ankle boot": ["a boot"]})");
  ASSERT_TRUE(BuildPromptSet(o, kClasses).ok());
  o.templates = {"a photo of {a_class}"};
  const absl::StatusOr<PromptSet> set = BuildPromptSet(o, kClasses);
  ASSERT_FALSE(set.ok());
  EXPECT_TRUE(Contains(std::string(set.status().message()), "pass --phrases or --template, not both")) << set.status();
}

TEST_F(PromptEvalTest, PhrasesAreSampledAndJudgedOneByOne) {
  absl::StatusOr<Judge> judge = Judge::Load(WriteBrightnessJudge());
  ASSERT_TRUE(judge.ok()) << judge.status();
  PromptEvalOptions o;
  o.per_class = 5;
  o.batch = 4;  // chunks straddle phrases
  o.phrases = WritePhrases(
      R"({"trousers": ["a pair of jeans", "slacks", "chinos"], "bag": ["a handbag", "a purse"],
          "ankle boot": ["a chelsea boot", "a winter bootie"]})");
  // The model understands every phrase but "slacks", which it draws as a bag.
  const std::map<std::string, int> drawn = {{"a pair of jeans", 0}, {"slacks", 1},         {"chinos", 0},
                                            {"a handbag", 1},       {"a purse", 1},        {"a chelsea boot", 2},
                                            {"a winter bootie", 2}};
  std::map<std::string, int> asked;
  const PromptSampler sample = [&](const std::vector<std::string>& prompts,
                                   uint64_t) -> absl::StatusOr<torch::Tensor> {
    torch::Tensor images = torch::empty({static_cast<int64_t>(prompts.size()), 1, 8, 8});
    for (size_t i = 0; i < prompts.size(); ++i) {
      ++asked[prompts[i]];
      const auto it = drawn.find(prompts[i]);
      if (it == drawn.end()) return absl::InternalError("unexpected prompt '" + prompts[i] + "'");
      images[static_cast<int64_t>(i)].fill_(kBrightness[it->second]);
    }
    return images;
  };
  const absl::StatusOr<PromptEvalResult> r = EvaluatePrompts(sample, *judge, o);
  ASSERT_TRUE(r.ok()) << r.status();

  // Every phrase per_class times, nothing else.
  ASSERT_EQ(asked.size(), drawn.size());
  for (const auto& [phrase, count] : asked) EXPECT_EQ(count, 5) << phrase;
  EXPECT_EQ(r->samples, 7 * 5);

  // Per phrase: 1 when drawn as its class, 0 for "slacks"; class by class, file order.
  ASSERT_EQ(r->phrases.size(), 7u);
  const std::vector<std::pair<std::string, std::string>> order = {
      {"trousers", "a pair of jeans"}, {"trousers", "slacks"},          {"trousers", "chinos"},
      {"bag", "a handbag"},            {"bag", "a purse"},              {"ankle boot", "a chelsea boot"},
      {"ankle boot", "a winter bootie"}};
  for (size_t i = 0; i < order.size(); ++i) {
    EXPECT_EQ(r->phrases[i].cls, order[i].first);
    EXPECT_EQ(r->phrases[i].phrase, order[i].second);
    EXPECT_DOUBLE_EQ(r->phrases[i].accuracy, order[i].second == "slacks" ? 0.0 : 1.0) << order[i].second;
  }
  // Per class over all its phrases; overall over every sample.
  ASSERT_EQ(r->per_class.size(), 3u);
  EXPECT_DOUBLE_EQ(r->per_class[0], 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(r->per_class[1], 1.0);
  EXPECT_DOUBLE_EQ(r->per_class[2], 1.0);
  EXPECT_DOUBLE_EQ(r->prompt_accuracy, 6.0 / 7.0);
  // Per group: "phrase 2" holds "slacks"; "phrase 3" only trousers (the others NaN).
  ASSERT_EQ(r->templates.size(), 3u);
  EXPECT_EQ(r->templates[1].templ, "phrase 2");
  EXPECT_DOUBLE_EQ(r->templates[0].accuracy, 1.0);
  EXPECT_DOUBLE_EQ(r->templates[1].accuracy, 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(r->templates[1].per_class[0], 0.0);
  EXPECT_DOUBLE_EQ(r->templates[2].accuracy, 1.0);
  EXPECT_DOUBLE_EQ(r->templates[2].per_class[0], 1.0);
  EXPECT_TRUE(std::isnan(r->templates[2].per_class[1]));

  // The JSON: the usual keys, and the phrases.
  const nlohmann::json j = nlohmann::json::parse(r->ToJson().dump());
  for (const char* key :
       {"prompt_accuracy", "frechet", "frechet_floor", "samples", "per_class_accuracy", "templates"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_DOUBLE_EQ(j["per_class_accuracy"]["trousers"].get<double>(), 2.0 / 3.0);
  EXPECT_EQ(j["templates"][2]["template"], "phrase 3");
  EXPECT_TRUE(j["templates"][2]["per_class"][1].is_null()) << j["templates"];
  ASSERT_EQ(j["phrases"].size(), 7u);
  EXPECT_EQ(j["phrases"][1], (nlohmann::json{{"class", "trousers"}, {"phrase", "slacks"}, {"accuracy", 0.0}}));
  EXPECT_EQ(j["phrases"][6]["phrase"], "a winter bootie");
  EXPECT_TRUE(std::isfinite(j["frechet"].get<double>()));
}

TEST_F(PromptEvalTest, TemplatesReportNoPhrases) {
  absl::StatusOr<Judge> judge = Judge::Load(WriteBrightnessJudge());
  ASSERT_TRUE(judge.ok()) << judge.status();
  PromptEvalOptions o;
  o.per_class = 2;
  o.templates = {"a photo of {a_class}", "{class}"};
  std::vector<std::string> asked;
  const PromptSampler sample = [&](const std::vector<std::string>& prompts,
                                   uint64_t) -> absl::StatusOr<torch::Tensor> {
    torch::Tensor images = torch::empty({static_cast<int64_t>(prompts.size()), 1, 8, 8});
    for (size_t i = 0; i < prompts.size(); ++i) {
      asked.push_back(prompts[i]);
      // Draws the class the prompt names.
      int c = 0;
      for (int k = 0; k < 3; ++k) {
        if (Contains(prompts[i], kClasses[k])) c = k;
      }
      images[static_cast<int64_t>(i)].fill_(kBrightness[c]);
    }
    return images;
  };
  const absl::StatusOr<PromptEvalResult> r = EvaluatePrompts(sample, *judge, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->samples, 2 * 3 * 2);
  EXPECT_EQ(asked.size(), 12u);
  EXPECT_EQ(asked[0], "a photo of a trousers");
  EXPECT_EQ(asked[11], "ankle boot");
  EXPECT_DOUBLE_EQ(r->prompt_accuracy, 1.0);
  EXPECT_TRUE(r->phrases.empty());
  EXPECT_FALSE(r->ToJson().contains("phrases"));
}

}  // namespace
}  // namespace loom::eval
