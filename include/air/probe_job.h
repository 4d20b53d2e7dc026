#pragma once

// The probe job (`air probe`, and the first step of a scoring job without heads): probe items
// from text, a corpus or a file, the probe run, the critical set, and the heads file.

#include "air/corpus_setup.h"
#include "air/heads_file.h"
#include "air/job_events.h"
#include "air/probe.h"
#include "air/runtime.h"

#include <nlohmann/json.hpp>

#include <string>

namespace air {

// How the heads are found: the probe items and the selection of the critical set.
struct ProbeSettings {
  ProbeOptions probe;       // kind, num_items, seed, span_tokens, all_items
  HeadSelection selection;  // delta, num_heads or min_score
  std::string probe_text;   // plain text (blank-line paragraphs) for the spans (empty: the corpus's)
  std::string probe_data;   // JSONL of ready items {ids, context, targets} (empty: built)
};

// Probes a loaded model: items from probe_data, else built from probe_text, else from the
// responses of the corpus `data` (read with `corpus`), else from random tokens (with a warning);
// then ranks the heads and selects the critical set. Returns the whole heads file; writes nothing.
// Throws OptionError for settings that cannot run on this model or memory, DataError for text
// or items that give no probe.
HeadsFile probe_heads(const LoadedModel& m, const ProbeSettings& s, const CorpusSetup& corpus,
                      const std::string& data, JobEvents& events);

// Whether a heads file (as JSON) was probed with these settings: "" when its probe (kind, items,
// seed, span) and selection match them, else the first difference ("selection.num_heads: 2,
// now 3"). Where its text came from is not compared.
std::string probe_settings_difference(const ProbeSettings& s, const nlohmann::json& heads_file);

struct ProbeJobOptions {
  std::string model;              // model folder
  std::string data;               // corpus whose responses give the probe text (may be empty)
  std::string out = "heads.json"; // heads file to write ("-": stdout)
  ProbeSettings probe;
  CorpusSettings corpus;          // how `data` is read
  RuntimeOptions runtime;
};

// The whole `air probe`: paths checked before the model loads (inputs readable, the output
// writable and over no input), the probe, the heads file written. Returns what was written.
HeadsFile run_probe_job(const ProbeJobOptions& opt, JobEvents& events);

}  // namespace air
