#pragma once

// SentencePiece tokenizer.model, read and applied without libsentencepiece (whose embedded
// protobuf clashes with libtorch's at load time): the ModelProto is parsed from its wire
// format, and BPE or unigram segmentation runs as in sentencepiece's own models.

#include "tokenizer/normalized.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace air::tok {

class SpmModel {
 public:
  // Parses a serialized ModelProto; throws CheckpointError naming `where`.
  SpmModel(const std::string& bytes, const std::string& where);

  // Applies the model's normalizer spec (dummy prefix, whitespace escaping and trimming).
  Normalized normalize(const Normalized& in) const;
  // Segments normalized text into pieces.
  void encode(std::string_view normalized, std::vector<PieceToken>& out) const;

  int64_t size() const { return static_cast<int64_t>(pieces_.size()); }
  const std::string& piece(int64_t id) const { return pieces_[id].text; }
  int32_t piece_id(const std::string& p) const;  // -1 when absent
  bool is_control(int64_t id) const { return pieces_[id].type == kControl; }
  int32_t bos_id() const { return bos_id_; }
  int32_t eos_id() const { return eos_id_; }

 private:
  enum Type { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };
  struct Piece {
    std::string text;
    float score = 0;
    int type = kNormal;
  };
  void encode_bpe(std::string_view s, std::vector<PieceToken>& out) const;
  void encode_unigram(std::string_view s, std::vector<PieceToken>& out) const;
  // Emits a symbol: its id, or its bytes (byte fallback), or unk.
  void emit(std::string_view s, uint32_t begin, uint32_t end, std::vector<PieceToken>& out) const;

  std::vector<Piece> pieces_;
  std::unordered_map<std::string, int32_t> index_;  // normal, user-defined, unused pieces
  std::vector<std::string> user_defined_;           // longest first
  int model_type_ = 1;                              // 1 unigram, 2 bpe
  bool byte_fallback_ = false;
  bool add_dummy_prefix_ = true;
  bool remove_extra_whitespaces_ = true;
  bool escape_whitespaces_ = true;
  int32_t unk_id_ = 0, bos_id_ = 1, eos_id_ = 2;
  int32_t byte_ids_[256];
  float min_score_ = 0;
  size_t max_piece_bytes_ = 1;
};

}  // namespace air::tok
