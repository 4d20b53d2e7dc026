#pragma once

// The head probe as the commands run it: flags, probe text sources, heads.json.

#include "air/probe.h"
#include "air/runtime.h"
#include "cli/corpus_flags.h"

#include <nlohmann/json.hpp>

#include <string>

namespace CLI {
class App;
class Option;
}

namespace air::cli {

struct ProbeFlags {
  std::string kind = "repeat";  // repeat | random-repeat | kv-retrieval | corpus
  std::string probe_text;       // plain text file for repeat / kv-retrieval spans
  std::string probe_data;       // JSONL of {"ids", "context", "targets"} items
  int64_t num_items = 32;
  uint64_t seed = 0;
  int64_t span_tokens = 48;
  bool all_items = false;
  double delta = 0.05;
  int64_t num_heads = 0;
  double min_score = -1;
  std::vector<CLI::Option*> options;  // the flags, to tell which were given
};

// The probe flags given on the command line ("--num-items, --seed"), "" when none.
std::string given_probe_flags(const ProbeFlags& f);

void add_probe_flags(CLI::App& cmd, ProbeFlags& f);

// Builds the probe items (text from probe_text, else from the corpus `data`, else random
// tokens with a warning), runs the probe, selects the critical set and writes heads.json to
// `out` ("-": stdout; empty: not written). Returns the selected heads.
HeadSet probe_and_write(const LoadedModel& m, const ProbeFlags& f, const CorpusSetup& corpus,
                        const std::string& data, const std::string& out);

// Whether a heads.json was written by probe_and_write with these flags: "" when its probe
// (kind, items, seed, span) and selection match them, else the first difference
// ("selection.num_heads: 2, now 3").
std::string probe_settings_difference(const ProbeFlags& f, const nlohmann::json& heads_file);

}  // namespace air::cli
