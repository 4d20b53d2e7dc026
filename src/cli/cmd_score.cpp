// `air score`: Attention Influence Scores of every record of a corpus, as JSONL.

#include "air/error.h"
#include "air/score_job.h"
#include "cli/cli.h"
#include "cli/config_file.h"
#include "cli/corpus_flags.h"
#include "cli/probe_flags.h"

#include <CLI/CLI.hpp>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <atomic>

namespace air::cli {
namespace {

std::atomic<int> g_signal{0};

extern "C" void on_stop_signal(int sig) { g_signal.store(sig); }

// SIGTERM (Slurm's preemption and time limit), SIGINT and SIGUSR1 ask the job to stop after the
// records in flight; the handlers go back to the default after the first signal, so a second one
// ends the process at once. Restored when the job ends.
class StopOnSignals {
 public:
  StopOnSignals() {
    g_signal.store(0);
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    for (int i = 0; i < 3; ++i) sigaction(kSignals[i], &sa, &old_[i]);
  }
  ~StopOnSignals() {
    for (int i = 0; i < 3; ++i) sigaction(kSignals[i], &old_[i], nullptr);
  }
  StopOnSignals(const StopOnSignals&) = delete;
  StopOnSignals& operator=(const StopOnSignals&) = delete;
  const std::atomic<int>& stop = g_signal;

 private:
  static constexpr int kSignals[3] = {SIGTERM, SIGINT, SIGUSR1};
  struct sigaction old_[3];
};

// The flags that are not options of the job as they are: parsed into it by job_options().
struct ScoreFlags {
  std::string score = "relative";
  std::string shard = "0/1";
  ProbeFlags probe;
};

ScoreJobOptions job_options(const ScoreJobOptions& given, const ScoreFlags& flags) {
  if (!given.heads.empty() && !given_probe_flags(flags.probe).empty())
    throw UsageError(given_probe_flags(flags.probe) + ": probe settings, but --heads " + given.heads +
                     " gives the heads, so no probe runs; leave them out, or leave out --heads to probe with them");
  ScoreJobOptions opt = given;
  opt.score = parse_score_mode(flags.score);
  opt.shard = Shard::parse(flags.shard);
  opt.probe = probe_settings(flags.probe);
  return opt;
}

void print_summary(const ScoreJobOptions& opt, const ScoreJobResult& r) {
  const std::string rejects = r.rejected == 0 || r.paths.rejects.empty() ? "" : " (" + r.paths.rejects + ")";
  const std::string resumed = r.resumed == 0 ? "" : ", " + std::to_string(r.resumed) + " of them from " + r.resumed_from;
  spdlog::info("{} records: {} scored, {} errors, {} rejected{}, {} truncated{}; {:.1f} s -> {}", r.records, r.scored,
               r.errors, r.rejected, rejects, r.truncated, resumed, r.seconds, opt.out);
}

void add_score_flags(CLI::App& cmd, ScoreJobOptions& opt, ScoreFlags& flags) {
  cmd.add_option("--model", opt.model, "HuggingFace model directory")->required()->group("Model");
  cmd.add_option("--data", opt.data, "corpus JSONL, or .jsonl.gz (- = stdin)")->required()->group("Input");
  cmd.add_option("--out", opt.out, "scores JSONL")->required()->group("Output");
  cmd.add_option("--heads", opt.heads, "heads.json from `air probe` (default: probe first)")->group("Probe (without --heads)");
  cmd.add_option("--meta", opt.meta,
                 "run description and counts (default: OUT.meta.json; none when OUT is stdout or a stream)")
      ->group("Output");
  cmd.add_flag("--allow-heads-mismatch", opt.allow_heads_mismatch, "use a heads file probed on another model")
      ->group("Probe (without --heads)");
  cmd.add_option("--score", flags.score, "relative or absolute")->capture_default_str()->group("Scoring");
  cmd.add_option("--batch-tokens", opt.batch_tokens, "padded tokens per forward batch")
      ->capture_default_str()
      ->group("Scoring");
  cmd.add_option("--window", opt.window, "consecutive records batched together (by count, never by time: reruns and resumes give the same bytes)")->capture_default_str()->group("Scoring");
  cmd.add_option("--flush-every", opt.flush_every,
                 "seconds: scored records are written at least this often")
      ->capture_default_str()
      ->group("Output");
  cmd.add_flag("--emit-token-scores", opt.emit_token_scores, "add per-token loss deltas")->group("Output");
  cmd.add_option("--shard", flags.shard,
                 "I/N: score every N-th record from the I-th (0-based), for N processes or GPUs; "
                 "`air select --scores` takes their outputs together")
      ->capture_default_str()
      ->group("Input");
  cmd.add_flag("--resume", opt.resume,
               "continue OUT.partial left by a run cut short (or re-check a complete OUT), "
               "skipping the records it holds")
      ->group("Output");
}

}  // namespace

void register_score(CLI::App& app) {
  auto opt = std::make_shared<ScoreJobOptions>();
  auto flags = std::make_shared<ScoreFlags>();
  CLI::App* cmd = app.add_subcommand("score", "Attention Influence Scores of a corpus");
  add_score_flags(*cmd, *opt, *flags);
  add_probe_flags(*cmd, flags->probe);
  add_corpus_flags(*cmd, opt->corpus, &opt->rejects);
  add_runtime_flags(*cmd, opt->runtime);
  auto progress = std::make_shared<ProgressSettings>();
  add_progress_flags(*cmd, *progress);
  cmd->callback([cmd, opt, flags, progress] {
    ScoreJobOptions job = job_options(*opt, *flags);
    // The flags given (on the command line or in a --config file): with this version's defaults
    // for the rest, the run again.
    job.config = given_flags_toml(*cmd);
    LogEvents events(*progress);
    const StopOnSignals signals;
    job.stop = &signals.stop;
    print_summary(job, run_score_job(job, events));
  });
}

}  // namespace air::cli
