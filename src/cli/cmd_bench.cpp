// `air bench`: measured throughput, printed as tables (benchmarks, not tests).

#include "air/error.h"
#include "air/tokenizer.h"
#include "cli/bench.h"
#include "cli/cli.h"
#include "cli/io.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>

namespace air::cli {
namespace {

struct TokenizerBenchOptions {
  std::string tokenizer;  // model directory or tokenizer file
  std::string data;       // JSONL corpus; every string field of a record is one text
  int repeat = 3;         // passes over the data; the best is reported
};

void run_tokenizer_bench(const TokenizerBenchOptions& opt) {
  const auto tok = load_tokenizer(opt.tokenizer);
  std::vector<std::string> texts;
  size_t bytes = 0;
  for_each_line(opt.data, [&](const std::string& line, int64_t n) {
    const nlohmann::json j = parse_json_line(line, opt.data + ":" + std::to_string(n));
    std::string text;
    for (const auto& [k, v] : j.items())
      if (v.is_string()) text += (text.empty() ? "" : "\n") + v.get<std::string>();
    bytes += text.size();
    texts.push_back(std::move(text));
  });
  if (opt.repeat < 1) throw UsageError("--repeat must be >= 1");
  // The first pass starts with an empty word cache (a fresh tokenizer); later passes are warm.
  double best = 1e30, first = 0;
  size_t tokens = 0;
  for (int r = 0; r < opt.repeat; ++r) {
    tokens = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (const auto& t : texts) tokens += tok->encode(t, false).ids.size();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r == 0) first = s;
    best = std::min(best, s);
  }
  std::printf("tokenizer %s (%s), data %s, one thread\n", opt.tokenizer.c_str(), tok->kind().c_str(),
              opt.data.c_str());
  std::printf("%-6s %10s %10s %12s %10s %10s %12s\n", "pass", "texts", "bytes", "tokens",
              "seconds", "MB/s", "tokens/s");
  std::printf("%-6s %10zu %10zu %12zu %10.3f %10.2f %12.0f\n", "first", texts.size(), bytes,
              tokens, first, bytes / first / 1e6, tokens / first);
  std::printf("%-6s %10zu %10zu %12zu %10.3f %10.2f %12.0f\n", "best", texts.size(), bytes,
              tokens, best, bytes / best / 1e6, tokens / best);
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
  t->callback([topt] { run_tokenizer_bench(*topt); });
  register_score_bench(*bench);
}

}  // namespace air::cli
