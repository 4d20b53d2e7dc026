#pragma once

namespace CLI {
class App;
}

namespace air::cli {
// `air bench score`: the scoring path against the straightforward method.
void register_score_bench(CLI::App& bench);
}  // namespace air::cli
