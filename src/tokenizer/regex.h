#pragma once

// A PCRE2 regular expression (UTF-8, Unicode properties, JIT when available), for
// HuggingFace pre-tokenizer and normalizer patterns such as \p{L}, (?i:...) and (?!\S).

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace air::tok {

class Regex {
 public:
  // Throws CheckpointError naming the pattern and PCRE2's message.
  explicit Regex(const std::string& pattern);
  ~Regex();
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;

  // Appends the [begin, end) byte ranges of all non-overlapping, non-empty matches in s
  // (valid UTF-8), left to right.
  // keep_empty: also list empty matches (a lookahead that marks a place), as (b, b).
  void find_all(std::string_view s, std::vector<std::pair<size_t, size_t>>& out, bool keep_empty = false) const;
  const std::string& pattern() const { return pattern_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string pattern_;
};

}  // namespace air::tok
