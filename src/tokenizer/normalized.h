#pragma once

// Text under normalization and pre-tokenization, with each byte's origin in the input.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace air::tok {

using Span = std::pair<uint32_t, uint32_t>;  // [begin, end) in the original input

// Bytes of the UTF-8 sequence that starts with byte c (1 for a stray continuation byte).
inline size_t utf8_len(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c >> 5) == 0x6) return 2;
  if ((c >> 4) == 0xE) return 3;
  if ((c >> 3) == 0x1E) return 4;
  return 1;
}

// A token found in a piece of normalized text.
struct PieceToken {
  int32_t id;
  uint32_t begin, end;  // byte range within the piece
};

struct Normalized {
  std::string text;
  // Per byte of `text`: its original range. Empty = identity, byte i <- [base + i, base + i + 1).
  std::vector<Span> align;
  uint32_t base = 0;

  static Normalized identity(std::string_view s, uint32_t base);
  bool is_identity() const { return align.empty(); }
  Span origin(size_t i) const {
    return align.empty() ? Span{base + static_cast<uint32_t>(i), base + static_cast<uint32_t>(i) + 1}
                         : align[i];
  }
  // Original range of text bytes [b, e).
  Span origin(size_t b, size_t e) const;
  // The bytes [b, e) as their own Normalized.
  Normalized slice(size_t b, size_t e) const;
  // Materialises the alignment (before an edit that is not the identity).
  void make_explicit();
};

// Builds a Normalized piece by piece.
class NormalizedBuilder {
 public:
  // Appends src's bytes [b, e) unchanged.
  void copy(const Normalized& src, size_t b, size_t e);
  // Appends `bytes` replacing src's [b, e): the first byte takes the whole original range,
  // the others an empty range at its end, so that ranges never overlap.
  void replace(const Normalized& src, size_t b, size_t e, std::string_view bytes);
  // Appends `bytes` with an empty original range at `at`.
  void insert(std::string_view bytes, uint32_t at);
  Normalized take() { return std::move(out_); }

 private:
  Normalized out_{std::string(), {}, 0};
  bool started_ = false;
};

}  // namespace air::tok
