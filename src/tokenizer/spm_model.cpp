#include "tokenizer/spm_model.h"

#include "air/error.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>
#include <queue>

namespace air::tok {
namespace {

const std::string kSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space

// Minimal protobuf wire-format reader.
class Wire {
 public:
  Wire(std::string_view buf, const std::string& where) : buf_(buf), where_(where) {}
  bool done() const { return pos_ >= buf_.size(); }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= buf_.size()) fail("truncated varint");
      const uint8_t b = static_cast<uint8_t>(buf_[pos_++]);
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    fail("varint too long");
  }
  // Reads a tag; returns (field, wire type).
  std::pair<uint32_t, uint32_t> tag() {
    const uint64_t t = varint();
    return {static_cast<uint32_t>(t >> 3), static_cast<uint32_t>(t & 7)};
  }
  std::string_view bytes() {
    const uint64_t n = varint();
    if (n > buf_.size() - pos_) fail("length-delimited field runs past the end");
    std::string_view v = buf_.substr(pos_, n);
    pos_ += n;
    return v;
  }
  float fixed32f() {
    if (buf_.size() - pos_ < 4) fail("truncated fixed32");
    float f;
    std::memcpy(&f, buf_.data() + pos_, 4);
    pos_ += 4;
    return f;
  }
  void skip(uint32_t wire) {
    switch (wire) {
      case 0: varint(); break;
      case 1: if (buf_.size() - pos_ < 8) fail("truncated fixed64"); pos_ += 8; break;
      case 2: bytes(); break;
      case 5: fixed32f(); break;
      default: fail("unknown wire type " + std::to_string(wire));
    }
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw CheckpointError(where_ + ": not a SentencePiece model (" + what + " at byte " +
                          std::to_string(pos_) + ")");
  }

 private:
  std::string_view buf_;
  size_t pos_ = 0;
  const std::string& where_;
};

}  // namespace

