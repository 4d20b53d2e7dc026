#pragma once

#include "air/corpus.h"

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
  std::string default_system;  // system message used when a record has none (empty = none)
  bool system_in_user = false; // fold the system message into the first user message
  bool add_special_tokens = true;  // also add the tokenizer post-processor's tokens (BOS)
};

// Built-in presets: "chatml" (Qwen2/Qwen3), "qwen2.5" (ChatML with Qwen2.5's default system
// message), "llama3", "mistral", "plain" (prompt, separator, response).
std::vector<std::string> builtin_templates();
// A preset by name, or a JSON template file (see configs/templates/). `separator` is the
// plain template's separator. Throws UsageError for an unknown name or a malformed file.
ChatTemplate load_chat_template(const std::string& name_or_file, const std::string& separator = "\n\n");
// The preset matching a model's tokenizer_config.json chat_template ("plain" when there is none
// or it matches no preset; *unrecognised, when given, tells the latter: the model has a chat
// template that `plain` does not reproduce).
std::string detect_template(const std::filesystem::path& model_dir, bool* unrecognised = nullptr);

// A record rendered to one text; the response occupies [response_begin, response_end).
struct Rendered {
  std::string text;
  size_t response_begin = 0;
  size_t response_end = 0;
};

// Renders the conversation; the last message (the assistant's) is the response and nothing
// follows it. Throws DataError for an empty conversation.
Rendered render(const ChatTemplate& t, const std::vector<Message>& messages);

}  // namespace air
