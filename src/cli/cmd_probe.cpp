// `air probe`: rank retrieval heads and write heads.json.

#include "cli/cli.h"
#include "cli/corpus_flags.h"
#include "cli/probe_flags.h"

#include <CLI/CLI.hpp>

namespace air::cli {

void register_probe(CLI::App& app) {
  auto opt = std::make_shared<ProbeJobOptions>();
  auto probe = std::make_shared<ProbeFlags>();
  CLI::App* cmd = app.add_subcommand("probe", "Rank retrieval heads and select the critical set");
  cmd->add_option("--model", opt->model, "HuggingFace model directory")->required();
  cmd->add_option("--out", opt->out, "heads file to write")->capture_default_str();
  cmd->add_option("--data", opt->data, "corpus JSONL whose responses give the probe text");
  add_probe_flags(*cmd, *probe);
  add_corpus_flags(*cmd, opt->corpus);
  add_runtime_flags(*cmd, opt->runtime);
  auto progress = std::make_shared<ProgressSettings>();
  add_progress_flags(*cmd, *progress);
  cmd->callback([opt, probe, progress] {
    opt->probe = probe_settings(*probe);
    LogEvents events(*progress);
    run_probe_job(*opt, events);
  });
}

}  // namespace air::cli
