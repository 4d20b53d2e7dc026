// `air loss`: per-token next-token losses for token-id sequences, plain or with heads made
// uniform.

#include "air/token_jobs.h"
#include "cli/cli.h"

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

namespace air::cli {

void register_loss(CLI::App& app) {
  auto opt = std::make_shared<LossJobOptions>();
  CLI::App* cmd = app.add_subcommand(
      "loss", "Per-token next-token losses of token-id sequences, optionally with heads masked");
  cmd->add_option("--model", opt->model, "HuggingFace model directory")->required();
  cmd->add_option("--input", opt->input, "JSONL, one {\"ids\": [...]} a line (- = stdin)")
      ->required();
  cmd->add_option("--out", opt->out, "output JSONL (- = stdout)")->capture_default_str();
  cmd->add_option("--mask-heads", opt->mask_heads,
                  "heads made uniform, LAYER:HEAD,... (0-based query heads)");
  cmd->add_option("--batch-tokens", opt->batch_tokens, "padded tokens per forward batch")
      ->capture_default_str();
  add_runtime_flags(*cmd, opt->runtime);
  cmd->callback([opt] {
    LogEvents events;
    const int64_t n = run_loss_job(*opt, events);
    spdlog::info("wrote {} lines to {}", n, opt->out);
  });
}

}  // namespace air::cli
