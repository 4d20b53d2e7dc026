#pragma once

// The selection job (`air select`): the top records of a corpus by Attention Influence Score,
// written back verbatim (or annotated), with their step weights.

#include "air/job_events.h"

#include <cstdint>
#include <string>
#include <vector>

namespace air {

enum class SelectOrder { kInput, kRank };
SelectOrder parse_select_order(const std::string& name);  // "input" | "rank"; OptionError ("order")

struct SelectJobOptions {
  std::string data;                 // the scored corpus (or a subset of it)
  std::vector<std::string> scores;  // score files: one, or the outputs of the shards of one run
  std::string out = "-";            // selected records JSONL ("-": stdout)
  int64_t top_k = 0;                // select this many records ...
  double top_ratio = 0;             // ... or this fraction of the scored ones (exactly one is set)
  SelectOrder order = SelectOrder::kInput;
  bool annotate = false;            // add air_score and air_step_weights to each record
  std::string weights_out;          // per-record step weights with byte spans (empty: none)
  bool allow_partial = false;       // select even if the scores do not cover the corpus
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

struct SelectJobResult {
  int64_t records = 0;     // corpus records
  int64_t candidates = 0;  // records with a score (after dedupe)
  int64_t selected = 0;
  int64_t errors = 0;      // records that could not be scored
  int64_t missing = 0;     // records without a score
  int64_t duplicates = 0;  // records left out by dedupe
  std::vector<ShownRecord> shown;  // the first `show` of the ranking
};

SelectJobResult run_select_job(const SelectJobOptions& opt, JobEvents& events);

}  // namespace air
