#pragma once

// The render job (`air render`): how each record is rendered, tokenized and cut into steps, as
// JSONL, without a model run.

#include "air/corpus_setup.h"
#include "air/job_events.h"

#include <cstdint>
#include <string>

namespace air {

struct RenderJobOptions {
  std::string tokenizer;  // model folder or tokenizer file
  std::string data;       // corpus JSONL ("-": stdin)
  std::string out = "-";  // one line per good record ("-": stdout)
  bool tokens = false;    // also write ids and byte offsets
  CorpusSettings corpus;
  std::string rejects;    // empty: OUT.rejects.jsonl (none for a stream OUT)
};

struct RenderJobResult {
  int64_t records = 0, rendered = 0, truncated = 0, rejected = 0;
  std::string rejects;  // where the rejects went (empty: nowhere)
};

RenderJobResult run_render_job(const RenderJobOptions& opt, JobEvents& events);

}  // namespace air
