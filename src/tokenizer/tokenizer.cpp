#include "air/tokenizer.h"

#include "air/error.h"
#include "tokenizer/bpe.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/spm_model.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <fstream>
#include <sstream>

namespace air {

std::optional<size_t> find_invalid_utf8(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if ((c >> 5) == 0x6) len = 2, cp = c & 0x1F;
    else if ((c >> 4) == 0xE) len = 3, cp = c & 0x0F;
    else if ((c >> 3) == 0x1E) len = 4, cp = c & 0x07;
    else return i;
    if (i + len > n) return i;
    for (size_t k = 1; k < len; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, surrogates and code points past U+10FFFF are invalid.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
      return i;
    i += len;
  }
  return std::nullopt;
}

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

void check_utf8(std::string_view text) {
  if (auto bad = find_invalid_utf8(text))
    throw DataError("invalid UTF-8 at byte " + std::to_string(*bad));
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw CheckpointError(p.string() + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Appends tokens found in piece `p`, with their byte ranges in the original text.
void append_tokens(const tok::Normalized& p, const std::vector<tok::PieceToken>& toks, Encoding& enc) {
  for (const auto& t : toks) {
    enc.ids.push_back(t.id);
    const tok::Span s = p.origin(t.begin, t.end);
    enc.offsets.emplace_back(s.first, s.second);
  }
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Added and special tokens, matched in the raw text (longest match at the earliest position).
struct AddedToken {
  std::string content;
  int64_t id;
  bool lstrip = false, rstrip = false, single_word = false;
};

class AddedTokens {
 public:
  void add(AddedToken t) {
    if (t.content.empty()) return;
    // Into the trie of contents: one node per prefix, the token at the node of its last byte.
    int32_t node = 0;
    for (unsigned char ch : t.content) {
      int32_t next = child(node, ch);
      if (next < 0) {
        next = static_cast<int32_t>(nodes_.size());
        if (node == 0) root_[ch] = next;
        else nodes_[node].children.emplace_back(ch, next);
        nodes_.emplace_back();
      }
      node = next;
    }
    if (nodes_[node].token < 0) nodes_[node].token = static_cast<int32_t>(tokens_.size());
    tokens_.push_back(std::move(t));
  }
  bool empty() const { return tokens_.empty(); }

  // Appends added tokens as single ids; each other segment goes to plain(segment), given as
  // an identity Normalized that knows its place in the text.
  template <class Fn>
  void encode(std::string_view text, Encoding& enc, Fn&& plain) const {
    for (const auto& seg : split(text)) {
      if (seg.id >= 0) {
        enc.ids.push_back(seg.id);
        enc.offsets.emplace_back(seg.begin, seg.end);
        continue;
      }
      plain(tok::Normalized::identity(text.substr(seg.begin, seg.end - seg.begin),
                                      static_cast<uint32_t>(seg.begin)));
    }
  }
  const std::vector<AddedToken>& tokens() const { return tokens_; }

  struct Segment {
    size_t begin, end;
    int64_t id;  // -1: ordinary text
  };
  std::vector<Segment> split(std::string_view text) const {
    std::vector<Segment> out;
    size_t text_start = 0;
    std::vector<int32_t> matches;  // tokens whose content starts at i, shortest first
    for (size_t i = 0; i < text.size(); ++i) {
      matches.clear();
      for (int32_t node = child(0, static_cast<unsigned char>(text[i])), j = static_cast<int32_t>(i) + 1; node >= 0;
           node = j < static_cast<int32_t>(text.size()) ? child(node, static_cast<unsigned char>(text[j++])) : -1)
        if (nodes_[node].token >= 0) matches.push_back(nodes_[node].token);
      // The longest match first.
      for (auto k = matches.rbegin(); k != matches.rend(); ++k) {
        const AddedToken& t = tokens_[*k];
        size_t b = i, e = i + t.content.size();
        if (t.single_word && ((b > 0 && !is_space(text[b - 1])) || (e < text.size() && !is_space(text[e]))))
          continue;
        if (t.lstrip)
          while (b > text_start && is_space(text[b - 1])) --b;
        if (t.rstrip)
          while (e < text.size() && is_space(text[e])) ++e;
        if (b > text_start) out.push_back({text_start, b, -1});
        out.push_back({b, e, t.id});
        text_start = e;
        i = e - 1;
        break;
      }
    }
    if (text_start < text.size()) out.push_back({text_start, text.size(), -1});
    return out;
  }

 private:
  std::vector<AddedToken> tokens_;
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> children;
    int32_t token = -1;
  };
  int32_t child(int32_t node, unsigned char ch) const {
    if (node == 0) return root_[ch];
    for (const auto& [c, n] : nodes_[node].children)
      if (c == ch) return n;
    return -1;
  }
  std::vector<Node> nodes_ = std::vector<Node>(1);  // nodes_[0] is the root, its children in root_
  std::array<int32_t, 256> root_ = [] {
    std::array<int32_t, 256> r;
    r.fill(-1);
    return r;
  }();
};

// HuggingFace tokenizer.json with a BPE model.
class HfBpeTokenizer : public Tokenizer {
 public:
  HfBpeTokenizer(const json& j, const std::string& where)
      : normalizer_(tok::make_normalizer(j.value("normalizer", json()))),
        pre_(tok::make_pre_tokenizer(j.value("pre_tokenizer", json()))),
        byte_level_(is_byte_level(j)),
        bpe_(j.at("model"), byte_level_) {
    vocab_size_ = static_cast<int64_t>(bpe_.id_to_token().size());
    if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
      for (const auto& a : j["added_tokens"]) {
        AddedToken t;
        t.content = a.at("content").get<std::string>();
        t.id = tok::token_id_value(a.at("id"), "added token '" + t.content + "'");
        t.lstrip = a.value("lstrip", false);
        t.rstrip = a.value("rstrip", false);
        t.single_word = a.value("single_word", false);
        added_by_name_[t.content] = t.id;
        vocab_size_ = std::max(vocab_size_, t.id + 1);
        added_.add(std::move(t));
      }
    }
    parse_post_processor(j.value("post_processor", json()), where);
  }

  Encoding encode(std::string_view text, bool add_special) const override {
    check_utf8(text);
    Encoding enc;
    if (add_special) append_specials(prefix_, 0, enc);
    std::vector<tok::PieceToken> toks;
    std::vector<tok::Normalized> pieces;
    added_.encode(text, enc, [&](tok::Normalized n) {
      if (normalizer_) n = normalizer_->apply(n);
      pieces.clear();
      pieces.push_back(std::move(n));
      if (pre_) pre_->apply(pieces);
      for (const auto& p : pieces) {
        toks.clear();
        bpe_.encode(p.text, toks);
        append_tokens(p, toks, enc);
      }
    });
    if (add_special) append_specials(suffix_, text.size(), enc);
    return enc;
  }

  int64_t vocab_size() const override { return vocab_size_; }
  std::optional<int64_t> token_id(const std::string& t) const override {
    auto a = added_by_name_.find(t);
    if (a != added_by_name_.end()) return a->second;
    std::string raw;
    if (byte_level_ && tok::byte_level_decode(t, raw)) {
      auto it = bpe_.vocab().find(raw);
      if (it != bpe_.vocab().end()) return it->second;
    }
    auto it = bpe_.vocab().find(t);
    if (it != bpe_.vocab().end()) return it->second;
    return std::nullopt;
  }
  std::string token(int64_t id) const override {
    for (const auto& a : added_.tokens())
      if (a.id == id) return a.content;
    if (id >= 0 && id < static_cast<int64_t>(bpe_.id_to_token().size())) return bpe_.id_to_token()[id];
    return "";
  }
  std::string kind() const override { return byte_level_ ? "bpe-byte-level" : "bpe-sentencepiece"; }

 private:
  static bool is_byte_level(const json& j) {
    auto has = [](const json& x, auto&& self) -> bool {
      if (x.is_object()) {
        if (x.value("type", "") == "ByteLevel") return true;
        for (const auto& [k, v] : x.items())
          if (self(v, self)) return true;
      } else if (x.is_array()) {
        for (const auto& v : x)
          if (self(v, self)) return true;
      }
      return false;
    };
    return has(j.value("pre_tokenizer", json()), has) || has(j.value("decoder", json()), has);
  }

  void parse_post_processor(const json& p, const std::string& where) {
    if (p.is_null()) return;
    const std::string type = p.value("type", "");
    if (type == "Sequence") {
      for (const auto& q : p.at("processors")) parse_post_processor(q, where);
    } else if (type == "TemplateProcessing") {
      bool seen_a = false;
      for (const auto& item : p.at("single")) {
        if (item.contains("Sequence")) {
          seen_a = true;
        } else if (item.contains("SpecialToken")) {
          const std::string name = item["SpecialToken"].at("id").get<std::string>();
          const auto& st = p.at("special_tokens").at(name);
          for (const auto& id : st.at("ids"))
            (seen_a ? suffix_ : prefix_).push_back(tok::token_id_value(id, "post_processor special token '" + name + "'"));
        }
      }
    } else if (type == "BertProcessing" || type == "RobertaProcessing") {
      prefix_.push_back(tok::token_id_value(p.at("cls").at(1), "post_processor cls"));
      suffix_.push_back(tok::token_id_value(p.at("sep").at(1), "post_processor sep"));
    } else if (type != "ByteLevel") {
      throw CheckpointError(where + ": post-processor '" + type + "' is not supported");
    }
  }

  static void append_specials(const std::vector<int64_t>& ids, size_t at, Encoding& enc) {
    for (int64_t id : ids) {
      enc.ids.push_back(id);
      enc.offsets.emplace_back(at, at);
    }
  }

  std::unique_ptr<tok::Normalizer> normalizer_;
  std::unique_ptr<tok::PreTokenizer> pre_;
  bool byte_level_;
  tok::Bpe bpe_;
  AddedTokens added_;
  std::unordered_map<std::string, int64_t> added_by_name_;
  std::vector<int64_t> prefix_, suffix_;  // post-processor ids around the sequence
  int64_t vocab_size_ = 0;
};

// A SentencePiece tokenizer.model. Control symbols (<s>, </s>) written in the text are
// matched as single tokens; `add_special` prepends BOS (and appends EOS when
// tokenizer_config.json says add_eos_token).
class SentencePieceTokenizer : public Tokenizer {
 public:
  SentencePieceTokenizer(const fs::path& path, bool add_bos, bool add_eos)
      : model_(read_file(path), path.string()), add_bos_(add_bos), add_eos_(add_eos) {
    for (int64_t i = 0; i < model_.size(); ++i)
      if (model_.is_control(i)) added_.add({model_.piece(i), i});
  }

  Encoding encode(std::string_view text, bool add_special) const override {
    check_utf8(text);
    Encoding enc;
    if (add_special && add_bos_ && model_.bos_id() >= 0) {
      enc.ids.push_back(model_.bos_id());
      enc.offsets.emplace_back(0, 0);
    }
    std::vector<tok::PieceToken> toks;
    added_.encode(text, enc, [&](const tok::Normalized& segment) {
      const tok::Normalized n = model_.normalize(segment);
      toks.clear();
      model_.encode(n.text, toks);
      append_tokens(n, toks, enc);
    });
    if (add_special && add_eos_ && model_.eos_id() >= 0) {
      enc.ids.push_back(model_.eos_id());
      enc.offsets.emplace_back(text.size(), text.size());
    }
    return enc;
  }
  int64_t vocab_size() const override { return model_.size(); }
  std::optional<int64_t> token_id(const std::string& t) const override {
    const int32_t id = model_.piece_id(t);
    if (id < 0) return std::nullopt;
    return id;
  }
  std::string token(int64_t id) const override {
    return id >= 0 && id < model_.size() ? model_.piece(id) : "";
  }
  std::string kind() const override { return "sentencepiece"; }

 private:
  tok::SpmModel model_;
  AddedTokens added_;
  bool add_bos_, add_eos_;
};

std::unique_ptr<Tokenizer> load_json(const fs::path& p) {
  json j;
  try {
    j = json::parse(read_file(p));
  } catch (const json::exception& e) {
    throw CheckpointError(p.string() + ": not valid JSON (" + e.what() + ")");
  }
  try {
    const std::string type = j.is_object() && j.contains("model") ? j["model"].value("type", "BPE") : "";
    if (type != "BPE")
      throw CheckpointError(p.string() + ": tokenizer model '" + type +
                            "' is not supported (supported: BPE)");
    return std::make_unique<HfBpeTokenizer>(j, p.string());
  } catch (const json::exception& e) {
    throw CheckpointError(p.string() + ": malformed tokenizer (" + e.what() + ")");
  } catch (const Error& e) {
    e.rethrow_with(p.string());
  }
  throw;  // unreachable: rethrow_with never returns
}

std::unique_ptr<Tokenizer> load_spm(const fs::path& p) {
  bool add_bos = true, add_eos = false;
  const fs::path cfg = p.parent_path() / "tokenizer_config.json";
  if (fs::exists(cfg)) {
    try {
      const json c = json::parse(read_file(cfg));
      if (c.contains("add_bos_token") && c["add_bos_token"].is_boolean()) add_bos = c["add_bos_token"];
      if (c.contains("add_eos_token") && c["add_eos_token"].is_boolean()) add_eos = c["add_eos_token"];
    } catch (const json::exception& e) {
      throw CheckpointError(cfg.string() + ": not valid JSON (" + e.what() + ")");
    }
  }
  return std::make_unique<SentencePieceTokenizer>(p, add_bos, add_eos);
}

}  // namespace

void check_tokenizer_fits(const Tokenizer& tok, int64_t model_vocab, const std::string& where) {
  if (tok.vocab_size() > model_vocab)
    throw CheckpointError(where + ": the tokenizer has ids up to " + std::to_string(tok.vocab_size() - 1) +
                          " ('" + tok.token(tok.vocab_size() - 1) + "'), but the model's embedding has " +
                          std::to_string(model_vocab) + " rows (vocab_size): tokenizer and weights do not belong together");
}

std::unique_ptr<Tokenizer> load_tokenizer(const fs::path& path) {
  if (fs::is_directory(path)) {
    if (fs::exists(path / "tokenizer.json")) return load_json(path / "tokenizer.json");
    if (fs::exists(path / "tokenizer.model")) return load_spm(path / "tokenizer.model");
    throw CheckpointError(path.string() + ": no tokenizer.json or tokenizer.model");
  }
  if (!fs::exists(path)) throw CheckpointError(path.string() + ": no such tokenizer file");
  if (path.extension() == ".json") return load_json(path);
  return load_spm(path);
}

}  // namespace air
