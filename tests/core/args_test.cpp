// Flag parsing: values, switches, repeats, positionals, and every error path.
#include <gtest/gtest.h>

#include "core/args.h"

namespace loom {
namespace {

struct Flags {
  std::string out;
  int64_t count = 10;
  double cfg = 3.0;
  bool verbose = false;
  std::vector<std::string> templates;
  std::string path;
  std::vector<std::string> rest;
};

ArgParser MakeParser(Flags& f, bool with_rest = false) {
  ArgParser p("loom test", "a test command");
  p.Flag("out", &f.out, "output directory").Required();
  p.Flag("count", &f.count, "how many");
  p.Flag("cfg", &f.cfg, "guidance");
  p.Flag("verbose", &f.verbose, "more output");
  p.Flag("template", &f.templates, "prompt template");
  p.Positional("PATH", &f.path, "input");
  if (with_rest) p.Rest("KEY=VALUE", &f.rest, "overrides");
  return p;
}

absl::StatusOr<bool> Parse(Flags& f, std::vector<std::string> args, bool with_rest = false) {
  ArgParser p = MakeParser(f, with_rest);
  return p.Parse(args);
}

TEST(Args, ParsesEveryKind) {
  Flags f;
  auto r = Parse(f, {"in.h5", "--out", "o", "--count=5", "--cfg", "1.5", "--verbose", "--template",
                     "a {class}", "--template=b"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(*r);
  EXPECT_EQ(f.path, "in.h5");
  EXPECT_EQ(f.out, "o");
  EXPECT_EQ(f.count, 5);
  EXPECT_DOUBLE_EQ(f.cfg, 1.5);
  EXPECT_TRUE(f.verbose);
  EXPECT_EQ(f.templates, (std::vector<std::string>{"a {class}", "b"}));
}

TEST(Args, RestCollectsOverrides) {
  Flags f;
  auto r = Parse(f, {"cfg.yaml", "optim.lr=1", "--out", "o", "train.steps=3"}, true);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(f.rest, (std::vector<std::string>{"optim.lr=1", "train.steps=3"}));
}

TEST(Args, HelpStopsWithoutError) {
  Flags f;
  testing::internal::CaptureStdout();
  auto r = Parse(f, {"--help"});
  const std::string usage = testing::internal::GetCapturedStdout();
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(*r);
  EXPECT_NE(usage.find("--out TEXT"), std::string::npos);
  EXPECT_NE(usage.find("(repeatable)"), std::string::npos);
}

void ExpectError(std::vector<std::string> args, const std::string& fragment, bool rest = false) {
  Flags f;
  auto r = Parse(f, args, rest);
  ASSERT_FALSE(r.ok()) << "no error for " << ::testing::PrintToString(args);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find(fragment), absl::string_view::npos) << r.status();
  EXPECT_EQ(r.status().message().rfind("loom test: ", 0), 0u);
}

TEST(Args, Errors) {
  ExpectError({"p", "--out", "o", "--cuont", "3"}, "unknown flag '--cuont' (did you mean '--count'?)");
  ExpectError({"p", "--out", "o", "--zzzzzzz"}, "unknown flag '--zzzzzzz'");
  ExpectError({"p"}, "missing required flag --out");
  ExpectError({"--out", "o"}, "missing PATH");
  ExpectError({"p", "--out"}, "--out needs a value");
  ExpectError({"p", "--out", "o", "--count", "ten"}, "--count expects an integer, got 'ten'");
  ExpectError({"p", "--out", "o", "--cfg", "x"}, "--cfg expects a number, got 'x'");
  ExpectError({"p", "--out", "o", "--verbose=yes"}, "--verbose takes no value");
  ExpectError({"p", "--out", "o", "--out", "x"}, "--out given twice");
  ExpectError({"p", "q", "--out", "o"}, "unexpected argument 'q'");
}

}  // namespace
}  // namespace loom
