// Config loading: every error path names where (file:line:col or the override) and the
// key, overrides apply in order, and the resolved config round-trips through YAML.
#include <gtest/gtest.h>

#include <fstream>

#include "core/config/load.h"
#include "tests/support/subprocess.h"
#include "stages/dit_stage.h"
#include "stages/registry.h"
#include "stages/vae_stage.h"
#include "train/experiment.h"

namespace loom::config {
namespace {

using train::ExperimentOptions;

// A small schema of its own, so every codec and rule is exercised independently of
// the experiment tree.
struct Inner {
  int64_t count = 3;
  std::vector<std::string> tags;
  static void Describe(Fields<Inner>& f) {
    f.Add("count", &Inner::count, "how many").Rule(Positive());
    f.Add("tags", &Inner::tags, "labels");
  }
};

struct Outer {
  bool on = false;
  int small = 1;
  double rate = 0.5;
  std::string mode = "a";
  std::array<double, 2> pair{0.1, 0.2};
  Inner inner;
  static void Describe(Fields<Outer>& f) {
    f.Add("on", &Outer::on, "switch");
    f.Add("small", &Outer::small, "a small int").Rule(Between(0, 10));
    f.Add("rate", &Outer::rate, "a rate").Rule(InHalfOpen(0, 1));
    f.Add("mode", &Outer::mode, "a mode").Rule(OneOf({"a", "b"}));
    f.Add("pair", &Outer::pair, "two numbers").Rule(Each(AtLeast(0)));
    f.Add("inner", &Outer::inner, "nested section");
    f.Check([](const Outer& o) -> std::string {
      return o.small > o.inner.count ? "small must not exceed inner.count" : "";
    });
  }
};

std::string ErrorOf(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  auto r = LoadString<Outer>(yaml, "t.yaml", overrides);
  EXPECT_FALSE(r.ok()) << "expected an error for: " << yaml;
  return r.ok() ? "" : std::string(r.status().message());
}

TEST(Config, EmptyDocumentGivesDefaults) {
  auto r = LoadString<Outer>("", "t.yaml");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->small, 1);
  EXPECT_EQ(r->inner.count, 3);
  EXPECT_EQ(r->mode, "a");
}

TEST(Config, ValuesOfEveryTypeDecode) {
  auto r = LoadString<Outer>(
      "on: true\nsmall: 7\nrate: 2.5e-1\nmode: b\npair: [1, 2.5]\n"
      "inner: {count: 9, tags: [x, 'y z']}\n",
      "t.yaml");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->on);
  EXPECT_EQ(r->small, 7);
  EXPECT_DOUBLE_EQ(r->rate, 0.25);
  EXPECT_EQ(r->mode, "b");
  EXPECT_DOUBLE_EQ(r->pair[1], 2.5);
  EXPECT_EQ(r->inner.count, 9);
  EXPECT_EQ(r->inner.tags, (std::vector<std::string>{"x", "y z"}));
}

TEST(Config, UnknownKeyNamesLineAndSuggests) {
  const std::string e = ErrorOf("small: 2\ninner:\n  cuont: 4\n");
  EXPECT_EQ(e, "t.yaml:3:3: unknown key 'inner.cuont' (did you mean 'inner.count'?)");
}

TEST(Config, UnknownKeyWithoutNearNameListsValidKeys) {
  const std::string e = ErrorOf("inner: {zzzzzzzz: 1}\n");
  EXPECT_NE(e.find("unknown key 'inner.zzzzzzzz'; valid keys here: count, tags"), std::string::npos)
      << e;
}

TEST(Config, RightNameInWrongSectionIsSuggested) {
  const std::string e = ErrorOf("count: 4\n");
  EXPECT_NE(e.find("did you mean 'inner.count'?"), std::string::npos) << e;
}

