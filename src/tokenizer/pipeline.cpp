#include "tokenizer/pipeline.h"

#include "air/error.h"
#include "tokenizer/regex.h"

#include <nlohmann/json.hpp>
#include <utf8proc.h>

#include <cstdlib>

namespace air::tok {
namespace {

using nlohmann::json;

// GPT-2's pre-tokenization regex (ByteLevel with use_regex).
const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

std::string str_field(const json& j, const char* key, const std::string& fallback = "") {
  return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : fallback;
}
bool bool_field(const json& j, const char* key, bool fallback) {
  return j.contains(key) && j[key].is_boolean() ? j[key].get<bool>() : fallback;
}

std::string escape_regex(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (std::string("\\^$.|?*+()[]{}").find(c) != std::string::npos) out += '\\';
    out += c;
  }
  return out;
}

// A "pattern" object: {"String": s} or {"Regex": r}.
Regex pattern_regex(const json& p) {
  if (p.contains("Regex")) return Regex(p["Regex"].get<std::string>());
  if (p.contains("String")) return Regex(escape_regex(p["String"].get<std::string>()));
  throw CheckpointError("tokenizer.json: pattern must hold String or Regex, got " + p.dump());
}

// ---- normalizers ----

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts)
      : parts_(std::move(parts)) {}
  Normalized apply(const Normalized& in) const override {
    Normalized cur = in;
    for (const auto& p : parts_) cur = p->apply(cur);
    return cur;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

// Unicode normalization forms through utf8proc, applied per chunk: a chunk starts at each
// ASCII byte (no ASCII character composes with what precedes it), so text that a form
// leaves unchanged keeps its exact byte alignment.
class UnicodeNormalizer : public Normalizer {
 public:
  explicit UnicodeNormalizer(int options) : options_(options) {}
  Normalized apply(const Normalized& in) const override {
    const std::string& s = in.text;
    bool ascii = true;
    for (unsigned char c : s) ascii &= c < 0x80;
    if (ascii) return in;
    NormalizedBuilder out;
    size_t i = 0;
    while (i < s.size()) {
      size_t j = i + 1;
      while (j < s.size() && static_cast<unsigned char>(s[j]) >= 0x80) ++j;
      if (j - i == 1 && static_cast<unsigned char>(s[i]) < 0x80) {
        out.copy(in, i, j);
      } else {
        utf8proc_uint8_t* res = nullptr;
        const auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + i),
                                    static_cast<utf8proc_ssize_t>(j - i), &res,
                                    static_cast<utf8proc_option_t>(options_));
        if (n < 0) {
          std::free(res);
          throw DataError("unicode normalization failed: " + std::string(utf8proc_errmsg(n)));
        }
        std::string_view r(reinterpret_cast<const char*>(res), static_cast<size_t>(n));
        if (r == std::string_view(s).substr(i, j - i)) out.copy(in, i, j);
        else out.replace(in, i, j, r);
        std::free(res);
      }
      i = j;
    }
    return out.take();
  }

 private:
  int options_;
};

class LowercaseNormalizer : public Normalizer {
 public:
  Normalized apply(const Normalized& in) const override {
    NormalizedBuilder out;
    const std::string& s = in.text;
    size_t i = 0;
    while (i < s.size()) {
      utf8proc_int32_t cp = 0;
      auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + i),
                                static_cast<utf8proc_ssize_t>(s.size() - i), &cp);
      if (n <= 0) n = 1;
      const utf8proc_int32_t lo = cp >= 0 ? utf8proc_tolower(cp) : cp;
      if (lo == cp) {
        out.copy(in, i, i + n);
      } else {
        utf8proc_uint8_t buf[8];
        const auto m = utf8proc_encode_char(lo, buf);
        out.replace(in, i, i + n, std::string_view(reinterpret_cast<char*>(buf), m));
      }
      i += n;
    }
    return out.take();
  }
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string s) : s_(std::move(s)) {}
  Normalized apply(const Normalized& in) const override {
    if (in.text.empty()) return in;
    NormalizedBuilder out;
    out.insert(s_, in.origin(0).first);
    out.copy(in, 0, in.text.size());
    return out.take();
  }

 private:
  std::string s_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(Regex re, std::string content) : re_(std::move(re)), content_(std::move(content)) {}
  Normalized apply(const Normalized& in) const override {
    std::vector<std::pair<size_t, size_t>> m;
    re_.find_all(in.text, m);
    if (m.empty()) return in;
    NormalizedBuilder out;
    size_t prev = 0;
    for (auto [b, e] : m) {
      out.copy(in, prev, b);
      if (!content_.empty()) out.replace(in, b, e, content_);
      prev = e;
    }
    out.copy(in, prev, in.text.size());
    return out.take();
  }

 private:
  Regex re_;
  std::string content_;
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  Normalized apply(const Normalized& in) const override {
    size_t b = 0, e = in.text.size();
    auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
    if (left_) while (b < e && space(in.text[b])) ++b;
    if (right_) while (e > b && space(in.text[e - 1])) --e;
    return in.slice(b, e);
  }

 private:
  bool left_, right_;
};

