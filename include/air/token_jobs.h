#pragma once

// The jobs over token ids (`air tokenize`, `air loss`): a tokenizer's ids for texts, and a
// model's per-token next-token losses for id sequences, plain or with heads made uniform.

#include "air/job_events.h"
#include "air/runtime.h"

#include <cstdint>
#include <string>

namespace air {

struct TokenizeJobOptions {
  std::string tokenizer;  // model folder or tokenizer file
  std::string input = "-";  // JSONL of strings or {"text": ...} ("-": stdin)
  std::string out = "-";    // {"ids"[, "offsets"]} a line ("-": stdout)
  bool special = false;     // add the post-processor's special tokens (BOS)
  bool offsets = false;     // also write byte offsets
};
// Returns the lines written.
int64_t run_tokenize_job(const TokenizeJobOptions& opt, JobEvents& events);

struct LossJobOptions {
  std::string model;            // model folder
  std::string input;            // JSONL of {"ids": [...]} ("-": stdin)
  std::string out = "-";        // JSONL of {"per_token_loss": [...]} ("-": stdout)
  std::string mask_heads;       // "L:H,..." made uniform (empty: the plain model)
  int64_t batch_tokens = 8192;  // padded tokens per forward batch
  RuntimeOptions runtime;
};
// Returns the lines written. A loss that is not finite is a DataError naming the line.
int64_t run_loss_job(const LossJobOptions& opt, JobEvents& events);

// Shortest decimal that reads back as the same float ("1.25", "-0.0034").
std::string format_float(float v);

}  // namespace air
