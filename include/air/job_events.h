#pragma once

// What a running job tells its front-end, instead of logging: messages as they arise, and the
// scoring's progress. A front-end overrides what it shows (the command line logs to stderr); the
// defaults ignore everything.

#include <cstdint>
#include <string>

namespace air {

// Where a job stands, told after each batch: a scoring job's records, or a probe's items.
struct ScoreProgress {
  std::string stage = "score";  // "score": records; "probe": probe items
  int64_t total = -1;           // records (of the shard) or items to do (-1: unknown, e.g. stdin)
  int64_t records = 0;          // corpus records done: scored, failed, rejected or resumed
  int64_t scored = 0;           // of them, scored
  int64_t errors = 0;           // of them, failed in scoring
  int64_t response_tokens = 0;  // response tokens of the scored records
  int64_t tokens = 0;           // tokens through the model in this run (prompt and response)
  double seconds = 0;           // since this run's scoring began
  double tokens_per_second = 0;
  double fraction = -1;         // of the corpus read (-1: unknown, e.g. stdin)
  double eta_seconds = -1;      // to the end at this run's rate (-1: unknown)
  bool done = false;            // the last report of this stage
};

class JobEvents {
 public:
  virtual ~JobEvents() = default;
  // What the job is doing ("no heads given: running the repeat probe first").
  virtual void info(const std::string& message) { (void)message; }
  // What the user should know: a result that may mislead, a setting that may not fit.
  virtual void warn(const std::string& message) { (void)message; }
  virtual void progress(const ScoreProgress& p) { (void)p; }
};

}  // namespace air
