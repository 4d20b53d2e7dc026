#pragma once

// The scoring job (`air score`): a corpus in, one score record per corpus record out, in input
// order, written window by window so that a run cut short loses at most a window and can be
// resumed. Every front-end runs the same job through run_score_job.

#include "air/corpus_setup.h"
#include "air/dataset.h"
#include "air/influence.h"
#include "air/job_events.h"
#include "air/probe_job.h"
#include "air/runtime.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <atomic>
#include <string>

namespace air {

struct ScoreJobOptions {
  std::string model;  // model folder
  std::string data;   // corpus JSONL, or .jsonl.gz ("-": stdin)
  std::string out;    // score records JSONL ("-": stdout; a FIFO or device is written in place)
  // Heads file of a probe. Empty: the probe runs first with `probe` and its heads file is kept as
  // OUT.heads.json (not for a stream OUT).
  std::string heads;
  bool allow_heads_mismatch = false;  // use a heads file probed on another model
  ProbeSettings probe;
  CorpusSettings corpus;
  std::string rejects;  // rejected records (empty: OUT.rejects.jsonl; none for a stream OUT)
  std::string meta;     // run description and counts (empty: OUT.meta.json; none for a stream OUT)
  ScoreMode score = ScoreMode::kRelative;
  int64_t batch_tokens = 8192;     // padded tokens per forward batch
  bool emit_token_scores = false;  // per-token loss deltas in each record
  // Consecutive records batched together (counted from the corpus's start, so that batches and
  // scores depend on the data alone, never on time); a resumed run scores its last window again.
  int64_t window = 256;
  double flush_every = 30;  // seconds: the records of a window scored so far reach OUT at least this often
  double layer_progress_every = 1;  // seconds between progress reports inside one batch (counted by layers)
  // Continue OUT.partial left by a run cut short (or re-check a complete OUT): the records it
  // holds are checked against the corpus and not scored again.
  bool resume = false;
  Shard shard;
  RuntimeOptions runtime;
  // Set to a signal number (nonzero) from anywhere, e.g. a signal handler: the job reads no more
  // records, ends the batch in flight after the layer it is in (its records are scored again at
  // resume), writes the records scored before it, keeps OUT.partial (and its meta) for --resume,
  // and throws Interrupted with exit code 128 + that number. Null: never stops early.
  const std::atomic<int>* stop = nullptr;
  // The front-end's configuration (e.g. the TOML of the flags given, on the command line or in a
  // config file), kept in the meta as "config" so that the run can be repeated from it. Empty:
  // none kept.
  std::string config;
};

// Where a job writes: OUT and the files beside it.
struct ScorePaths {
  bool stream = false;  // OUT is stdout, a FIFO or a device: written in place, no sidecars
  std::string heads;    // where the probe's heads file is kept (empty: not kept)
  std::string meta;     // the run's description and counts (empty: not written)
  std::string rejects;  // rejected records (empty: not written)
};
ScorePaths score_paths(const ScoreJobOptions& opt);

struct ScoreJobResult {
  ScorePaths paths;
  // What OUT.meta.json holds: the run description, "counts" (records, scored, errors, skipped =
  // rejected, truncated, response_tokens, resumed, single_step), layouts, times.
  nlohmann::ordered_json meta;
  int64_t records = 0, scored = 0, errors = 0, rejected = 0, truncated = 0, resumed = 0;
  double seconds = 0;  // this run's wall time
  std::string resumed_from;  // the file the resumed records came from (empty: none)
};

// Runs the whole job: options and paths checked before the model loads, the heads read (or
// probed), records scored and written, the rejects file and the meta written last. Throws
// OptionError for options that cannot work, DataError when no record could be scored (the
// outputs are written first) or the corpus changed under a resume, CheckpointError, IoError.
ScoreJobResult run_score_job(const ScoreJobOptions& opt, JobEvents& events);

// "relative" / "absolute", as the meta writes them; parse_score_mode throws OptionError ("score")
// for another name.
std::string score_mode_name(ScoreMode mode);
ScoreMode parse_score_mode(const std::string& name);

}  // namespace air
