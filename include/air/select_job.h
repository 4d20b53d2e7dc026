#pragma once

// The selection job (`air select`): the top records of a corpus by Attention Influence Score,
// written back verbatim (or annotated), with their step weights.

#include "air/job_events.h"

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace air {

enum class SelectOrder { kInput, kRank };
SelectOrder parse_select_order(const std::string& name);  // "input" | "rank"; OptionError ("order")

// How `top_k` is shared among the groups of group_by: the same number from each (what a small
// group cannot give goes to the others), or each group's share of the candidates.
enum class GroupQuota { kEqual, kProportional };
GroupQuota parse_group_quota(const std::string& name);  // "equal" | "proportional"; OptionError ("per_group")

struct SelectJobOptions {
  std::string data;                 // the scored corpus (or a subset of it)
  std::vector<std::string> scores;  // score files: one, or the outputs of the shards of one run
  std::string out = "-";            // selected records JSONL ("-": stdout)
  int64_t top_k = 0;                // select this many records ...
  double top_ratio = 0;             // ... or this fraction of the candidates (exactly one is set)
  // Candidates: scored records within these bounds (response tokens; air_score), after dedupe.
  int64_t min_tokens = 0;
  int64_t max_tokens = 0;  // 0: no limit
  double min_score = -std::numeric_limits<double>::infinity();
  // Select per group: the records' value of this field (a dotted path into nested objects;
  // records without it form the group "(missing)"), shared by per_group. Empty: one ranking.
  std::string group_by;
  GroupQuota per_group = GroupQuota::kProportional;
  SelectOrder order = SelectOrder::kInput;
  bool annotate = false;            // add air_score and air_step_weights to each record
  std::string weights_out;          // per-record step weights with byte spans (empty: none)
  bool allow_partial = false;       // select even if the scores do not cover the corpus
  bool match_by_id = false;         // match records to scores by id, not by their bytes (a corpus written again)
  bool allow_mixed = false;         // select across score files from runs that differ
  bool dedupe = false;              // keep one record per distinct response text (the best ranked)
  int64_t show = 0;                 // return this many top records with their top step
  // How records are read, for score files without a meta (else the meta's settings hold, and a
  // value given here must agree with them). id_field empty: as scored, else "id".
  std::string id_field, prompt_field;
  std::vector<std::string> response_fields;
};

// One of the top records, for people: its most influential step's text.
struct ShownRecord {
  std::string id;
  double score = 0;
  double step_weight = -1;  // -1: no step text to show
  std::string step;         // the step's text (clipped; newlines as spaces)
};

struct GroupCount {
  std::string name;
  int64_t candidates = 0, selected = 0;
};

struct SelectJobResult {
  int64_t records = 0;     // corpus records
  int64_t candidates = 0;  // records with a score within the bounds (after dedupe)
  int64_t selected = 0;
  int64_t errors = 0;      // records that could not be scored
  int64_t missing = 0;     // records without a score
  int64_t duplicates = 0;  // records left out by dedupe
  int64_t filtered = 0;    // scored records outside the length and score bounds
  std::vector<GroupCount> groups;  // with group_by, by group name
  std::vector<ShownRecord> shown;  // the first `show` of the ranking
};

SelectJobResult run_select_job(const SelectJobOptions& opt, JobEvents& events);

}  // namespace air
