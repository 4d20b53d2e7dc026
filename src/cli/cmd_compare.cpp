// `air compare A B`: how far two score files of one corpus agree.

#include "air/compare_job.h"
#include "cli/cli.h"

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <cstdio>

namespace air::cli {

void register_compare(CLI::App& app) {
  auto opt = std::make_shared<CompareJobOptions>();
  auto files = std::make_shared<std::vector<std::string>>();
  CLI::App* cmd = app.add_subcommand(
      "compare", "Compare two score files of one corpus: rank correlation, top-set overlap, records that moved most");
  cmd->add_option("files", *files, "the two score files, A and B")->required()->expected(2);
  cmd->add_option("--top-k", opt->top_k, "size of the top sets compared (default: --top-ratio of the records)");
  cmd->add_option("--top-ratio", opt->top_ratio, "the top sets as a fraction of the records in both")->capture_default_str();
  cmd->add_option("--moved", opt->moved, "list this many records that moved most in rank")->capture_default_str();
  cmd->add_option("--out", opt->out, "the comparison as JSON (- = stdout)")->capture_default_str();
  cmd->callback([opt, files] {
    opt->a = {(*files)[0]};
    opt->b = {(*files)[1]};
    LogEvents events;
    const Comparison c = run_compare_job(*opt, events);
    spdlog::info("{} records in both: Spearman {:.4f}; top {}: {} shared ({:.1f}%), Jaccard {:.3f}", c.both, c.spearman,
                 c.top, c.top_shared, 100 * c.top_overlap, c.top_jaccard);
    for (size_t i : c.moved) {
      const ComparedRecord& r = c.records[i];
      spdlog::info("  moved: {} (line {}): rank {} -> {} (air_score {:+.4f} -> {:+.4f})", r.id, r.line, r.rank_a,
                   r.rank_b, r.score_a, r.score_b);
    }
  });
}

}  // namespace air::cli
