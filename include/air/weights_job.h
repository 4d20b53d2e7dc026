#pragma once

// Step weights for a trainer (`air weights`): the selected records in a student model's own
// tokenization and chat template, with per-token loss weights from the step weights
// (AIR-METHOD §5). The student may tokenize and render differently from the scoring model: the
// weights follow the bytes of the response.

#include "air/job_events.h"
#include "air/score_files.h"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace air {

struct WeightsJobOptions {
  std::string data;                 // the records: the selection, or any subset of the scored corpus
  std::vector<std::string> scores;  // their score files
  std::string tokenizer;            // the student: a model folder, tokenizer.json or tokenizer.model
  std::string tmpl = "auto";        // the student's chat template (auto: from its folder's tokenizer_config.json)
  std::string separator = "\n\n";   // the plain template's separator
  std::string out = "-";            // JSONL {"id", "input_ids", "labels", "loss_weights"}
  int64_t max_length = 0;           // tokens per record (0: no limit); a longer one is left out with a warning
  bool allow_mixed = false;         // score files from runs that differ
  RecordFields fields;              // for score files without a meta
};

struct WeightsJobResult {
  int64_t records = 0;  // records of data
  int64_t written = 0;
  int64_t skipped = 0;  // without a usable score, or not renderable for the student (each warned of)
  int64_t response_tokens = 0;  // weighted tokens written
};

// The loss weight of each token from the step weights: a token's weight is the mean of the step
// weights over its bytes (steps: byte ranges of the response with their weights), then all are
// scaled to mean 1. `spans` are the tokens' byte ranges in the response (clipped to it); a token
// holding no byte of any step weighs 1 before scaling.
std::vector<double> token_weights(const std::vector<std::pair<size_t, size_t>>& spans,
                                  const std::vector<ScoredStep>& steps);
// The same where a token's bytes lie in several ranges of the scored response (a student
// template that writes other markers between the reasoning and the answer).
std::vector<double> token_weights(const std::vector<std::vector<std::pair<size_t, size_t>>>& spans,
                                  const std::vector<ScoredStep>& steps);

// Where each byte of the student's response (student.response_begin ...) lies in the scored
// response (bytes from scored.response_begin), through the texts both rendered: reasoning to
// reasoning, content to content, each tool call to itself; -1 for the template's own bytes and
// text that the other rendering left out (trimmed whitespace).
std::vector<int64_t> response_byte_map(const Rendered& scored, const Rendered& student);

WeightsJobResult run_weights_job(const WeightsJobOptions& opt, JobEvents& events);

}  // namespace air
