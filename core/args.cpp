// Strict command-line flag parsing with usage text (see args.h).
#include "core/args.h"

#include <cstdio>
#include <sstream>

#include "absl/strings/numbers.h"
#include "core/strings.h"

namespace loom {

ArgParser::ArgParser(std::string command, std::string summary)
    : command_(std::move(command)), summary_(std::move(summary)) {}

ArgParser::Spec& ArgParser::AddFlag(const std::string& name, const std::string& value_name,
                                    const std::string& doc, std::string default_text,
                                    std::function<absl::Status(const std::string&)> set) {
  auto spec = std::make_unique<Spec>();
  spec->name = name;
  spec->value_name = value_name;
  spec->doc = doc;
  spec->default_text = std::move(default_text);
  spec->set = std::move(set);
  flags_.push_back(std::move(spec));
  return *flags_.back();
}

absl::Status ArgParser::Error(const std::string& message) const {
  return absl::InvalidArgumentError(command_ + ": " + message + " (see '" + command_ +
                                    " --help')");
}

ArgParser::Spec& ArgParser::Flag(const std::string& name, std::string* out,
                                 const std::string& doc) {
  return AddFlag(name, "TEXT", doc, *out, [out](const std::string& v) {
    *out = v;
    return absl::OkStatus();
  });
}

ArgParser::Spec& ArgParser::Flag(const std::string& name, int64_t* out, const std::string& doc) {
  return AddFlag(name, "N", doc, std::to_string(*out), [this, name, out](const std::string& v) {
    if (!absl::SimpleAtoi(v, out)) return Error("--" + name + " expects an integer, got '" + v + "'");
    return absl::OkStatus();
  });
}

ArgParser::Spec& ArgParser::Flag(const std::string& name, double* out, const std::string& doc) {
  return AddFlag(name, "X", doc, FormatDouble(*out), [this, name, out](const std::string& v) {
    if (!absl::SimpleAtod(v, out)) return Error("--" + name + " expects a number, got '" + v + "'");
    return absl::OkStatus();
  });
}

ArgParser::Spec& ArgParser::Flag(const std::string& name, bool* out, const std::string& doc) {
  return AddFlag(name, "", doc, "", [out](const std::string&) {
    *out = true;
    return absl::OkStatus();
  });
}

ArgParser::Spec& ArgParser::Flag(const std::string& name, std::vector<std::string>* out,
                                 const std::string& doc) {
  Spec& spec = AddFlag(name, "TEXT", doc, "", [out](const std::string& v) {
    out->push_back(v);
    return absl::OkStatus();
  });
  spec.repeated = true;
  return spec;
}

ArgParser::Spec& ArgParser::Positional(const std::string& name, std::string* out,
                                       const std::string& doc) {
  auto spec = std::make_unique<Spec>();
  spec->name = name;
  spec->doc = doc;
  spec->required_ = true;
  spec->set = [out](const std::string& v) {
    *out = v;
    return absl::OkStatus();
  };
  positionals_.push_back(std::move(spec));
  return *positionals_.back();
}

void ArgParser::Rest(const std::string& name, std::vector<std::string>* out,
                     const std::string& doc) {
  rest_name_ = name;
  rest_doc_ = doc;
  rest_ = out;
}

absl::StatusOr<bool> ArgParser::Parse(const std::vector<std::string>& args) {
  size_t next_positional = 0;
  bool only_positionals = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (!only_positionals && (arg == "--help" || arg == "-h")) {
      std::fputs(Usage().c_str(), stdout);
      return false;
    }
    if (!only_positionals && arg == "--") {
      only_positionals = true;
      continue;
    }
    if (!only_positionals && arg.size() > 1 && arg[0] == '-') {
      std::string name = arg.substr(arg[1] == '-' ? 2 : 1);
      std::string value;
      bool has_value = false;
      if (const size_t eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
        has_value = true;
      }
      Spec* spec = nullptr;
      std::vector<std::string> names;
      for (auto& f : flags_) {
        names.push_back("--" + f->name);
        if (f->name == name) spec = f.get();
      }
      if (spec == nullptr) return Error("unknown flag '--" + name + "'" + DidYouMean("--" + name, names));
      if (spec->seen && !spec->repeated) return Error("--" + name + " given twice");
      spec->seen = true;
      if (spec->value_name.empty()) {
        if (has_value) return Error("--" + name + " takes no value");
      } else if (!has_value) {
        if (i + 1 >= args.size()) return Error("--" + name + " needs a value");
        value = args[++i];
      }
      if (absl::Status s = spec->set(value); !s.ok()) return s;
      continue;
    }
    if (next_positional < positionals_.size()) {
      Spec& spec = *positionals_[next_positional++];
      spec.seen = true;
      if (absl::Status s = spec.set(arg); !s.ok()) return s;
    } else if (rest_ != nullptr) {
      rest_->push_back(arg);
    } else {
      return Error("unexpected argument '" + arg + "'");
    }
  }
  for (const auto& p : positionals_) {
    if (p->required_ && !p->seen) return Error("missing " + p->name);
  }
  for (const auto& f : flags_) {
    if (f->required_ && !f->seen) return Error("missing required flag --" + f->name);
  }
  return true;
}

std::string ArgParser::Usage() const {
  std::ostringstream out;
  out << "usage: " << command_;
  for (const auto& p : positionals_) out << " " << p->name;
  if (rest_ != nullptr) out << " [" << rest_name_ << " ...]";
  for (const auto& f : flags_) {
    std::string text = "--" + f->name + (f->value_name.empty() ? "" : " " + f->value_name);
    out << " " << (f->required_ ? text : "[" + text + "]");
  }
  out << "\n\n" << summary_ << "\n";
  if (!positionals_.empty() || rest_ != nullptr) {
    out << "\narguments:\n";
    for (const auto& p : positionals_) out << "  " << p->name << "\n      " << p->doc << "\n";
    if (rest_ != nullptr) out << "  " << rest_name_ << " ...\n      " << rest_doc_ << "\n";
  }
  if (!flags_.empty()) {
    out << "\nflags:\n";
    for (const auto& f : flags_) {
      out << "  --" << f->name << (f->value_name.empty() ? "" : " " + f->value_name) << "\n      "
          << f->doc;
      if (f->required_) {
        out << " (required)";
      } else if (!f->default_text.empty()) {
        out << " (default: " << f->default_text << ")";
      }
      if (f->repeated) out << " (repeatable)";
      out << "\n";
    }
  }
  out << "  --help\n      print this help\n";
  if (!epilog_.empty()) out << "\n" << epilog_ << "\n";
  return out.str();
}

}  // namespace loom
