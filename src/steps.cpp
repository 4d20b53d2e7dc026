#include "air/steps.h"

#include "air/error.h"
#include "tokenizer/regex.h"

#include <algorithm>

namespace air {

struct StepSplitter::Impl {
  tok::Regex re;
  int64_t min_tokens;
};

StepSplitter::StepSplitter(const std::string& delimiter, int64_t min_step_tokens) {
  if (min_step_tokens < 1) throw OptionError("min_step_tokens", option_name("min_step_tokens") + " must be at least 1");
  try {
    impl_ = std::make_unique<Impl>(Impl{tok::Regex(delimiter), min_step_tokens});
  } catch (const Error& e) {
    throw OptionError("step_delimiter", option_name("step_delimiter") + ": " + e.what());
  }
}

StepSplitter::~StepSplitter() = default;
StepSplitter::StepSplitter(StepSplitter&&) noexcept = default;

std::vector<Step> StepSplitter::split(std::string_view text,
                                      const std::vector<size_t>& starts) const {
  // 1. Byte pieces: each ends with its delimiter.
  std::vector<std::pair<size_t, size_t>> m;
  impl_->re.find_all(text, m, /*keep_empty=*/true);  // a lookahead alone cuts before what it sees
  std::vector<Step> pieces;
  size_t prev = 0;
  for (auto [b, e] : m) {
    (void)b;
    if (e > prev) pieces.push_back({prev, e, 0, 0});
    prev = e;
  }
  if (prev < text.size() || pieces.empty()) pieces.push_back({prev, text.size(), 0, 0});

  // 2. Whitespace-only pieces join their neighbour.
  auto blank = [&](const Step& s) {
    return text.substr(s.begin, s.end - s.begin).find_first_not_of(" \t\r\n\f\v") ==
           std::string_view::npos;
  };
  std::vector<Step> steps;
  for (const Step& p : pieces) {
    if (!steps.empty() && (blank(p) || blank(steps.back()))) steps.back().end = p.end;
    else steps.push_back(p);
  }

  // 3. Tokens to steps by their first byte.
  size_t k = 0;
  const int64_t n = static_cast<int64_t>(starts.size());
  for (size_t s = 0; s < steps.size(); ++s) {
    steps[s].token_begin = static_cast<int64_t>(k);
    const bool last = s + 1 == steps.size();
    while (static_cast<int64_t>(k) < n && (last || starts[k] < steps[s].end)) ++k;
    steps[s].token_end = static_cast<int64_t>(k);
  }

  // 4. Drop empty steps (their bytes join the previous one), then merge short ones.
  std::vector<Step> out;
  for (const Step& s : steps) {
    if (s.token_end == s.token_begin && !out.empty()) {
      out.back().end = s.end;
      continue;
    }
    if (!out.empty() && out.back().token_end == out.back().token_begin) {  // leading empty
      out.back() = {out.back().begin, s.end, s.token_begin, s.token_end};
      continue;
    }
    out.push_back(s);
  }
  auto tokens = [](const Step& s) { return s.token_end - s.token_begin; };
  for (size_t i = 0; i < out.size();) {
    if (out.size() > 1 && tokens(out[i]) < impl_->min_tokens) {
      if (i == 0) {
        out[1].begin = out[0].begin;
        out[1].token_begin = out[0].token_begin;
      } else {
        out[i - 1].end = out[i].end;
        out[i - 1].token_end = out[i].token_end;
      }
      out.erase(out.begin() + static_cast<long>(i));
      if (i > 0) --i;
      continue;
    }
    ++i;
  }
  if (!out.empty()) {
    out.front().begin = 0;
    out.back().end = text.size();
  }
  return out;
}

}  // namespace air