SpmModel::SpmModel(const std::string& bytes, const std::string& where) {
  Wire w(bytes, where);
  while (!w.done()) {
    auto [field, wire] = w.tag();
    if (field == 1 && wire == 2) {  // SentencePiece
      Wire p(w.bytes(), where);
      Piece piece;
      while (!p.done()) {
        auto [f, t] = p.tag();
        if (f == 1 && t == 2) piece.text = std::string(p.bytes());
        else if (f == 2 && t == 5) piece.score = p.fixed32f();
        else if (f == 3 && t == 0) piece.type = static_cast<int>(p.varint());
        else p.skip(t);
      }
      pieces_.push_back(std::move(piece));
    } else if (field == 2 && wire == 2) {  // TrainerSpec
      Wire t(w.bytes(), where);
      while (!t.done()) {
        auto [f, ty] = t.tag();
        if (f == 3 && ty == 0) model_type_ = static_cast<int>(t.varint());
        else if (f == 35 && ty == 0) byte_fallback_ = t.varint() != 0;
        else if (f == 40 && ty == 0) unk_id_ = static_cast<int32_t>(t.varint());
        else if (f == 41 && ty == 0) bos_id_ = static_cast<int32_t>(t.varint());
        else if (f == 42 && ty == 0) eos_id_ = static_cast<int32_t>(t.varint());
        else t.skip(ty);
      }
    } else if (field == 3 && wire == 2) {  // NormalizerSpec
      Wire n(w.bytes(), where);
      std::string name;
      while (!n.done()) {
        auto [f, ty] = n.tag();
        if (f == 1 && ty == 2) name = std::string(n.bytes());
        else if (f == 3 && ty == 0) add_dummy_prefix_ = n.varint() != 0;
        else if (f == 4 && ty == 0) remove_extra_whitespaces_ = n.varint() != 0;
        else if (f == 5 && ty == 0) escape_whitespaces_ = n.varint() != 0;
        else n.skip(ty);
      }
      if (!name.empty() && name != "identity")
        throw CheckpointError(where + ": SentencePiece normalizer '" + name +
                              "' is not supported (supported: identity)");
    } else {
      w.skip(wire);
    }
  }
  if (pieces_.empty()) throw CheckpointError(where + ": not a SentencePiece model (no pieces)");
  if (model_type_ != 1 && model_type_ != 2)
    throw CheckpointError(where + ": SentencePiece model type " + std::to_string(model_type_) +
                          " is not supported (supported: unigram, bpe)");
  for (int b = 0; b < 256; ++b) byte_ids_[b] = -1;
  min_score_ = std::numeric_limits<float>::max();
  for (size_t i = 0; i < pieces_.size(); ++i) {
    const Piece& p = pieces_[i];
    const int32_t id = static_cast<int32_t>(i);
    if (p.type == kNormal || p.type == kUserDefined || p.type == kUnused) index_[p.text] = id;
    if (p.type == kUserDefined) user_defined_.push_back(p.text);
    if (p.type == kNormal) min_score_ = std::min(min_score_, p.score);
    if (p.type == kByte) {
      unsigned v = 0;
      if (std::sscanf(p.text.c_str(), "<0x%02X>", &v) == 1 && v < 256) byte_ids_[v] = id;
    }
    if (p.type == kUnknown) unk_id_ = id;
    max_piece_bytes_ = std::max(max_piece_bytes_, p.text.size());
  }
  std::sort(user_defined_.begin(), user_defined_.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  if (unk_id_ < 0 || unk_id_ >= size()) unk_id_ = -1;
  if (bos_id_ >= size()) bos_id_ = -1;
  if (eos_id_ >= size()) eos_id_ = -1;
}

int32_t SpmModel::piece_id(const std::string& p) const {
  auto it = index_.find(p);
  if (it != index_.end()) return it->second;
  for (size_t i = 0; i < pieces_.size(); ++i)
    if (pieces_[i].text == p) return static_cast<int32_t>(i);
  return -1;
}

Normalized SpmModel::normalize(const Normalized& in) const {
  const std::string& s = in.text;
  size_t b = 0, e = s.size();
  if (remove_extra_whitespaces_) {
    while (b < e && s[b] == ' ') ++b;
    while (e > b && s[e - 1] == ' ') --e;
  }
  NormalizedBuilder out;
  if (b == e) return out.take();
  if (add_dummy_prefix_) out.insert(escape_whitespaces_ ? kSpace : " ", in.origin(b).first);
  size_t prev = b;
  for (size_t i = b; i < e; ++i) {
    if (s[i] != ' ') continue;
    out.copy(in, prev, i);
    const bool extra = remove_extra_whitespaces_ && i > b && s[i - 1] == ' ';
    if (!extra) {
      if (escape_whitespaces_) out.replace(in, i, i + 1, kSpace);
      else out.copy(in, i, i + 1);
    }
    prev = i + 1;
  }
  out.copy(in, prev, e);
  return out.take();
}

void SpmModel::emit(std::string_view s, uint32_t begin, uint32_t end,
                    std::vector<PieceToken>& out) const {
  auto it = index_.find(std::string(s));
  if (it != index_.end() && pieces_[it->second].type != kUnused) {
    out.push_back({it->second, begin, end});
    return;
  }
  if (byte_fallback_) {
    bool all = true;
    for (unsigned char c : s) all &= byte_ids_[c] >= 0;
    if (all) {
      for (size_t k = 0; k < s.size(); ++k)
        out.push_back({byte_ids_[static_cast<unsigned char>(s[k])], begin + static_cast<uint32_t>(k),
                       begin + static_cast<uint32_t>(k) + 1});
      return;
    }
  }
  if (unk_id_ >= 0) {
    if (!out.empty() && out.back().id == unk_id_ && out.back().end == begin) out.back().end = end;
    else out.push_back({unk_id_, begin, end});
  }
}

void SpmModel::encode(std::string_view s, std::vector<PieceToken>& out) const {
  if (s.empty()) return;
  if (model_type_ == 2) encode_bpe(s, out);
  else encode_unigram(s, out);
}

void SpmModel::encode_bpe(std::string_view s, std::vector<PieceToken>& out) const {
  struct Sym {
    uint32_t begin, end;
    int32_t prev, next;
    bool frozen, alive;
  };
  std::vector<Sym> syms;
  for (size_t i = 0; i < s.size();) {
    size_t n = 0;
    bool frozen = false;
    for (const auto& u : user_defined_)
      if (s.compare(i, u.size(), u) == 0) {
        n = u.size();
        frozen = true;
        break;
      }
    if (!n) n = std::min(utf8_len(static_cast<unsigned char>(s[i])), s.size() - i);
    const int32_t k = static_cast<int32_t>(syms.size());
    syms.push_back({static_cast<uint32_t>(i), static_cast<uint32_t>(i + n), k - 1, k + 1, frozen, true});
    i += n;
  }
  syms.back().next = -1;

  struct Cand {
    float score;
    int32_t left, right;
    uint32_t size;
  };
  auto worse = [](const Cand& a, const Cand& b) {
    return a.score != b.score ? a.score < b.score : a.left > b.left;
  };
  std::priority_queue<Cand, std::vector<Cand>, decltype(worse)> heap(worse);
  auto consider = [&](int32_t l) {
    if (l < 0) return;
    const int32_t r = syms[l].next;
    if (r < 0 || syms[l].frozen || syms[r].frozen) return;
    auto it = index_.find(std::string(s.substr(syms[l].begin, syms[r].end - syms[l].begin)));
    if (it == index_.end()) return;
    heap.push({pieces_[it->second].score, l, r, syms[r].end - syms[l].begin});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(syms.size()); ++i) consider(i);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    Sym& l = syms[c.left];
    Sym& r = syms[c.right];
    if (!l.alive || !r.alive || l.next != c.right || r.end - l.begin != c.size) continue;
    l.end = r.end;
    r.alive = false;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = c.left;
    consider(l.prev);
    consider(c.left);
  }
  for (int32_t i = 0; i >= 0; i = syms[i].next)
    emit(s.substr(syms[i].begin, syms[i].end - syms[i].begin), syms[i].begin, syms[i].end, out);
}

