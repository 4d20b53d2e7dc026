// `air tokenize`: token ids (and byte offsets) of texts, one a line.

#include "air/token_jobs.h"
#include "cli/cli.h"

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

namespace air::cli {

void register_tokenize(CLI::App& app) {
  auto opt = std::make_shared<TokenizeJobOptions>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Token ids of JSON strings, one a line");
  cmd->add_option("--tokenizer", opt->tokenizer, "model directory, tokenizer.json or tokenizer.model")
      ->required();
  cmd->add_option("--input", opt->input, "JSONL of strings or {\"text\": ...} (- = stdin)")
      ->capture_default_str();
  cmd->add_option("--out", opt->out, "output JSONL (- = stdout)")->capture_default_str();
  cmd->add_flag("--special", opt->special, "add the post-processor's special tokens (BOS)");
  cmd->add_flag("--offsets", opt->offsets, "also write each token's [begin, end) byte range");
  cmd->callback([opt] {
    LogEvents events;
    const int64_t n = run_tokenize_job(*opt, events);
    spdlog::debug("tokenized {} lines", n);
  });
}

}  // namespace air::cli
