#include "tokenizer/bpe.h"

#include "air/error.h"
#include "tokenizer/normalized.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <queue>

namespace air::tok {
namespace {

// Pieces up to this many bytes are cached; the cache is cleared past kCacheEntries.
constexpr size_t kCacheMaxBytes = 64;
constexpr size_t kCacheEntries = 1 << 18;

std::string utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

}  // namespace

const std::vector<std::string>& byte_level_alphabet() {
  static const std::vector<std::string> table = [] {
    std::vector<std::string> t(256);
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      t[b] = utf8(printable ? b : 256 + n++);
    }
    return t;
  }();
  return table;
}

bool byte_level_decode(std::string_view token, std::string& bytes) {
  static const std::unordered_map<std::string, unsigned char> inverse = [] {
    std::unordered_map<std::string, unsigned char> m;
    const auto& t = byte_level_alphabet();
    for (int b = 0; b < 256; ++b) m[t[b]] = static_cast<unsigned char>(b);
    return m;
  }();
  bytes.clear();
  size_t i = 0;
  while (i < token.size()) {
    const size_t n = utf8_len(static_cast<unsigned char>(token[i]));
    auto it = inverse.find(std::string(token.substr(i, n)));
    if (it == inverse.end()) return false;
    bytes += static_cast<char>(it->second);
    i += n;
  }
  return true;
}

void FlatMap64::reserve(size_t n) {
  size_t slots = 16;
  while (slots < 2 * n) slots *= 2;
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(slots, Slot{kEmpty, {0, 0}});
  mask_ = slots - 1;
  size_ = 0;
  for (const Slot& s : old)
    if (s.key != kEmpty) insert(s.key, s.value);
}

void FlatMap64::insert(uint64_t key, Value v) {
  if (2 * (size_ + 1) > slots_.size()) reserve(size_ + 1 > 8 ? 2 * (size_ + 1) : 16);
  for (uint64_t i = slot_of(key);; i = (i + 1) & mask_) {
    Slot& s = slots_[i];
    if (s.key == key) return;
    if (s.key == kEmpty) {
      s = {key, v};
      ++size_;
      return;
    }
  }
}

namespace {
// Up to 4 bytes (one UTF-8 character) packed into a key, its length in the top byte.
uint64_t char_key(std::string_view c) {
  uint64_t k = static_cast<uint64_t>(c.size()) << 32;
  for (size_t i = 0; i < c.size(); ++i) k |= static_cast<uint64_t>(static_cast<unsigned char>(c[i])) << (8 * i);
  return k;
}
}  // namespace

int32_t token_id_value(const nlohmann::json& v, const std::string& what) {
  if (!v.is_number_integer() || v.get<int64_t>() < 0 ||
      (v.is_number_unsigned() && v.get<uint64_t>() >= static_cast<uint64_t>(kMaxTokenId)) ||
      v.get<int64_t>() >= kMaxTokenId)
    throw CheckpointError("tokenizer.json: " + what + ": expected a token id, an integer in [0, " +
                          std::to_string(kMaxTokenId) + "), got " + v.dump());
  return static_cast<int32_t>(v.get<int64_t>());
}

