#pragma once

#include "air/line_reader.h"

#include <cstdint>
#include <string>
#include <vector>

namespace air {

struct Message {
  std::string role;     // "system", "user", "assistant" or "tool"
  std::string content;
  // An assistant's reasoning kept apart from its content (a message's reasoning_content): the
  // template writes it before the content, inside its reasoning markers (e.g. <think>...</think>).
  std::string reasoning;
  // An assistant's tool calls, each as compact JSON {"name", "arguments"}, written after the
  // content inside the template's tool-call markers.
  std::vector<std::string> tool_calls;
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

// Fields are named "name", or "name[i]" for the i-th (0-based) element of a list.
struct CorpusOptions {
  CorpusFormat format = CorpusFormat::kAuto;
  std::string prompt_field;                  // explicit prompt field (empty = detect)
  std::vector<std::string> response_fields;  // explicit response fields, joined in order by a
                                             // blank line (empty = detect)
  std::string id_field = "id";               // record id field (absent = the line number)
};

// Throws UsageError for field names that are not NAME or NAME[i], a response field named twice,
// and fields named with a format that does not read them.
void check_corpus_options(const CorpusOptions& opt);

// One corpus record as a conversation whose last message is the assistant response.
struct Record {
  int64_t line = 0;             // 1-based line in the corpus file
  std::string id;               // the id field, or the line number
  std::string hash;             // line_hash() of the line: tells a changed record at the same place
  std::vector<Message> messages;
  // How it was read, e.g. "Sky-T1: question -> code[0]", the same for records read alike.
  std::string layout;
  // Top-level fields that were left unused although they hold more text than the response
  // (reference solutions that a known layout leaves on purpose are not listed).
  std::vector<std::string> unused;
};

// Parses one JSONL line. Throws DataError (without file/line: the caller adds them) for
// malformed JSON, missing or non-string fields, an empty response, invalid UTF-8, and a list
// of alternative responses (several generations of one prompt) that no field index picks.
//
// Layouts recognised in auto format, in order (docs/OUTPUTS.md lists them with examples):
// "messages" (OpenAI: role/content, content-part lists, reasoning_content, tool turns and
// tool_calls), "conversations" (ShareGPT from/value, Bespoke-Stratos/OpenThoughts), both with a
// top-level "system"; s1K-1.1 (deepseek_thinking_trajectory + deepseek_attempt), s1K
// (thinking_trajectories + attempt), Sky-T1 evaluation output (question -> code), OpenR1
// (problem -> generations), a prompt with a reasoning-trace field (deepseek_reasoning,
// reasoning, thinking, ...) and its final answer, alpaca (instruction/input/output), then
// prompt/response pairs (problem/solution, question/answer, prompt/response, ...).
Record parse_record(const std::string& line, int64_t line_no, const CorpusOptions& opt);

// A record's id, the one rule every command follows: the id field of a JSON object line (a string
// as it is, an integer in decimal, another value as compact JSON), else the 1-based line number
// (also for a line that is not a JSON object, or a field that is absent or null).
std::string record_id(const std::string& line, int64_t line_no, const std::string& id_field);

// A hash of a corpus line's bytes (16 hex digits, XXH3-64), stored with each score record so that
// resuming and selecting can tell that a record is still the one that was scored.
std::string line_hash(const std::string& line);

}  // namespace air
