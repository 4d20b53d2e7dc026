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

// How a long job shows its progress on stderr.
struct ProgressSettings {
  double every = 30;   // seconds between plain progress lines (stderr not a terminal)
  bool quiet = false;  // no progress at all
};

// A job's events as log lines on stderr. Progress: on a terminal one line redrawn in place (a
// log message clears it and it comes back under it); elsewhere (a Slurm log, a pipe) a plain
// log line every `every` seconds.
class LogEvents : public JobEvents {
 public:
  explicit LogEvents(ProgressSettings progress = {});
  ~LogEvents() override;
  LogEvents(const LogEvents&) = delete;
  LogEvents& operator=(const LogEvents&) = delete;
  void info(const std::string& message) override;
  void warn(const std::string& message) override;
  void progress(const ScoreProgress& p) override;

 private:
  void clear_line();
  ProgressSettings settings_;
  bool tty_ = false;
  std::string line_;  // the live line on the terminal ("" when none is shown)
  double last_ = -1e300;  // when progress was last shown (seconds, steady clock)
};

// The progress line's text: "score: 120/1,000 records (12.0%) | 3,512 tok/s | 0:00:41 | ETA 0:05:01 | 2 errors".
std::string progress_text(const ScoreProgress& p);

// Adds --progress-every and --quiet to a subcommand.
void add_progress_flags(CLI::App& cmd, ProgressSettings& progress);

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
void register_compare(CLI::App& app);
void register_weights(CLI::App& app);
void register_report(CLI::App& app);

}  // namespace air::cli
