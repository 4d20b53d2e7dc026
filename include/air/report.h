#pragma once

// The report of a scoring run (`air report`): one self-contained HTML file (inline SVG and CSS,
// no script, nothing fetched) that shows the run, the score distribution with the selection
// threshold, the score against length and the loss and entropy baselines, the top and bottom
// records with every step shaded by its score, the probe's head map, and, given several runs,
// how far their rankings agree. Plots are binned, so that the file stays small on any corpus.

#include "air/job_events.h"

#include <cstdint>
#include <string>
#include <vector>

namespace air {

struct ReportOptions {
  // Score files. Files whose metas agree but for the shard are one run (its shards); files of
  // other runs (another probe, model or dtype) are compared with the first run.
  std::vector<std::string> scores;
  std::string data;      // the scored corpus, for the records' text (empty: scores only)
  std::string heads;     // heads.json (empty: the heads file the first run's meta names, if it exists)
  int64_t top_k = 0;     // the selection whose threshold is marked ...
  double top_ratio = 0;  // ... or this fraction (neither: 10%)
  int64_t samples = 10;  // top and bottom records shown
  std::string out;       // the HTML file
};

struct ReportResult {
  int64_t runs = 0;
  int64_t records = 0;   // score lines of the first run
  int64_t scored = 0;    // with a finite score
  int64_t shown = 0;     // records shown with their text
  int64_t bytes = 0;     // of the HTML
  std::vector<std::string> plots;  // the plots written, by title
};

ReportResult run_report_job(const ReportOptions& opt, JobEvents& events);

}  // namespace air
