#pragma once

// The BPE model of tokenizer.json: merges applied lowest rank first (leftmost on ties), with
// GPT-2 byte-level symbols or SentencePiece-style characters with byte fallback.

#include "tokenizer/normalized.h"

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace air::tok {

// GPT-2's reversible byte <-> printable character mapping, as UTF-8 strings.
const std::vector<std::string>& byte_level_alphabet();
// Inverse of the alphabet on a whole token string; false when a character is outside it.
bool byte_level_decode(std::string_view token, std::string& bytes);

// Token ids are below this: the largest vocabularies in use hold ~262k tokens, so a larger id is
// a corrupt file (and would size id tables by it).
constexpr int64_t kMaxTokenId = int64_t{1} << 22;
// A token id from a tokenizer file: an integer in [0, kMaxTokenId); throws CheckpointError
// "tokenizer.json: <what>: ..." for a negative, fractional, huge or non-numeric value.
int32_t token_id_value(const nlohmann::json& v, const std::string& what);

// A map from 64-bit keys (never ~0) to a pair of int32s, open addressing with linear probing
// over a power-of-two table: a lookup touches one cache line, where a node-based map chases
// pointers (the BPE's hot path looks up a merge for every adjacent pair).
class FlatMap64 {
 public:
  struct Value {
    int32_t first, second;
  };
  void reserve(size_t n);
  // Keeps the first value given for a key.
  void insert(uint64_t key, Value v);
  const Value* find(uint64_t key) const {
    if (slots_.empty()) return nullptr;
    for (uint64_t i = slot_of(key);; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.key == key) return &s.value;
      if (s.key == kEmpty) return nullptr;
    }
  }
  size_t size() const { return size_; }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  struct Slot {
    uint64_t key;
    Value value;
  };
  uint64_t slot_of(uint64_t key) const { return ((key ^ (key >> 29)) * 0x9E3779B97F4A7C15ull >> 17) & mask_; }
  std::vector<Slot> slots_;
  uint64_t mask_ = 0;
  size_t size_ = 0;
};

class Bpe {
 public:
  // `byte_level`: vocabulary strings are in GPT-2's alphabet and symbols are raw bytes.
  Bpe(const nlohmann::json& model, bool byte_level);

  // Encodes one pre-tokenized piece (raw bytes), appending to out.
  void encode(std::string_view piece, std::vector<PieceToken>& out) const;

  const std::unordered_map<std::string, int32_t>& vocab() const { return vocab_; }
  // Vocabulary strings by id as written in tokenizer.json.
  const std::vector<std::string>& id_to_token() const { return id_to_token_; }

 private:
  // Whether every byte of `chars` has a <0xXX> token: byte fallback applies only then (as in
  // HuggingFace's tokenizers), else the characters are unknown.
  bool has_byte_tokens(std::string_view chars) const {
    for (char c : chars)
      if (byte_ids_[static_cast<unsigned char>(c)] < 0) return false;
    return true;
  }

  void encode_uncached(std::string_view piece, std::vector<PieceToken>& out) const;
  static uint64_t key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  bool byte_level_;
  bool ignore_merges_ = false;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  int32_t unk_id_ = -1;
  std::unordered_map<std::string, int32_t> vocab_;  // raw bytes (byte-level) or text -> id
  std::vector<std::string> id_to_token_;
  FlatMap64 merges_;  // key(left id, right id) -> {rank, merged id}
  // The merge of a pair (rank -1: none), through a small direct-mapped cache in front of
  // merges_: text repeats its pairs, and the cache stays in L2 where merges_ (megabytes for the
  // 256k vocabularies) misses it on nearly every lookup.
  FlatMap64::Value merge_of(int32_t a, int32_t b) const {
    const uint64_t k = key(a, b);
    PairSlot& slot = pair_cache_[(k * 0x9E3779B97F4A7C15ull) >> (64 - kPairCacheBits)];
    if (slot.key != k) {
      const FlatMap64::Value* v = merges_.find(k);
      slot = {k, v ? *v : FlatMap64::Value{-1, -1}};
    }
    return slot.value;
  }
  static constexpr int kPairCacheBits = 16;
  struct PairSlot {
    uint64_t key;
    FlatMap64::Value value;
  };
  mutable std::vector<PairSlot> pair_cache_ = std::vector<PairSlot>(size_t{1} << kPairCacheBits, PairSlot{~uint64_t{0}, {-1, -1}});
  FlatMap64 chars_;   // SentencePiece-style: one UTF-8 character's bytes, packed -> {id, 0}
  int32_t byte_ids_[256];  // byte-level: id of each byte; byte fallback: id of <0xXX>
  mutable std::unordered_map<std::string, std::vector<PieceToken>> cache_;
};

}  // namespace air::tok
