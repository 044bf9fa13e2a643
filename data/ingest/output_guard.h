// Cleans up after a dataset maker that fails part-way. ShardWriter never writes a
// manifest for a failed run, so the directory already reads as incomplete; this also
// removes the shard files the run left, so a later run into the same directory
// (which may write fewer shards) does not find stray unlisted .h5 files.
//
//   OutputGuard guard(options.dir);
//   ... write shards, return on error: the destructor removes what this run wrote ...
//   guard.Commit();  // after ShardWriter::Finish succeeded
#pragma once

#include <set>
#include <string>

namespace loom::data {

class OutputGuard {
 public:
  // Records the files already in `dir` (which may not exist yet): those are never removed.
  explicit OutputGuard(std::string dir);
  OutputGuard(const OutputGuard&) = delete;
  OutputGuard& operator=(const OutputGuard&) = delete;
  // Unless committed, removes the *.h5 and *.h5.tmp files that appeared in `dir`, and
  // `dir` itself when this run created it and it is left empty.
  ~OutputGuard();

  void Commit() { committed_ = true; }

 private:
  std::string dir_;
  bool existed_ = false;
  std::set<std::string> before_;
  bool committed_ = false;
};

}  // namespace loom::data