// ---- pre-tokenizers ----

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

Behavior parse_behavior(const std::string& s) {
  if (s == "Removed") return Behavior::kRemoved;
  if (s == "Isolated") return Behavior::kIsolated;
  if (s == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (s == "MergedWithNext") return Behavior::kMergedWithNext;
  if (s == "Contiguous") return Behavior::kContiguous;
  throw CheckpointError("tokenizer.json: unknown split behavior '" + s + "'");
}

// Splits each piece at the regex matches, as HF's NormalizedString::split.
void split_pieces(std::vector<Normalized>& pieces, const Regex& re, Behavior behavior,
                  bool invert) {
  std::vector<Normalized> out;
  std::vector<std::pair<size_t, size_t>> m;
  for (const Normalized& p : pieces) {
    m.clear();
    re.find_all(p.text, m);
    // (range, is_match) covering the piece.
    std::vector<std::pair<std::pair<size_t, size_t>, bool>> parts;
    size_t prev = 0;
    for (auto r : m) {
      if (r.first > prev) parts.push_back({{prev, r.first}, false});
      parts.push_back({r, true});
      prev = r.second;
    }
    if (prev < p.text.size()) parts.push_back({{prev, p.text.size()}, false});
    if (invert)
      for (auto& x : parts) x.second = !x.second;

    std::vector<std::pair<size_t, size_t>> ranges;
    bool previous_match = false;
    switch (behavior) {
      case Behavior::kRemoved:
        for (auto& x : parts)
          if (!x.second) ranges.push_back(x.first);
        break;
      case Behavior::kIsolated:
        for (auto& x : parts) ranges.push_back(x.first);
        break;
      case Behavior::kMergedWithPrevious:
        for (auto& x : parts) {
          if (x.second && !previous_match && !ranges.empty()) ranges.back().second = x.first.second;
          else ranges.push_back(x.first);
          previous_match = x.second;
        }
        break;
      case Behavior::kMergedWithNext:
        for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
          if (it->second && !previous_match && !ranges.empty()) ranges.back().first = it->first.first;
          else ranges.push_back(it->first);
          previous_match = it->second;
        }
        std::reverse(ranges.begin(), ranges.end());
        break;
      case Behavior::kContiguous:
        for (size_t k = 0; k < parts.size(); ++k) {
          if (k > 0 && parts[k].second == previous_match) ranges.back().second = parts[k].first.second;
          else ranges.push_back(parts[k].first);
          previous_match = parts[k].second;
        }
        break;
    }
    for (auto r : ranges)
      if (r.second > r.first) out.push_back(p.slice(r.first, r.second));
  }
  pieces.swap(out);
}

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(Regex re, Behavior b, bool invert) : re_(std::move(re)), b_(b), invert_(invert) {}
  void apply(std::vector<Normalized>& pieces) const override { split_pieces(pieces, re_, b_, invert_); }

 private:
  Regex re_;
  Behavior b_;
  bool invert_;
};

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space), re_(use_regex ? std::make_unique<Regex>(kGpt2Pattern) : nullptr) {}
  void apply(std::vector<Normalized>& pieces) const override {
    if (add_prefix_space_) {
      for (auto& p : pieces) {
        if (p.text.empty() || p.text[0] == ' ') continue;
        NormalizedBuilder b;
        b.insert(" ", p.origin(0).first);
        b.copy(p, 0, p.text.size());
        p = b.take();
      }
    }
    if (re_) split_pieces(pieces, *re_, Behavior::kIsolated, false);
  }
  bool byte_level() const override { return true; }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> re_;
};

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, std::string scheme, bool split)
      : rep_(std::move(replacement)), scheme_(std::move(scheme)), split_(split),
        rep_re_(escape_regex(rep_)) {}
  void apply(std::vector<Normalized>& pieces) const override {
    for (auto& p : pieces) {
      NormalizedBuilder b;
      const bool starts = p.text.rfind(rep_, 0) == 0 || (!p.text.empty() && p.text[0] == ' ');
      const bool prepend = !p.text.empty() && !starts &&
                           (scheme_ == "always" || (scheme_ == "first" && p.origin(0).first == 0));
      if (prepend) b.insert(rep_, p.origin(0).first);
      size_t prev = 0;
      for (size_t i = 0; i < p.text.size(); ++i) {
        if (p.text[i] != ' ') continue;
        b.copy(p, prev, i);
        b.replace(p, i, i + 1, rep_);
        prev = i + 1;
      }
      b.copy(p, prev, p.text.size());
      p = b.take();
    }
    if (split_) split_pieces(pieces, rep_re_, Behavior::kMergedWithNext, false);
  }

 private:
  std::string rep_, scheme_;
  bool split_;
  Regex rep_re_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> parts)
      : parts_(std::move(parts)) {}
  void apply(std::vector<Normalized>& pieces) const override {
    for (const auto& p : parts_) p->apply(pieces);
  }
  bool byte_level() const override {
    for (const auto& p : parts_)
      if (p->byte_level()) return true;
    return false;
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = str_field(j, "type");
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (const auto& p : j.at("normalizers"))
      if (auto n = make_normalizer(p)) parts.push_back(std::move(n));
    return std::make_unique<SequenceNormalizer>(std::move(parts));
  }
  if (type == "NFC") return std::make_unique<UnicodeNormalizer>(UTF8PROC_STABLE | UTF8PROC_COMPOSE);
  if (type == "NFD") return std::make_unique<UnicodeNormalizer>(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE);
  if (type == "NFKC")
    return std::make_unique<UnicodeNormalizer>(UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
  if (type == "NFKD")
    return std::make_unique<UnicodeNormalizer>(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT);
  if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  if (type == "Prepend") return std::make_unique<PrependNormalizer>(str_field(j, "prepend"));
  if (type == "Replace")
    return std::make_unique<ReplaceNormalizer>(pattern_regex(j.at("pattern")), str_field(j, "content"));
  if (type == "Strip")
    return std::make_unique<StripNormalizer>(bool_field(j, "strip_left", true),
                                             bool_field(j, "strip_right", true));
  throw CheckpointError("tokenizer.json: normalizer '" + type +
                        "' is not supported (supported: Sequence, NFC, NFD, NFKC, NFKD, "
                        "Lowercase, Prepend, Replace, Strip)");
}

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = str_field(j, "type");
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (const auto& p : j.at("pretokenizers"))
      if (auto n = make_pre_tokenizer(p)) parts.push_back(std::move(n));
    return std::make_unique<SequencePreTokenizer>(std::move(parts));
  }
  if (type == "Split")
    return std::make_unique<SplitPreTokenizer>(pattern_regex(j.at("pattern")),
                                               parse_behavior(str_field(j, "behavior", "Isolated")),
                                               bool_field(j, "invert", false));
  if (type == "ByteLevel")
    return std::make_unique<ByteLevelPreTokenizer>(bool_field(j, "add_prefix_space", false),
                                                   bool_field(j, "use_regex", true));
  if (type == "Digits")
    return std::make_unique<SplitPreTokenizer>(
        Regex(bool_field(j, "individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)"),
        Behavior::kIsolated, false);
  if (type == "Metaspace") {
    std::string scheme = str_field(j, "prepend_scheme", "");
    if (scheme.empty()) scheme = bool_field(j, "add_prefix_space", true) ? "always" : "never";
    return std::make_unique<MetaspacePreTokenizer>(str_field(j, "replacement", "\xE2\x96\x81"),
                                                   scheme, bool_field(j, "split", true));
  }
  if (type == "Whitespace")
    return std::make_unique<SplitPreTokenizer>(Regex(R"(\w+|[^\w\s]+)"), Behavior::kRemoved, true);
  if (type == "WhitespaceSplit")
    return std::make_unique<SplitPreTokenizer>(Regex(R"(\s+)"), Behavior::kRemoved, false);
  if (type == "Punctuation")
    return std::make_unique<SplitPreTokenizer>(Regex(R"(\p{P})"),
                                               parse_behavior(str_field(j, "behavior", "Isolated")),
                                               false);
  throw CheckpointError("tokenizer.json: pre-tokenizer '" + type +
                        "' is not supported (supported: Sequence, Split, ByteLevel, Digits, "
                        "Metaspace, Whitespace, WhitespaceSplit, Punctuation)");
}

}  // namespace air::tok
