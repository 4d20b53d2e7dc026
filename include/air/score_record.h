#pragma once

// One line of a score output: a record's Attention Influence Scores, or why it has none. The one
// schema that writing, resuming and selecting read and write (docs/OUTPUTS.md lists the fields).

#include "air/dataset.h"
#include "air/influence.h"
#include "air/scorer.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace air {

struct ScoreRecord {
  std::string id;          // record_id() of the corpus line
  int64_t line = 0;        // 1-based corpus line
  std::string line_hash;   // line_hash() of it (empty in files written before it was kept)
  std::string error;       // non-empty: the record has no scores (why)
  bool rejected = false;   // with error: rejected before scoring (also in the rejects file)
  SampleInfluence influence;     // a scored record's scores and steps
  int64_t prompt_tokens = 0;     // tokens before the response
  bool truncated = false;        // cut at the length limit
  std::vector<float> token_deltas;  // reference minus base loss per response token (when kept)

  bool scored() const { return error.empty(); }
};

// The record of a scored (or failed) sample, and of a corpus line rejected before scoring.
ScoreRecord score_record(const Sample& sample, const ScoreResult& result);
ScoreRecord rejected_record(const Reject& reject);

// The output line (without its newline), fields in the documented order.
nlohmann::ordered_json to_json(const ScoreRecord& r);
// Reads one back. Throws DataError starting with `where` for a line that is not a score record:
// no integer "line", no "id", neither "air_score" nor "error", "rejected"/"truncated" not
// booleans, "n_tokens" not an integer (absent reads as 0).
ScoreRecord score_record_from_json(const nlohmann::json& j, const std::string& where);

}  // namespace air
