// A second front-end to the scoring job: scores a corpus through the library alone, as a Python
// binding, a service or a cluster driver would.
//
//   score_corpus MODEL CORPUS OUT [HEADS]
//
// writes OUT (one score record per corpus record) and its sidecars exactly as
// `air score --model MODEL --data CORPUS --out OUT [--heads HEADS]` does, with progress on stderr.

#include "air/error.h"
#include "air/score_job.h"

#include <cstdio>
#include <string>

namespace {

// Where the job's messages go: here, stderr, one line each.
class Printer : public air::JobEvents {
 public:
  void info(const std::string& message) override { std::fprintf(stderr, "%s\n", message.c_str()); }
  void warn(const std::string& message) override { std::fprintf(stderr, "warning: %s\n", message.c_str()); }
  void progress(const air::ScoreProgress& p) override {
    std::fprintf(stderr, "%lld records, %lld scored, %.0f tokens/s", static_cast<long long>(p.records),
                 static_cast<long long>(p.scored), p.tokens_per_second);
    if (p.eta_seconds >= 0) std::fprintf(stderr, ", %.0f%% read, about %.0f s left", 100 * p.fraction, p.eta_seconds);
    std::fprintf(stderr, "\n");
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4 || argc > 5) {
    std::fprintf(stderr, "usage: %s MODEL CORPUS OUT [HEADS]\n", argv[0]);
    return 2;
  }
  air::ScoreJobOptions opt;
  opt.model = argv[1];
  opt.data = argv[2];
  opt.out = argv[3];
  if (argc == 5) opt.heads = argv[4];
  Printer printer;
  try {
    const air::ScoreJobResult r = air::run_score_job(opt, printer);
    std::fprintf(stderr, "%lld of %lld records scored -> %s\n", static_cast<long long>(r.scored),
                 static_cast<long long>(r.records), opt.out.c_str());
    return 0;
  } catch (const air::OptionError& e) {
    std::fprintf(stderr, "error (option %s): %s\n", e.option().c_str(), e.what());
    return e.exit_code();
  } catch (const air::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return e.exit_code();
  }
}
