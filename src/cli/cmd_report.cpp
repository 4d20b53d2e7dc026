// `air report`: one self-contained HTML file with the plots and records of a scoring run.

#include "air/report.h"
#include "cli/cli.h"

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>


namespace air::cli {

void register_report(CLI::App& app) {
  auto opt = std::make_shared<ReportOptions>();
  CLI::App* cmd = app.add_subcommand("report", "Write an HTML report of scores: distribution, baselines, top and bottom records, heads");
  cmd->add_option("--scores", opt->scores,
                  "scores JSONL (a run's shard outputs are one run; files of other runs are compared with the first)")
      ->required();
  cmd->add_option("--data", opt->data, "the scored corpus, for the text of the records shown");
  cmd->add_option("--heads", opt->heads, "heads.json for the head map (default: the one the scores' meta names)");
  auto* k = cmd->add_option("--top-k", opt->top_k, "mark the selection of this many records");
  auto* r = cmd->add_option("--top-ratio", opt->top_ratio, "mark the selection of this fraction (default 0.1)");
  k->excludes(r);
  cmd->add_option("--samples", opt->samples, "top and bottom records shown")->capture_default_str();
  cmd->add_option("--out", opt->out, "the HTML file")->required();
  cmd->callback([opt] {
    LogEvents events;
    const ReportResult res = run_report_job(*opt, events);
    spdlog::info("report of {} scored records ({} run{}, {} plots, {} records shown with text): {:.1f} KB -> {}",
                 res.scored, res.runs, res.runs == 1 ? "" : "s", res.plots.size(), res.shown,
                 static_cast<double>(res.bytes) / 1024, opt->out);
  });
}

}  // namespace air::cli
