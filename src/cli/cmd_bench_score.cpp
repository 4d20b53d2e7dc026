#include "cli/bench.h"

#include <CLI/CLI.hpp>

namespace air::cli {
void register_score_bench(CLI::App&) {}
}  // namespace air::cli