Bpe::Bpe(const nlohmann::json& m, bool byte_level) : byte_level_(byte_level) {
  auto flag = [&](const char* k) { return m.contains(k) && m[k].is_boolean() && m[k].get<bool>(); };
  ignore_merges_ = flag("ignore_merges");
  byte_fallback_ = flag("byte_fallback");
  fuse_unk_ = flag("fuse_unk");
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (m.contains(k) && m[k].is_string() && !m[k].get<std::string>().empty())
      throw CheckpointError(std::string("tokenizer.json: BPE ") + k + " is not supported");
  if (!m.contains("vocab") || !m["vocab"].is_object())
    throw CheckpointError("tokenizer.json: model.vocab must be an object");

  if (m["vocab"].empty()) throw CheckpointError("tokenizer.json: model.vocab is empty");
  std::string raw;
  for (const auto& [tok, idj] : m["vocab"].items()) {
    const int32_t id = token_id_value(idj, "model.vocab['" + tok + "']");
    if (static_cast<size_t>(id) >= id_to_token_.size()) id_to_token_.resize(id + 1);
    id_to_token_[id] = tok;
    if (byte_level_ && byte_level_decode(tok, raw)) vocab_[raw] = id;
    else vocab_[tok] = id;
  }
  if (m.contains("unk_token") && m["unk_token"].is_string()) {
    auto it = m["vocab"].find(m["unk_token"].get<std::string>());
    if (it != m["vocab"].end()) unk_id_ = token_id_value(*it, "unk_token");
  }
  for (int b = 0; b < 256; ++b) {
    byte_ids_[b] = -1;
    std::string name;
    if (byte_level_) {
      name = std::string(1, static_cast<char>(b));
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
      name = buf;
    }
    auto it = vocab_.find(name);
    if (it != vocab_.end()) byte_ids_[b] = it->second;
  }

  if (!m.contains("merges") || !m["merges"].is_array())
    throw CheckpointError("tokenizer.json: model.merges must be an array");
  // Written token -> id, to resolve the merges' strings.
  std::unordered_map<std::string_view, int32_t> written;
  written.reserve(m["vocab"].size());
  for (const auto& [tok, idj] : m["vocab"].items()) written.emplace(tok, idj.get<int32_t>());
  merges_.reserve(m["merges"].size());
  int32_t rank = 0;
  std::string a, b, ab;
  for (const auto& e : m["merges"]) {
    if (e.is_string()) {
      const std::string s = e.get<std::string>();
      const size_t sp = s.find(' ', 1);
      if (sp == std::string::npos)
        throw CheckpointError("tokenizer.json: merge '" + s + "' is not 'a b'");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (e.is_array() && e.size() == 2) {
      a = e[0].get<std::string>();
      b = e[1].get<std::string>();
    } else {
      throw CheckpointError("tokenizer.json: malformed merge " + e.dump());
    }
    auto find = [&](const std::string& t) -> int32_t {
      auto it = written.find(t);
      return it == written.end() ? -1 : it->second;
    };
    const int32_t ia = find(a), ib = find(b), iab = find(a + b);
    if (ia < 0 || ib < 0 || iab < 0)
      throw CheckpointError("tokenizer.json: merge '" + a + " " + b + "' uses a token missing "
                            "from the vocabulary");
    merges_.insert(key(ia, ib), {rank++, iab});
  }
  if (!byte_level_)
    for (const auto& [tok, id] : vocab_)
      if (!tok.empty() && tok.size() <= 4 && utf8_len(static_cast<unsigned char>(tok[0])) == tok.size())
        chars_.insert(char_key(tok), {id, 0});
}

void Bpe::encode(std::string_view piece, std::vector<PieceToken>& out) const {
  if (piece.empty()) return;
  if (ignore_merges_) {
    auto it = vocab_.find(std::string(piece));
    if (it != vocab_.end()) {
      out.push_back({it->second, 0, static_cast<uint32_t>(piece.size())});
      return;
    }
  }
  if (piece.size() > kCacheMaxBytes) {
    encode_uncached(piece, out);
    return;
  }
  std::string k(piece);
  auto it = cache_.find(k);
  if (it != cache_.end()) {
    out.insert(out.end(), it->second.begin(), it->second.end());
    return;
  }
  std::vector<PieceToken> toks;
  encode_uncached(piece, toks);
  out.insert(out.end(), toks.begin(), toks.end());
  if (cache_.size() >= kCacheEntries) cache_.clear();
  cache_.emplace(std::move(k), std::move(toks));
}

void Bpe::encode_uncached(std::string_view piece, std::vector<PieceToken>& out) const {
  // Initial symbols, linked left to right.
  struct Sym {
    int32_t id;
    uint32_t begin, end;
    int32_t prev, next;
    bool alive;
  };
  std::vector<Sym> syms;
  syms.reserve(piece.size());
  auto push = [&](int32_t id, uint32_t b, uint32_t e) {
    const int32_t i = static_cast<int32_t>(syms.size());
    syms.push_back({id, b, e, i - 1, i + 1, true});
  };
  for (size_t i = 0; i < piece.size();) {
    if (byte_level_) {
      const int32_t id = byte_ids_[static_cast<unsigned char>(piece[i])];
      if (id >= 0) push(id, i, i + 1);
      ++i;
      continue;
    }
    const size_t n = std::min(utf8_len(static_cast<unsigned char>(piece[i])), piece.size() - i);
    if (const FlatMap64::Value* v = chars_.find(char_key(piece.substr(i, n)))) {
      push(v->first, i, i + n);
    } else if (byte_fallback_ && has_byte_tokens(piece.substr(i, n))) {
      for (size_t k = 0; k < n; ++k) push(byte_ids_[static_cast<unsigned char>(piece[i + k])], i + k, i + k + 1);
    } else if (unk_id_ >= 0) {
      if (fuse_unk_ && !syms.empty() && syms.back().id == unk_id_) syms.back().end = i + n;
      else push(unk_id_, i, i + n);
    }
    i += n;
  }
  if (syms.empty()) return;
  syms.back().next = -1;

  // Candidate merges: lowest rank first, then leftmost; stale entries are skipped.
  struct Cand {
    int32_t rank, left, right, id, left_id, right_id;
    bool operator>(const Cand& o) const {
      return rank != o.rank ? rank > o.rank : left > o.left;
    }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto consider = [&](int32_t l) {
    if (l < 0) return;
    const int32_t r = syms[l].next;
    if (r < 0) return;
    const FlatMap64::Value mg = merge_of(syms[l].id, syms[r].id);
    if (mg.first >= 0) heap.push({mg.first, l, r, mg.second, syms[l].id, syms[r].id});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(syms.size()); ++i) consider(i);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    Sym& l = syms[c.left];
    if (!l.alive || l.next != c.right || !syms[c.right].alive) continue;
    Sym& r = syms[c.right];
    if (l.id != c.left_id || r.id != c.right_id) continue;
    l.id = c.id;
    l.end = r.end;
    r.alive = false;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = c.left;
    consider(l.prev);
    consider(c.left);
  }
  for (int32_t i = 0; i >= 0; i = syms[i].next) out.push_back({syms[i].id, syms[i].begin, syms[i].end});
}

}  // namespace air::tok
