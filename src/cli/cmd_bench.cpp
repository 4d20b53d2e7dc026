// `air bench`: measured throughput, printed as tables (benchmarks, not tests).

#include "air/bench.h"
#include "cli/bench.h"
#include "cli/cli.h"

#include <CLI/CLI.hpp>

#include <cstdio>

namespace air::cli {
namespace {

void print_tokenizer_bench(const TokenizerBenchOptions& opt, const TokenizerBenchResult& r) {
  std::printf("tokenizer %s (%s), data %s, one thread\n", opt.tokenizer.c_str(), r.kind.c_str(), opt.data.c_str());
  std::printf("%-6s %10s %10s %12s %10s %10s %12s\n", "pass", "texts", "bytes", "tokens", "seconds", "MB/s",
              "tokens/s");
  for (const auto& [name, s] : {std::pair{"first", r.first_seconds}, std::pair{"best", r.best_seconds}})
    std::printf("%-6s %10zu %10zu %12zu %10.3f %10.2f %12.0f\n", name, r.texts, r.bytes, r.tokens, s,
                r.bytes / s / 1e6, r.tokens / s);
}

}  // namespace

void register_bench(CLI::App& app) {
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks that print measured figures");
  bench->require_subcommand(1);
  auto topt = std::make_shared<TokenizerBenchOptions>();
  CLI::App* t = bench->add_subcommand("tokenizer", "Tokenizer throughput on a JSONL corpus");
  t->add_option("--tokenizer", topt->tokenizer, "model directory or tokenizer file")->required();
  t->add_option("--data", topt->data, "JSONL corpus")->required();
  t->add_option("--repeat", topt->repeat, "passes (best reported)")->capture_default_str();
  t->callback([topt] { print_tokenizer_bench(*topt, run_tokenizer_bench(*topt)); });
  register_score_bench(*bench);
}

}  // namespace air::cli
