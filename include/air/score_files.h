#pragma once

// Score files read back: the records of one `air score` output or of the outputs of its shards,
// their run descriptions (OUT.meta.json), and the corpus lines they were scored from, matched by
// the bytes of each line. What select, compare, weights and report read.

#include "air/chat_template.h"
#include "air/corpus.h"
#include "air/job_events.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace air {

struct ScoredStep {
  size_t begin = 0, end = 0;  // byte range in the response text as scored
  int64_t tokens = 0;
  double score = 0;
  double weight = 1;
};

// One line of a score file.
struct ScoreEntry {
  int64_t line = 0;  // the corpus line it was scored from
  std::string id;
  std::string hash;     // line_hash of the scored line (empty in files from before it was kept)
  bool ok = false;      // scored, with a finite score
  double score = 0;     // air_score
  double loss_base = 0, loss_ref = 0, entropy = 0;
  int64_t tokens = 0;         // response tokens
  int64_t prompt_tokens = 0;
  bool truncated = false;     // scored cut at the length limit (its steps cover the part scored)
  std::vector<ScoredStep> steps;
  std::string steps_problem;  // why the steps cannot weight a trainer's loss ("" when they can)
};

struct ScoreFiles {
  std::vector<std::string> paths;
  std::string name;  // the paths, joined for messages
  std::vector<ScoreEntry> entries;
  std::unordered_map<std::string, std::vector<size_t>> by_hash;  // line_hash -> entries
  std::map<int64_t, size_t> by_line;                              // entries without a hash, by corpus line
};

// Reads the score records of every file (a partial output's torn last line is left out, with a
// warning). A corpus line scored twice, in one file or in two, is a DataError; a file that is a
// meta or a heads file instead is an OptionError ("scores") that says so.
ScoreFiles read_score_files(const std::vector<std::string>& paths, JobEvents& events);

// The run description beside a score file: FILE.meta.json, or FILE.json for FILE.partial ("" if none).
std::string score_meta_path(const std::string& scores);

// The metas of the score files (a file without one is warned of). Metas that differ in model,
// heads or scoring options are an OptionError ("allow_mixed") unless allow_mixed (then a warning).
std::vector<std::pair<std::string, nlohmann::json>> read_score_metas(const std::vector<std::string>& paths,
                                                                      bool allow_mixed, JobEvents& events);

// A corpus line as scoring read it.
struct CorpusLine {
  int64_t line = 0;
  std::string id;
  std::string raw;
  std::string hash;  // line_hash()
};
std::vector<CorpusLine> read_corpus_lines(const std::string& path, const std::string& id_field);

// A line of `air select --annotate` as it was scored: `before` is the line without the air_score,
// air_step_weights, air_line and air_line_hash appended to it, `line` its corpus line as scored
// (0 when not given). False when the line does not end so.
bool strip_annotation(const std::string& raw, std::string& before, int64_t& line);

// The score of a corpus line: the record scored from the same bytes (a subset or a reordering of
// the scored corpus is matched), or, for score files without line hashes, the record of the same
// line and id. Null when none.
const ScoreEntry* find_score(const ScoreFiles& sf, const CorpusLine& cl);

// How records are read for score files without a meta (with one, the meta's settings hold and a
// value given here must agree with them). id_field empty: as scored, else "id".
struct RecordFields {
  std::string id_field, prompt_field;
  std::vector<std::string> response_fields;
};

// How the records were scored: layout, fields and template from the first meta.
struct ScoringSettings {
  CorpusOptions corpus;
  ChatTemplate tmpl;
  bool template_known = false;  // tmpl is the one scoring used (from the meta), not a default
};
ScoringSettings scoring_settings(const std::vector<std::pair<std::string, nlohmann::json>>& metas,
                                 const RecordFields& given, JobEvents& events);

// The record's response text as scored, in which its steps' byte offsets lie ("" when it cannot
// be read).
std::string scored_response(const ScoringSettings& scoring, const CorpusLine& cl);

// The corpus and its scores, matched line by line.
struct MatchedCorpus {
  std::vector<CorpusLine> lines;
  std::vector<const ScoreEntry*> score_of;  // per line (null: none)
  std::vector<size_t> candidates;           // lines with a finite score, in input order
  int64_t errors = 0, missing = 0;          // lines whose record failed; lines without a score
};
// DataError when no line has a score (another corpus), or some have none and !allow_partial.
// by_id: lines are matched to scores by their id instead of their bytes (a corpus written again
// by pandas, jq or json.dumps keeps its ids but not its bytes); ids must then be unique.
MatchedCorpus match_scores(const std::string& data, const ScoreFiles& scores, const std::string& id_field,
                           bool allow_partial, JobEvents& events, bool by_id = false);

// Spearman's rank correlation of paired values (average ranks for ties); NaN under 2 pairs or
// when either side is constant.
double spearman(const std::vector<double>& a, const std::vector<double>& b);

// At most `max_bytes` of s, cut on a character boundary ("..." marks a cut).
std::string clip_utf8(const std::string& s, size_t max_bytes);

}  // namespace air
