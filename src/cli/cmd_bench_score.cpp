// `air bench score`: the scoring path against the straightforward method, as a table on stdout.

#include "air/bench.h"
#include "cli/bench.h"
#include "cli/cli.h"

#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>

namespace air::cli {
namespace {

// The table, a row as each method finishes.
class BenchTable : public ScoreBenchEvents {
 public:
  void warn(const std::string& message) override { LogEvents().warn(message); }
  void started(const ScoreBenchSetup& s) override {
    std::printf("model %s (random weights, %.0f MB), device %s, dtype %s, threads %d, critical heads %lld, rounds %lld\n",
                s.shape.c_str(), s.weights_bytes / 1e6, s.device.c_str(), s.dtype.c_str(), s.threads,
                static_cast<long long>(s.critical_heads), static_cast<long long>(s.rounds));
    std::printf("plain matmul [%lld x %lld] x [%lld x %lld]: %.1f GFLOP/s\n", static_cast<long long>(s.matmul_rows),
                static_cast<long long>(s.hidden), static_cast<long long>(s.hidden),
                static_cast<long long>(s.intermediate), s.matmul_gflops);
    if (s.chip_gflops > 0) std::printf("chip matmul [8192 x 8192] x [8192 x 8192]: %.1f GFLOP/s\n", s.chip_gflops);
    if (s.moe_block_share >= 0)
      std::printf("a forward over %lld tokens: %.0f%% in the MoE blocks, %.0f%% in the experts' matmuls\n",
                  static_cast<long long>(s.moe_tokens), 100 * s.moe_block_share, 100 * s.expert_matmul_share);
    std::printf("%-18s %-21s %10s %9s %10s %9s %10s %8s %12s %9s\n", "workload", "method", "tokens", "seconds",
                "tokens/s", "GFLOP/s", "of matmul", "executed", "peak RSS MB", "max |d|");
  }
  void row(const ScoreBenchRow& r) override {
    const std::string method = r.method + " " + r.dtype;
    if (!r.not_run.empty()) {
      std::printf("%-18s %-21s %s\n", r.workload.c_str(), method.c_str(), r.not_run.c_str());
      return;
    }
    std::printf("%-18s %-21s %10lld %9.2f %10.1f %9.1f %9.0f%% %7.0f%% %12.0f", r.workload.c_str(), method.c_str(),
                static_cast<long long>(r.tokens), r.seconds, r.tokens_per_s, r.gflops, 100 * r.gflops / r.matmul_gflops,
                100 * r.executed_gflops / r.matmul_gflops, r.peak_rss_bytes / 1e6);
    if (r.compared) std::printf(" %9.1e  ratio %.2fx", r.max_score_diff, r.ratio);
    if (r.chip_gflops > 0) std::printf("  %.1f%% of chip", 100 * r.gflops / r.chip_gflops);
    if (r.ratio_fp32 > 0) std::printf("  %.2fx straightforward fp32", r.ratio_fp32);
    std::printf("\n");
    if (!std::isnan(r.spearman))
      std::printf("%-18s   ranking against air fp32: sample Spearman %.4f, step Spearman %.4f, top-10%% overlap %.3f\n", "",
                  r.spearman, r.step_spearman, r.top_overlap);
    if (!std::isnan(r.score_spread))
      std::printf("%-18s   fp32 sample scores spread (sd) %.2e, bf16 deviation from them (sd) %.2e: ratio %.2f\n", "",
                  r.score_spread, r.bf16_deviation, r.bf16_deviation / r.score_spread);
    std::fflush(stdout);
  }
};

}  // namespace

void register_score_bench(CLI::App& bench) {
  auto opt = std::make_shared<ScoreBenchOptions>();
  CLI::App* b = bench.add_subcommand("score", "air score's path against the straightforward method");
  b->add_option("--shape", opt->shape, "small, qwen2.5-0.5b, qwen2.5-1.5b, qwen2.5-7b or qwen3-moe-small")->capture_default_str();
  b->add_option("--workload", opt->workload, "short (many 100-400 token samples) or long")->capture_default_str();
  b->add_option("--samples", opt->samples, "short workload: samples")->capture_default_str();
  b->add_option("--lengths-from", opt->lengths_from, "short workload: take token lengths from this JSONL corpus");
  b->add_option("--tokenizer", opt->tokenizer, "tokenizer for --lengths-from")->capture_default_str();
  b->add_option("--lengths", opt->long_lengths, "long workload: sequence lengths");
  b->add_flag("--no-baseline{false}", opt->baseline, "skip the straightforward method");
  b->add_option("--rounds", opt->rounds,
                "the methods alternate in this many rounds: slices of the short workload, repeats of a long sample")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1000}));
  b->add_option("--batch-tokens", opt->batch_tokens, "air path: padded tokens per batch")->capture_default_str();
  b->add_flag("--explicit-attention", opt->explicit_attention,
              "air path: attention on the explicit path even where libtorch's fused kernel applies (2.1 and later)");
  b->add_option("--seed", opt->seed, "weights and inputs seed")->capture_default_str();
  b->add_option("--json", opt->json_out, "also write the results as JSON");
  add_runtime_flags(*b, opt->runtime);
  b->callback([opt] {
    BenchTable table;
    run_score_bench(*opt, table);
  });
}

}  // namespace air::cli
