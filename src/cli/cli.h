#pragma once

#include "air/job_events.h"
#include "air/runtime.h"

#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace air::cli {

// Runs the `air` command line; returns the process exit code (0 ok, 2 usage, 3 bad data,
// 4 bad checkpoint, 5 output not writable, 1 anything else). Never exits.
int run(int argc, const char* const* argv);
// Same, from an argument list without the program name (for tests).
int run(const std::vector<std::string>& args);

// The flag that sets a library option ("max_length" -> "--max-length").
std::string flag_of(const std::string& option);

// A job's events as log lines on stderr, progress included.
class LogEvents : public JobEvents {
 public:
  void info(const std::string& message) override;
  void warn(const std::string& message) override;
  void progress(const ScoreProgress& p) override;
};

// Adds --device, --dtype and --threads to a subcommand.
void add_runtime_flags(CLI::App& cmd, RuntimeOptions& rt);

// Each command registers itself as a subcommand of `app`.
void register_inspect(CLI::App& app);
void register_loss(CLI::App& app);
void register_tokenize(CLI::App& app);
void register_render(CLI::App& app);
void register_bench(CLI::App& app);
void register_probe(CLI::App& app);
void register_score(CLI::App& app);
void register_select(CLI::App& app);

}  // namespace air::cli
