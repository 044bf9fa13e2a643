// Rank-aware line logging (see log.h).
#include "core/log.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>

namespace loom::log {
namespace {

struct State {
  std::mutex mutex;
  int rank = 0;
  int world = 1;
  bool verbose = std::getenv("LOOM_DEBUG") != nullptr;
  std::ofstream file;
};

State& GetState() {
  static State* state = new State();  // never destroyed: logging works during exit
  return *state;
}

}  // namespace

void SetRank(int rank, int world) {
  State& s = GetState();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.rank = rank;
  s.world = world;
}

int Rank() { return GetState().rank; }
int World() { return GetState().world; }

void SetFile(const std::string& path) {
  State& s = GetState();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.file.is_open()) s.file.close();
  if (!path.empty()) s.file.open(path, std::ios::app);
}

void SetVerbose(bool verbose) { GetState().verbose = verbose; }

std::string RankPrefix() {
  const State& s = GetState();
  return s.world > 1 ? "[rank " + std::to_string(s.rank) + "] " : std::string();
}

void Write(Level level, const std::string& message) {
  State& s = GetState();
  std::lock_guard<std::mutex> lock(s.mutex);
  std::string line;
  FILE* stream = stderr;
  switch (level) {
    case Level::kDebug:
      if (!s.verbose) return;
      line = RankPrefix() + "debug: " + message;
      break;
    case Level::kInfo:
      if (s.rank != 0) return;
      line = message;
      stream = stdout;
      break;
    case Level::kWarning:
      line = RankPrefix() + "warning: " + message;
      break;
    case Level::kError:
      line = RankPrefix() + "error: " + message;
      break;
  }
  std::fputs(line.c_str(), stream);
  std::fputc('\n', stream);
  std::fflush(stream);
  if (s.file.is_open()) {
    s.file << line << '\n';
    s.file.flush();
  }
}

}  // namespace loom::log
