// Command-line flags of one subcommand: declared with a doc, parsed strictly (unknown
// flags are errors with a suggestion), and printed as usage for --help.
//
//   ArgParser args("loom data shapes", "synthetic shapes with exact captions");
//   args.Flag("out", &out, "output directory").Required();
//   args.Flag("count", &count, "number of samples");
//   ASSIGN_OR_RETURN(bool run, args.Parse(argv));   // false: --help was printed
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace loom {

class ArgParser {
 public:
  ArgParser(std::string command, std::string summary);

  class Spec {
   public:
    Spec& Required() {
      required_ = true;
      return *this;
    }

   private:
    friend class ArgParser;
    std::string name;
    std::string doc;
    std::string value_name;  // "" for a switch
    std::string default_text;
    bool required_ = false;
    bool repeated = false;
    bool seen = false;
    std::function<absl::Status(const std::string&)> set;
  };

  Spec& Flag(const std::string& name, std::string* out, const std::string& doc);
  Spec& Flag(const std::string& name, int64_t* out, const std::string& doc);
  Spec& Flag(const std::string& name, double* out, const std::string& doc);
  // A switch: present means true.
  Spec& Flag(const std::string& name, bool* out, const std::string& doc);
  // A flag that may be given several times; each value is appended.
  Spec& Flag(const std::string& name, std::vector<std::string>* out, const std::string& doc);

  // A positional argument, in declaration order.
  Spec& Positional(const std::string& name, std::string* out, const std::string& doc);
  // Every positional argument after the declared ones (e.g. KEY=VALUE overrides).
  void Rest(const std::string& name, std::vector<std::string>* out, const std::string& doc);

  // Extra text printed at the end of --help.
  void Epilog(std::string text) { epilog_ = std::move(text); }

  // Parses `args` (without the command words). Returns false when --help was given
  // and the usage has been printed to stdout; errors are InvalidArgument.
  absl::StatusOr<bool> Parse(const std::vector<std::string>& args);

  std::string Usage() const;

 private:
  Spec& AddFlag(const std::string& name, const std::string& value_name, const std::string& doc,
                std::string default_text, std::function<absl::Status(const std::string&)> set);
  absl::Status Error(const std::string& message) const;

  std::string command_;
  std::string summary_;
  std::string epilog_;
  std::vector<std::unique_ptr<Spec>> flags_;
  std::vector<std::unique_ptr<Spec>> positionals_;
  std::string rest_name_;
  std::string rest_doc_;
  std::vector<std::string>* rest_ = nullptr;
};

}  // namespace loom
