#include "tokenizer/normalized.h"

namespace air::tok {

Normalized Normalized::identity(std::string_view s, uint32_t base) {
  return Normalized{std::string(s), {}, base};
}

Span Normalized::origin(size_t b, size_t e) const {
  if (b >= e) {
    const uint32_t at = b < text.size() ? origin(b).first
                        : text.empty()  ? base
                                        : origin(text.size() - 1).second;
    return {at, at};
  }
  if (align.empty()) return {base + static_cast<uint32_t>(b), base + static_cast<uint32_t>(e)};
  uint32_t lo = align[b].first, hi = align[b].second;
  for (size_t i = b + 1; i < e; ++i) {
    lo = std::min(lo, align[i].first);
    hi = std::max(hi, align[i].second);
  }
  return {lo, hi};
}

Normalized Normalized::slice(size_t b, size_t e) const {
  if (align.empty()) return identity(std::string_view(text).substr(b, e - b), base + b);
  return Normalized{text.substr(b, e - b),
                    std::vector<Span>(align.begin() + b, align.begin() + e), 0};
}

void Normalized::make_explicit() {
  if (!align.empty() || text.empty()) return;
  // Built aside: origin() reads align once it is non-empty.
  std::vector<Span> spans(text.size());
  for (size_t i = 0; i < text.size(); ++i) spans[i] = origin(i);
  align = std::move(spans);
}

void NormalizedBuilder::copy(const Normalized& src, size_t b, size_t e) {
  if (b >= e) return;
  if (!started_ && src.is_identity()) {
    // Stay implicit while everything is a contiguous identity copy.
    out_.text.assign(src.text, b, e - b);
    out_.base = src.base + static_cast<uint32_t>(b);
    started_ = true;
    return;
  }
  if (out_.is_identity() && started_ && src.is_identity() &&
      out_.base + out_.text.size() == src.base + b) {
    out_.text.append(src.text, b, e - b);
    return;
  }
  out_.make_explicit();
  started_ = true;
  out_.text.append(src.text, b, e - b);
  for (size_t i = b; i < e; ++i) out_.align.push_back(src.origin(i));
}

void NormalizedBuilder::replace(const Normalized& src, size_t b, size_t e,
                                std::string_view bytes) {
  const Span whole = src.origin(b, e);
  out_.make_explicit();
  started_ = true;
  for (size_t i = 0; i < bytes.size(); ++i) {
    out_.text.push_back(bytes[i]);
    out_.align.push_back(i == 0 ? whole : Span{whole.second, whole.second});
  }
  if (out_.text.empty()) out_.base = whole.second;
}

void NormalizedBuilder::insert(std::string_view bytes, uint32_t at) {
  out_.make_explicit();
  started_ = true;
  for (char c : bytes) {
    out_.text.push_back(c);
    out_.align.push_back({at, at});
  }
}

}  // namespace air::tok
