#pragma once

// The benchmarks (`air bench`): measured figures, not pass/fail.
//
// The scoring benchmark (`air bench score`): the scoring path against the straightforward method
// (each sample alone, two independent full forward passes with materialised attention
// probabilities and full logits), on random-weight models of realistic shapes, in one process,
// with the machine's plain matmul rate measured alongside as the yardstick.

#include "air/job_events.h"
#include "air/runtime.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace air {

struct ScoreBenchOptions {
  std::string shape = "small";          // small | qwen2.5-0.5b | qwen2.5-1.5b | qwen3-moe-small
  std::string workload = "short";       // short | long
  int64_t samples = 256;                // short workload: samples
  std::string lengths_from;             // JSONL corpus whose token lengths the short workload uses
  std::string tokenizer = "models/stories260K";  // tokenizer for those lengths
  std::vector<int64_t> long_lengths = {1024, 4096, 16384};
  bool baseline = true;                 // also run the straightforward method (and, for bf16 on a CPU, both in fp32)
  int64_t rounds = 2;                   // methods alternate: short = slices, long = repeats
  int64_t batch_tokens = 8192;
  bool explicit_attention = false;      // air path: the explicit attention path even where libtorch's fused kernel applies
  uint64_t seed = 0;
  std::string json_out;                 // also write the results as JSON
  RuntimeOptions runtime;
};

// What the benchmark runs on.
struct ScoreBenchSetup {
  std::string shape, device, dtype;
  int threads = 0;
  int64_t critical_heads = 0, rounds = 0, weights_bytes = 0;
  int64_t matmul_rows = 0, hidden = 0, intermediate = 0;  // the plain matmul [rows x hidden] x [hidden x intermediate]
  double matmul_gflops = 0;
  double chip_gflops = 0;  // a GPU's large square matmul (0 on the CPU)
  // MoE shapes: shares of a forward over moe_tokens tokens spent in the sparse blocks (router,
  // grouping and experts) and in the experts' matmuls alone (-1: a dense shape).
  double moe_block_share = -1, expert_matmul_share = -1;
  int64_t moe_tokens = 0;
};

// One method on one workload.
struct ScoreBenchRow {
  std::string workload, method;  // method: straightforward | air
  std::string dtype;
  std::string not_run;           // why the method did not run (then nothing below is measured)
  int64_t rounds = 0, tokens = 0;
  double seconds = 0, tokens_per_s = 0;
  double gflops = 0;             // the straightforward method's work over this method's time
  double executed_gflops = 0;    // the work this method did
  double matmul_gflops = 0, chip_gflops = 0;
  int64_t peak_rss_bytes = -1;
  bool compared = false;         // air's row, with the straightforward method's scores to compare
  double max_score_diff = 0, ratio = 0;  // against the straightforward method in the same dtype
  // bf16 on a CPU, air's bf16 row: its speed over the straightforward method's in fp32, and how
  // its ranking agrees with air's fp32 scores (NaN: not measured): Spearman of the sample and the
  // step scores, and the share of the fp32 top 10% of samples also in the bf16 top 10%.
  double ratio_fp32 = 0;
  double spearman = std::nan(""), step_spearman = std::nan(""), top_overlap = std::nan("");
  // What bounds that agreement: the spread of air's fp32 sample scores (their standard
  // deviation over the samples) and that of bf16's deviation from them. Where the deviation is
  // not small against the spread, the order among the samples is mostly rounding.
  double score_spread = std::nan(""), bf16_deviation = std::nan("");
};

class ScoreBenchEvents : public JobEvents {
 public:
  virtual void started(const ScoreBenchSetup& s) { (void)s; }
  virtual void row(const ScoreBenchRow& r) { (void)r; }
};

// Runs the benchmark; returns (and, with json_out, writes) {shape, device, dtype, threads,
// rounds, weights_bytes, rows}. Warns when the two methods' scores differ by more than 1e-4 in fp32.
nlohmann::json run_score_bench(const ScoreBenchOptions& opt, ScoreBenchEvents& events);

// The tokenizer benchmark (`air bench tokenizer`): every string field of each record of a JSONL
// corpus is one text, encoded `repeat` times in one thread; the first pass starts with an empty
// word cache (a fresh tokenizer), later passes are warm.
struct TokenizerBenchOptions {
  std::string tokenizer;  // model folder or tokenizer file
  std::string data;       // JSONL corpus
  int repeat = 3;         // passes over the data; the best is reported
};
struct TokenizerBenchResult {
  std::string kind;  // the tokenizer's kind
  size_t texts = 0, bytes = 0, tokens = 0;
  double first_seconds = 0, best_seconds = 0;
};
TokenizerBenchResult run_tokenizer_bench(const TokenizerBenchOptions& opt);

}  // namespace air