TEST(Config, WrongTypesNameTheKeyAndWhatWasFound) {
  EXPECT_EQ(ErrorOf("small: abc\n"), "t.yaml:1:8: small: expected an integer (32-bit), got 'abc'");
  EXPECT_EQ(ErrorOf("small: 1.5\n"), "t.yaml:1:8: small: expected an integer (32-bit), got '1.5'");
  EXPECT_EQ(ErrorOf("rate: [1]\n"), "t.yaml:1:7: rate: expected a finite number, got a list");
  EXPECT_EQ(ErrorOf("rate: .nan\n"), "t.yaml:1:7: rate: expected a finite number, got '.nan'");
  EXPECT_EQ(ErrorOf("on: maybe\n"), "t.yaml:1:5: on: expected true or false, got 'maybe'");
  EXPECT_EQ(ErrorOf("mode: {a: 1}\n"), "t.yaml:1:7: mode: expected a string, got a mapping");
  EXPECT_EQ(ErrorOf("pair: [1, 2, 3]\n"),
            "t.yaml:1:7: pair: expected a list of 2 values, got a list");
  EXPECT_EQ(ErrorOf("pair: [1, x]\n"), "t.yaml:1:11: pair[1]: expected a finite number, got 'x'");
  EXPECT_EQ(ErrorOf("inner: 5\n"),
            "t.yaml:1:8: inner: expected a section (keys: count, tags), got '5'");
  EXPECT_EQ(ErrorOf("inner: {tags: x}\n"), "t.yaml:1:15: inner.tags: expected a list, got 'x'");
  EXPECT_EQ(ErrorOf("small:\n"), "t.yaml:2:1: small: expected an integer (32-bit), got nothing");
}

TEST(Config, OutOfRangeValuesSayTheRule) {
  EXPECT_EQ(ErrorOf("small: 11\n"), "t.yaml:1:8: small: got 11, but it must be in [0, 10]");
  EXPECT_EQ(ErrorOf("rate: 1\n"), "t.yaml:1:7: rate: got 1.0, but it must be in [0, 1)");
  EXPECT_EQ(ErrorOf("inner: {count: 0}\n"),
            "t.yaml:1:16: inner.count: got 0, but it must be > 0");
  EXPECT_EQ(ErrorOf("pair: [1, -1]\n"),
            "t.yaml:1:7: pair: got [1.0, -1.0], but it must contain only values >= 0");
  EXPECT_EQ(ErrorOf("mode: bb\n"),
            "t.yaml:1:7: mode: got 'bb', but it must be one of 'a', 'b' (did you mean 'b'?)");
}

