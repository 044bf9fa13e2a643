// Rank-aware logging. Progress (Info) is printed by rank 0 only; warnings and
// errors by any rank, prefixed with the rank when the job has more than one.
//
//   log::Info() << "step " << step << " loss " << loss;
//   log::Error() << "shard " << path << " is truncated";
#pragma once

#include <sstream>
#include <string>

namespace loom::log {

enum class Level { kDebug, kInfo, kWarning, kError };

// Called once the process knows its place in the job (dist::Runtime does this).
void SetRank(int rank, int world);
int Rank();
int World();

// Also append every line this rank prints to `path` (for a run's log.txt); "" stops.
void SetFile(const std::string& path);

// Prints debug lines when set (LOOM_DEBUG=1 in the environment does the same).
void SetVerbose(bool verbose);

// The prefix errors carry: "[rank 3] " under a multi-rank job, "" alone.
std::string RankPrefix();

// Writes one line; thread-safe. Info goes to stdout on rank 0; the rest to stderr.
void Write(Level level, const std::string& message);

// Collects one line with operator<< and writes it when destroyed.
class Line {
 public:
  explicit Line(Level level) : level_(level) {}
  Line(const Line&) = delete;
  Line& operator=(const Line&) = delete;
  ~Line() { Write(level_, stream_.str()); }

  template <class T>
  Line& operator<<(const T& value) {
    stream_ << value;
    return *this;
  }

 private:
  Level level_;
  std::ostringstream stream_;
};

inline Line Debug() { return Line(Level::kDebug); }
inline Line Info() { return Line(Level::kInfo); }
inline Line Warning() { return Line(Level::kWarning); }
inline Line Error() { return Line(Level::kError); }

}  // namespace loom::log
