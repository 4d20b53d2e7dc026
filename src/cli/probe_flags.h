#pragma once

// The probe's flags, shared by `air probe` and `air score`.

#include "air/probe_job.h"

#include <string>
#include <vector>

namespace CLI {
class App;
class Option;
}

namespace air::cli {

struct ProbeFlags : ProbeSettings {
  std::string kind = "repeat";        // --probe, parsed into probe.kind by probe_settings()
  std::vector<CLI::Option*> options;  // the flags, to tell which were given
};

void add_probe_flags(CLI::App& cmd, ProbeFlags& f);

// The library's settings for these flags.
ProbeSettings probe_settings(const ProbeFlags& f);

// The probe flags given on the command line ("--num-items, --seed"), "" when none.
std::string given_probe_flags(const ProbeFlags& f);

}  // namespace air::cli