TEST(Config, CrossFieldCheckRunsAfterOverrides) {
  EXPECT_EQ(ErrorOf("small: 5\n"), "t.yaml: small must not exceed inner.count");
  // Each value alone is fine; together they break the check. The override order
  // must not matter, so checks run only after all overrides.
  auto r = LoadString<Outer>("small: 5\n", "t.yaml", {"inner.count=8"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->inner.count, 8);
}

TEST(Config, MalformedYamlNamesLine) {
  const std::string e = ErrorOf("small: 1\ninner: {count: 2\n");
  EXPECT_EQ(e.rfind("t.yaml:", 0), 0u) << e;
  EXPECT_NE(e.find("malformed YAML"), std::string::npos) << e;
}

TEST(Config, TopLevelMustBeAMapping) {
  EXPECT_NE(ErrorOf("- a\n- b\n").find("the top level must be a mapping"), std::string::npos);
}

TEST(Config, DuplicateKeyIsAnError) {
  EXPECT_EQ(ErrorOf("small: 1\nsmall: 2\n"), "t.yaml:2:1: small: key given twice; keep one");
}

TEST(Config, OverridesApplyInOrderAndParseAsYaml) {
  auto r = LoadString<Outer>("small: 2\n", "t.yaml",
                             {"small=3", "small=4", "pair=[5, 6]", "inner.tags=[p, q]", "on=true",
                              "mode=b", "inner={count: 11}"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->small, 4);
  EXPECT_DOUBLE_EQ(r->pair[0], 5);
  EXPECT_EQ(r->inner.tags, (std::vector<std::string>{"p", "q"}));
  EXPECT_EQ(r->inner.count, 11);
  EXPECT_TRUE(r->on);
  EXPECT_EQ(r->mode, "b");
}

TEST(Config, OverrideErrorsNameTheOverride) {
  EXPECT_EQ(ErrorOf("", {"bogus.key=1"}),
            "command line override 'bogus.key=1': unknown key 'bogus.key'");
  EXPECT_EQ(ErrorOf("", {"inner.cont=1"}),
            "command line override 'inner.cont=1': unknown key 'inner.cont' (did you mean "
            "'inner.count'?)");
  EXPECT_EQ(ErrorOf("", {"small=x"}),
            "command line override 'small=x': small: expected an integer (32-bit), got 'x'");
  EXPECT_EQ(ErrorOf("", {"small=99"}),
            "command line override 'small=99': small: got 99, but it must be in [0, 10]");
  EXPECT_EQ(ErrorOf("", {"small"}),
            "command line override 'small' is not KEY=VALUE (example: optim.lr=1e-4)");
  EXPECT_EQ(ErrorOf("", {"=3"}),
            "command line override '=3' is not KEY=VALUE (example: optim.lr=1e-4)");
  EXPECT_NE(ErrorOf("", {"a..b=1"}).find("is not a dotted key path"), std::string::npos);
  EXPECT_NE(ErrorOf("", {"small=[1"}).find("the value is not valid YAML"), std::string::npos);
  EXPECT_EQ(ErrorOf("", {"small.x=1"}),
            "command line override 'small.x=1': unknown key 'small.x' (did you mean 'small'?)");
}

TEST(Config, MissingFileIsNotFound) {
  auto r = LoadFile<Outer>("/nonexistent/loom.yaml", {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("/nonexistent/loom.yaml"), absl::string_view::npos);
}

TEST(Config, FileErrorsNameThePath) {
  testing::TempDir dir;
  const std::string path = dir.str() + "/bad.yaml";
  std::ofstream(path) << "small: 1\nrate: high\n";
  auto r = LoadFile<Outer>(path, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(std::string(r.status().message()),
            path + ":2:7: rate: expected a finite number, got 'high'");
}

TEST(Config, ResolvedConfigRoundTrips) {
  auto first = LoadString<Outer>("rate: 0.1\npair: [0.3, 1e-9]\ninner: {tags: ['1', 'true', x]}\n",
                                 "t.yaml", {"small=3"});
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string yaml = ToYaml(*first);
  auto second = LoadString<Outer>(yaml, "resolved.yaml");
  ASSERT_TRUE(second.ok()) << second.status() << "\n" << yaml;
  EXPECT_EQ(ToYaml(*second), yaml);
  EXPECT_EQ(second->small, 3);
  EXPECT_EQ(second->rate, 0.1);      // exact, not approximately
  EXPECT_EQ(second->pair[1], 1e-9);  // exact
  EXPECT_EQ(second->inner.tags, (std::vector<std::string>{"1", "true", "x"}));
}

TEST(Config, ExperimentOfEachKindRoundTrips) {
  for (const char* kind : {"dit", "vae"}) {
    auto first = LoadString<ExperimentOptions>(std::string("stage: {kind: ") + kind + "}\n", "k.yaml");
    ASSERT_TRUE(first.ok()) << kind << ": " << first.status();
    EXPECT_EQ(first->stage.kind(), kind);
    const std::string yaml = ToYaml(*first);
    auto again = LoadString<ExperimentOptions>(yaml, "resolved.yaml");
    ASSERT_TRUE(again.ok()) << again.status() << "\n" << yaml;
    EXPECT_EQ(ToYaml(*again), yaml);
    EXPECT_EQ(ToYaml(*again, /*docs=*/false), ToYaml(*first, false));
  }
}

TEST(Config, StageKindIsRequiredAndNamed) {
  auto none = LoadString<ExperimentOptions>("", "empty.yaml");
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("no kind chosen: set stage.kind to one of 'dit', 'vae'"),
            absl::string_view::npos) << none.status();
  auto unknown = LoadString<ExperimentOptions>("stage: {kind: vea}\n", "u.yaml");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(std::string(unknown.status().message()),
            "u.yaml:1:15: stage.kind: 'vea' is not a kind; one of 'dit', 'vae', 'ldm', 'clip', 'prior', 'unclip', 'video_vae', 'video_dit', 'bert' (did you mean 'vae'?)");
}

TEST(Config, OptionsOfAnotherKindAreNamedAsSuch) {
  auto r = LoadString<ExperimentOptions>("stage:\n  kind: dit\n  disc: {enabled: true}\n", "o.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("o.yaml:3:3: stage.disc: is an option of stage.kind 'vae', not of 'dit'"),
            absl::string_view::npos) << r.status();
  // The same from the command line, and a key no kind has.
  auto o = LoadString<ExperimentOptions>("stage: {kind: dit}\n", "o.yaml", {"stage.loss.kl_weight=1"});
  ASSERT_FALSE(o.ok());
  EXPECT_NE(o.status().message().find("is an option of stage.kind 'vae'"), absl::string_view::npos) << o.status();
  auto typo = LoadString<ExperimentOptions>("stage: {kind: dit}\n", "o.yaml", {"stage.modl.width=64"});
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.status().message().find("did you mean 'stage.model.width'"), absl::string_view::npos) << typo.status();
}

TEST(Config, OverridesChangeTheKindOrItsOptions) {
  auto dit = LoadString<ExperimentOptions>("stage: {kind: dit, model: {width: 64}}\n", "k.yaml",
                                           {"stage.model.depth=3"});
  ASSERT_TRUE(dit.ok()) << dit.status();
  EXPECT_EQ(dit->stage.As<stages::DiTStageOptions>()->model.width, 64);
  EXPECT_EQ(dit->stage.As<stages::DiTStageOptions>()->model.depth, 3);
  EXPECT_EQ(dit->stage.As<stages::VaeStageOptions>(), nullptr);
  // Another kind starts from its own defaults.
  auto vae = LoadString<ExperimentOptions>("stage: {kind: dit, model: {width: 64}}\n", "k.yaml",
                                           {"stage.kind=vae", "stage.model.z_channels=8"});
  ASSERT_TRUE(vae.ok()) << vae.status();
  EXPECT_EQ(vae->stage.kind(), "vae");
  EXPECT_EQ(vae->stage.As<stages::VaeStageOptions>()->model.z_channels, 8);
  EXPECT_EQ(vae->stage.As<stages::VaeStageOptions>()->model.ch, 64);
}

TEST(Config, ReferenceConfigsLoad) {
  for (const char* name : {"configs/fashion/dit.yaml", "configs/fashion/vae.yaml", "configs/fashion/dit-latent.yaml",
                           "configs/fashion/sd/ldm.yaml", "configs/tiny.yaml", "configs/tiny-vae.yaml",
                           "configs/tiny-ldm.yaml"}) {
    auto r = LoadFile<ExperimentOptions>(std::string(LOOM_SOURCE_DIR) + "/" + name, {});
    EXPECT_TRUE(r.ok()) << name << ": " << r.status();
  }
}

TEST(Config, ExperimentChecksAcrossSections) {
  auto r = LoadString<ExperimentOptions>("stage: {kind: dit}\ndata: {batch_size: 10}\ntrain: {grad_accum: 4}\n",
                                         "e.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(std::string(r.status().message()), "e.yaml: data.batch_size 10 must be divisible by train.grad_accum 4");
  auto heads = LoadString<ExperimentOptions>("stage: {kind: dit}\n", "e.yaml", {"stage.model.text.heads=3"});
  ASSERT_FALSE(heads.ok());
  EXPECT_NE(heads.status().message().find("stage.model.text: width 256 must be divisible by heads 3"),
            absl::string_view::npos)
      << heads.status();
}

TEST(Config, KeyTableListsEveryLeafWithDocAndTheChosenKindsKeys) {
  const auto rows = KeyTable<ExperimentOptions>();
  bool found = false, kind = false;
  for (const auto& row : rows) {
    EXPECT_FALSE(row[2].empty()) << row[0] << " has no doc";
    if (row[0] == "optim.lr") {
      found = true;
      EXPECT_EQ(row[1], "0.0003");
    }
    kind = kind || row[0] == "stage.kind";
    EXPECT_NE(row[0], "stage.model.width") << "no kind chosen: no stage keys";
  }
  EXPECT_TRUE(found);
  EXPECT_TRUE(kind);
  ExperimentOptions vae;
  vae.stage.Reset(stages::StageKinds()[1].options);
  bool z = false;
  for (const auto& row : KeyTable<ExperimentOptions>(vae)) z = z || row[0] == "stage.model.z_channels";
  EXPECT_TRUE(z);
}

}  // namespace
}  // namespace loom::config
