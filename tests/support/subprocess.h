// Runs a shell command for tests that drive real programs (the loom binary, mpirun):
// returns its exit code and what it printed on stdout and stderr.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace loom::testing {

struct Result {
  int code = -1;  // exit code; 128 + N when killed by signal N
  std::string out;
  std::string err;
};

// The last line of a program's output (its JSON report), without the newline.
inline std::string LastLine(std::string text) {
  while (!text.empty() && text.back() == '\n') text.pop_back();
  const size_t newline = text.rfind('\n');
  return newline == std::string::npos ? text : text.substr(newline + 1);
}

inline std::string ReadAll(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs `command` with /bin/sh in `cwd` (current directory when empty).
inline Result Run(const std::string& command, const std::string& cwd = "") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() /
                       ("loom-run-" + std::to_string(::getpid()) + "-" + std::to_string(std::rand()));
  fs::create_directories(dir);
  const std::string out = (dir / "out").string(), err = (dir / "err").string();
  std::string full = command + " >" + out + " 2>" + err + " </dev/null";
  if (!cwd.empty()) full = "cd '" + cwd + "' && " + full;
  const int status = std::system(full.c_str());
  Result r;
  if (WIFEXITED(status)) r.code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.code = 128 + WTERMSIG(status);
  r.out = ReadAll(out);
  r.err = ReadAll(err);
  fs::remove_all(dir);
  return r;
}

// A fresh empty directory under the system temp dir, removed by the destructor.
class TempDir {
 public:
  TempDir() {
    namespace fs = std::filesystem;
    path_ = fs::temp_directory_path() /
            ("loom-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::filesystem::path& path() const { return path_; }
  std::string str() const { return path_.string(); }

 private:
  static int& counter() {
    static int n = 0;
    return n;
  }
  std::filesystem::path path_;
};

}  // namespace loom::testing
