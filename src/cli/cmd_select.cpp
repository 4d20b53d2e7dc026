// `air select`: the top records by Attention Influence Score, written back verbatim.

#include "air/error.h"
#include "air/select_job.h"
#include "cli/cli.h"

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <cstdio>

namespace air::cli {
namespace {

void print_shown(const SelectJobResult& r) {
  std::fprintf(stderr, "top %zu of %lld scored records by air_score:\n", r.shown.size(),
               static_cast<long long>(r.candidates));
  for (size_t i = 0; i < r.shown.size(); ++i) {
    const ShownRecord& s = r.shown[i];
    std::fprintf(stderr, "%2zu. %-14s air_score %+.4f\n", i + 1, s.id.c_str(), s.score);
    if (!s.step.empty())
      std::fprintf(stderr, "    most influential step (weight %.2f): %s\n", s.step_weight, s.step.c_str());
  }
}

void add_select_flags(CLI::App& cmd, SelectJobOptions& opt, std::string& order) {
  cmd.add_option("--data", opt.data, "the scored corpus JSONL (or .jsonl.gz; a subset of it is fine)")
      ->required()
      ->group("Input");
  cmd.add_option("--scores", opt.scores, "scores JSONL from `air score` (several: the outputs of its --shard runs)")
      ->required()
      ->group("Input");
  cmd.add_flag("--allow-partial", opt.allow_partial, "select even if the scores do not cover the corpus")->group("Input");
  cmd.add_option_function<std::string>(
         "--match", [&opt](const std::string& v) { opt.match_by_id = v == "id"; },
         "how records are matched to their scores: bytes (the line as scored) or id (a corpus written again by "
         "pandas, jq or json.dumps)")
      ->check(CLI::IsMember({"bytes", "id"}))
      ->default_str("bytes")
      ->group("Input");
  cmd.add_flag("--allow-mixed", opt.allow_mixed,
               "select across score files whose metas differ in model, heads or scoring options")
      ->group("Input");
  cmd.add_option("--id-field", opt.id_field, "record id field (default: as scored, from the scores' meta; else id)")
      ->group("Input");
  cmd.add_option("--prompt-field", opt.prompt_field,
                 "prompt field, for score files without a meta (default: as scored, from the meta)")
      ->group("Input");
  cmd.add_option("--response-field", opt.response_fields,
                 "response field(s), for score files without a meta (default: as scored, from the meta)")
      ->delimiter(',')
      ->group("Input");
  auto* k = cmd.add_option("--top-k", opt.top_k, "select this many records")->group("Selection");
  auto* r = cmd.add_option("--top-ratio", opt.top_ratio, "select this fraction of the scored records")->group("Selection");
  k->excludes(r);
  cmd.add_flag("--dedupe", opt.dedupe, "keep one record per distinct response text (the best ranked)")->group("Selection");
  cmd.add_option("--min-tokens", opt.min_tokens, "leave out records with fewer response tokens")->group("Selection");
  cmd.add_option("--max-tokens", opt.max_tokens, "leave out records with more response tokens (0: no limit)")
      ->group("Selection");
  cmd.add_option("--min-score", opt.min_score, "leave out records with a lower air_score")->group("Selection");
  cmd.add_option("--group-by", opt.group_by,
                 "select per group: a record field (a.b for nested), e.g. source or domain; "
                 "records without it form the group (missing)")
      ->group("Selection");
  cmd.add_option_function<std::string>(
         "--per-group", [&opt](const std::string& v) { opt.per_group = parse_group_quota(v); },
         "with --group-by: equal (the same number from each group) or proportional (each group's "
         "share of the candidates, keeping the mix)")
      ->default_str("proportional")
      ->group("Selection");
  cmd.add_option("--order", order, "input or rank")->capture_default_str()->group("Output");
  cmd.add_option("--out", opt.out, "selected records JSONL (- = stdout)")->capture_default_str()->group("Output");
  cmd.add_flag("--annotate", opt.annotate, "add air_score and air_step_weights to each record")->group("Output");
  cmd.add_option("--weights-out", opt.weights_out, "per-record step weights with byte spans (JSONL)")->group("Output");
  cmd.add_option("--show", opt.show, "print the top N records with their most influential step (on stderr)")
      ->group("Output");
}

}  // namespace

void register_select(CLI::App& app) {
  auto opt = std::make_shared<SelectJobOptions>();
  auto order = std::make_shared<std::string>("input");
  CLI::App* cmd = app.add_subcommand("select", "Write the top records by Attention Influence Score");
  add_select_flags(*cmd, *opt, *order);
  cmd->callback([cmd, opt, order] {
    opt->order = parse_select_order(*order);
    if (cmd->count("--per-group") && opt->group_by.empty())
      throw UsageError("--per-group shares the selection among groups: give --group-by FIELD too");
    if (cmd->count("--group-by") && opt->group_by.empty()) throw UsageError("--group-by needs a field name");
    LogEvents events;
    const SelectJobResult r = run_select_job(*opt, events);
    if (!r.shown.empty()) print_shown(r);
    for (const GroupCount& g : r.groups)
      spdlog::info("group {}: {} selected of {} candidates", g.name, g.selected, g.candidates);
    spdlog::info("selected {} of {} records with a score ({} records in {}, {} not scorable, {} without a score) -> {}",
                 r.selected, r.candidates, r.records, opt->data, r.errors, r.missing, opt->out);
  });
}

}  // namespace air::cli
