#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace air {

// Token ids with the byte range [begin, end) of the input text each token covers. Ranges are
// in order and do not overlap; tokens added by the post-processor (BOS) have empty ranges.
struct Encoding {
  std::vector<int64_t> ids;
  std::vector<std::pair<size_t, size_t>> offsets;
};

// A tokenizer: HuggingFace tokenizer.json (BPE: byte-level as in GPT-2, Qwen and Llama-3, or
// SentencePiece-style as in Mistral) or a SentencePiece tokenizer.model. Added and special
// tokens written in the text (<|im_start|>, <think>) are matched as single tokens.
// Not thread-safe (it caches word encodings): use one per thread.
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Encodes UTF-8 text; `add_special` adds what the post-processor adds (BOS and the like).
  // Throws DataError for invalid UTF-8, naming the byte offset.
  virtual Encoding encode(std::string_view text, bool add_special) const = 0;

  // Number of ids (the largest id + 1).
  virtual int64_t vocab_size() const = 0;
  // Id of a token string (added tokens included), if it exists.
  virtual std::optional<int64_t> token_id(const std::string& token) const = 0;
  // The token string of an id (empty when out of range).
  virtual std::string token(int64_t id) const = 0;
  // "bpe-byte-level", "bpe-sentencepiece", "sentencepiece".
  virtual std::string kind() const = 0;
};

// Loads a tokenizer from a file (tokenizer.json or a SentencePiece .model) or a model
// directory (tokenizer.json preferred over tokenizer.model). Throws CheckpointError.
std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& path);

// Throws CheckpointError when the tokenizer has ids the model has no embedding row for (a
// tokenizer from another model, or an added token past the embedding): every record holding one
// would fail inside the model.
void check_tokenizer_fits(const Tokenizer& tok, int64_t model_vocab, const std::string& where);

// Byte offset of the first invalid UTF-8 sequence in s, or nullopt when s is valid.
std::optional<size_t> find_invalid_utf8(std::string_view s);

}  // namespace air
