#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace air {

// One reasoning step of a response (AIR-METHOD.md §4).
struct Step {
  size_t begin = 0, end = 0;              // byte range within the response text
  int64_t token_begin = 0, token_end = 0; // response tokens [token_begin, token_end)
};

// Cuts responses into steps: at each delimiter match (the delimiter ends its step); each token
// belongs to the step holding its first byte; whitespace-only pieces join the step before
// (or, at the start, the one after); steps with no token are dropped; a step with fewer than
// min_step_tokens tokens is merged into the step before it (the first into the next).
// The steps cover every response token, in order.
class StepSplitter {
 public:
  // Throws UsageError for a bad regex or min_step_tokens < 1.
  StepSplitter(const std::string& delimiter_regex = "\\n\\s*\\n", int64_t min_step_tokens = 4);
  ~StepSplitter();
  StepSplitter(StepSplitter&&) noexcept;

  // token_starts: each response token's first byte, relative to the response start,
  // non-decreasing (a token that begins before the response counts from 0).
  std::vector<Step> split(std::string_view response, const std::vector<size_t>& token_starts) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace air
