// `air render`: how each record is rendered, tokenized and cut into steps (no model run).

#include "air/render_job.h"
#include "cli/cli.h"
#include "cli/corpus_flags.h"

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

namespace air::cli {

void register_render(CLI::App& app) {
  auto opt = std::make_shared<RenderJobOptions>();
  CLI::App* cmd = app.add_subcommand(
      "render", "Show how records are rendered, tokenized and cut into steps (no model run)");
  cmd->add_option("--tokenizer,--model", opt->tokenizer, "model directory or tokenizer file")->required();
  cmd->add_option("--data", opt->data, "corpus JSONL (- = stdin)")->required();
  cmd->add_option("--out", opt->out, "output JSONL (- = stdout)")->capture_default_str();
  cmd->add_flag("--tokens", opt->tokens, "also write ids and byte offsets");
  add_corpus_flags(*cmd, opt->corpus, &opt->rejects);
  cmd->callback([opt] {
    LogEvents events;
    const RenderJobResult r = run_render_job(*opt, events);
    spdlog::info("{} records: {} rendered ({} truncated), {} rejected{}", r.records, r.rendered, r.truncated,
                 r.rejected, r.rejected == 0 || r.rejects.empty() ? "" : " (see " + r.rejects + ")");
  });
}

}  // namespace air::cli
