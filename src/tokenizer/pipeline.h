#pragma once

// HuggingFace tokenizer.json normalizers and pre-tokenizers, each keeping byte alignment with
// the input.

#include "tokenizer/normalized.h"

#include <nlohmann/json_fwd.hpp>

#include <memory>
#include <vector>

namespace air::tok {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual Normalized apply(const Normalized& in) const = 0;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits (and may edit) each piece; empty pieces are dropped.
  virtual void apply(std::vector<Normalized>& pieces) const = 0;
  // True when this pre-tokenizer maps bytes to GPT-2's byte-level alphabet.
  virtual bool byte_level() const { return false; }
};

// Build from tokenizer.json's "normalizer" / "pre_tokenizer" (null -> nullptr). Throws
// CheckpointError naming an unsupported type.
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j);
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j);

}  // namespace air::tok
