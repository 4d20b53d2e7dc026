#pragma once

#include <cstdint>
#include <istream>
#include <string>
#include <vector>

namespace air {

struct Message {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// How records are laid out in the corpus.
enum class CorpusFormat {
  kAuto,            // detect per record (the order below)
  kMessages,        // "messages": [{role, content}]
  kShareGpt,        // "conversations": [{from, value}]
  kAlpaca,          // instruction / input / output
  kPromptResponse,  // a prompt field and a response field (see CorpusOptions)
};

// Parses "auto", "messages", "sharegpt", "alpaca", "prompt-response"; throws UsageError.
CorpusFormat parse_corpus_format(const std::string& name);

struct CorpusOptions {
  CorpusFormat format = CorpusFormat::kAuto;
  std::string prompt_field;    // explicit prompt field (empty = detect)
  std::string response_field;  // explicit response field (empty = detect)
  std::string id_field = "id"; // record id field (absent = the line number)
};

// One corpus record as a conversation whose last message is the assistant response.
struct Record {
  int64_t line = 0;             // 1-based line in the corpus file
  std::string id;               // the id field, or the line number
  std::string hash;             // line_hash() of the line: tells a changed record at the same place
  std::vector<Message> messages;
};

// Parses one JSONL line. Throws DataError (without file/line: the caller adds them) for
// malformed JSON, missing or non-string fields, an empty response, invalid UTF-8.
Record parse_record(const std::string& line, int64_t line_no, const CorpusOptions& opt);

// A record's id, the one rule every command follows: the id field of a JSON object line (a string
// as it is, an integer in decimal, another value as compact JSON), else the 1-based line number
// (also for a line that is not a JSON object, or a field that is absent or null).
std::string record_id(const std::string& line, int64_t line_no, const std::string& id_field);

// Longest corpus line kept (bytes): a longer one is rejected and its rest skipped, so that an
// input without newlines (a device, a binary file) never fills memory.
constexpr size_t kMaxLineBytes = size_t{256} << 20;
// Reads the next line (without its '\n') into `line`, keeping at most max_bytes of it; false at
// the end of input. *too_long tells that the line was longer (the rest was read and dropped).
bool read_line(std::istream& in, std::string& line, size_t max_bytes, bool* too_long);

// A hash of a corpus line's bytes (16 hex digits, XXH3-64), stored with each score record so that
// resuming and selecting can tell that a record is still the one that was scored.
std::string line_hash(const std::string& line);

}  // namespace air