void SpmModel::encode_unigram(std::string_view s, std::vector<PieceToken>& out) const {
  // Viterbi over character boundaries: best[i] = best score of a segmentation of s[0, i).
  const float unk_score = min_score_ - 10.0f;
  const size_t n = s.size();
  std::vector<float> best(n + 1, -std::numeric_limits<float>::infinity());
  std::vector<size_t> from(n + 1, 0);
  best[0] = 0;
  for (size_t i = 0; i < n;) {
    const size_t ch = std::min(utf8_len(static_cast<unsigned char>(s[i])), n - i);
    if (best[i] > -std::numeric_limits<float>::infinity()) {
      bool single = false;
      for (size_t len = ch; len <= std::min(max_piece_bytes_, n - i); ++len) {
        auto it = index_.find(std::string(s.substr(i, len)));
        if (it == index_.end() || pieces_[it->second].type == kUnused) continue;
        const Piece& p = pieces_[it->second];
        const float sc = best[i] + (p.type == kUserDefined ? 0.0f : p.score);
        if (sc > best[i + len]) {
          best[i + len] = sc;
          from[i + len] = i;
        }
        single |= len == ch;
      }
      if (!single && best[i] + unk_score > best[i + ch]) {
        best[i + ch] = best[i] + unk_score;
        from[i + ch] = i;
      }
    }
    i += ch;
  }
  std::vector<std::pair<size_t, size_t>> segs;
  for (size_t e = n; e > 0; e = from[e]) segs.emplace_back(from[e], e);
  std::reverse(segs.begin(), segs.end());
  for (auto [b, e] : segs)
    emit(s.substr(b, e - b), static_cast<uint32_t>(b), static_cast<uint32_t>(e), out);
}

}  // namespace air::tok
