#pragma once

// Two score files of one corpus compared (`air compare`): two probes, two models, two dtypes.
// How far their rankings agree, how much of their top sets they share, and which records moved
// most between them.

#include "air/job_events.h"
#include "air/score_files.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace air {

// A record scored in both files.
struct ComparedRecord {
  std::string id;
  int64_t line = 0;
  double score_a = 0, score_b = 0;
  int64_t rank_a = 0, rank_b = 0;  // 1-based, by score (ties by corpus line)
};

struct Comparison {
  int64_t both = 0;            // records with a finite score in both files
  int64_t only_a = 0, only_b = 0;  // records scored (finitely) in one file only
  double spearman = 0;         // of the scores of the records in both
  int64_t top = 0;             // the size of each top set
  int64_t top_shared = 0;      // records in both top sets
  double top_overlap = 0;      // top_shared / top
  double top_jaccard = 0;      // top_shared / |union|
  std::vector<ComparedRecord> records;  // every record in both, in corpus-line order
  std::vector<size_t> moved;            // indices into records, the largest rank changes first
};

// Compares two sets of scores over the records they share (matched by the bytes of the corpus
// line, or by line and id in files without line hashes). The top sets hold `top_k` records, or
// top_ratio of the shared ones when top_k is 0; `moved` caps the records listed as moved.
Comparison compare_scores(const ScoreFiles& a, const ScoreFiles& b, int64_t top_k, double top_ratio, int64_t moved);

struct CompareJobOptions {
  std::vector<std::string> a, b;  // a score file each (or the shard outputs of one run)
  std::string out = "-";          // the comparison as JSON ("-": stdout)
  int64_t top_k = 0;              // the top sets' size ...
  double top_ratio = 0.1;         // ... or this fraction of the shared records (when top_k is 0)
  int64_t moved = 10;             // records listed as moved most
};

// The comparison as written: counts, spearman, top overlap and Jaccard, and the moved records.
nlohmann::ordered_json comparison_json(const Comparison& c, const CompareJobOptions& opt);

Comparison run_compare_job(const CompareJobOptions& opt, JobEvents& events);

}  // namespace air
