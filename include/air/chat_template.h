#pragma once

#include "air/corpus.h"
#include "air/tokenizer.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace air {

// A chat template as per-role text around each message.
struct ChatTemplate {
  struct Role {
    std::string prefix;  // text before the message content
    std::string suffix;  // text after it
  };
  std::string name;
  std::string begin;           // text at the very start (e.g. "<|begin_of_text|>")
  Role system, user, assistant;
  Role tool;                   // a tool's result (role "tool")
  Role reasoning;              // around the response's reasoning, before its content
  Role tool_call;              // around each tool call of an assistant message
  std::string default_system;  // system message used when a record has none (empty = none)
  bool system_in_user = false; // fold the system message into the first user message
  bool add_special_tokens = true;  // also add the tokenizer post-processor's tokens (BOS)
  bool trim = false;               // each message's content without leading and trailing whitespace (Jinja's | trim)
  bool system_always = false;      // a system turn even when the record has no system message (default_system, maybe empty)
  bool cut_history_reasoning = false;  // earlier assistant turns keep what follows their last "</think>" (DeepSeek-R1)
  bool reasoning_always = false;   // the response's reasoning markers even without reasoning (then they end
                                   // the prompt, as Qwen3's non-thinking generation prompt); the reasoning
                                   // without surrounding '\n', the content after it without leading '\n' (Qwen3)
};

// Built-in presets: "chatml" (Qwen2, QwQ), "qwen2.5" (ChatML with Qwen2.5's default system
// message), "qwen3" (ChatML, the response's <think> block always written), "llama3" (Llama 3),
// "llama3.1" (Llama 3.1, 3.2, 3.3: a system turn with the knowledge and default dates always),
// "mistral", "gemma" (Gemma 2 and 3), "phi3" (Phi-3, Phi-3.5), "phi4", "olmo2", "deepseek"
// (DeepSeek-V3), "deepseek-r1" (DeepSeek-R1 and its distills: "deepseek" with earlier turns'
// reasoning cut), "plain" (prompt, separator,
// response).
std::vector<std::string> builtin_templates();
// A preset by name, or a JSON template file (see configs/templates/). `separator` is the
// plain template's separator. Throws UsageError for an unknown name or a malformed file.
// A template file needs "user" and "assistant" entries (UsageError otherwise).
ChatTemplate load_chat_template(const std::string& name_or_file, const std::string& separator = "\n\n");
// The template as JSON (the template file format, every field written) and back: what a run's
// meta keeps, so that a later command renders records exactly as scoring did.
nlohmann::ordered_json template_to_json(const ChatTemplate& t);
ChatTemplate template_from_json(const nlohmann::json& j);  // throws UsageError

// The preset matching a model's tokenizer_config.json chat_template ("plain" when there is none
// or it matches no preset; *unrecognised, when given, tells the latter: the model has a chat
// template that `plain` does not reproduce). Templates that a family's preset does not render
// alike (DeepSeek-V3.1's, Phi-4-reasoning's with its own system message) match none.
std::string detect_template(const std::filesystem::path& model_dir, bool* unrecognised = nullptr);

// What may be wrong with using `t` for the model in model_dir and its tokenizer: markers of the
// template (<|im_start|>, [INST], ...) that the tokenizer does not read as one token (they would
// be scored as ordinary text: a template of another model family) unless the model's own
// chat_template writes them too (OLMo 2's <|user|> is text), and a preset that differs from the
// one the model's own chat_template matches. Empty when nothing is.
std::vector<std::string> template_warnings(const ChatTemplate& t, const Tokenizer& tok,
                                           const std::filesystem::path& model_dir);

// A record rendered to one text; the response occupies [response_begin, response_end).
struct Rendered {
  std::string text;
  size_t response_begin = 0;
  size_t response_end = 0;
  // Where the response's own texts lie in `text`: its reasoning, its content, each tool call
  // (kToolCall + i), each from byte `source` of the message's field (a trimmed content starts
  // past its whitespace). What lies between them is the template's.
  enum Field { kReasoning = 0, kContent = 1, kToolCall = 2 };
  struct Piece {
    int field;
    size_t begin, size, source;
  };
  std::vector<Piece> pieces;
};

// Renders the conversation; the last message (the assistant's) is the response and nothing
// follows it: its reasoning (inside the reasoning markers), content and tool calls. Reasoning
// of earlier assistant turns is left out, as chat templates of reasoning models do. Throws
// DataError for an empty conversation.
Rendered render(const ChatTemplate& t, const std::vector<Message>& messages);

}  // namespace air
