#include "air/chat_template.h"

#include "air/error.h"
#include "air/line_reader.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

namespace air {
namespace {

// Reasoning markers of the reasoning models' templates (Qwen3, QwQ, DeepSeek-R1 and its
// distills, Phi-4-reasoning).
const ChatTemplate::Role kThink = {"<think>\n", "\n</think>\n\n"};

// DeepSeek's markers: <｜name｜> with U+FF5C FULLWIDTH VERTICAL LINE for the bars and U+2581
// LOWER ONE EIGHTH BLOCK (▁) for the spaces of the name: deepseek_marker("end of sentence") is
// <｜end▁of▁sentence｜>.
const std::string kDeepSeekBar = "\xEF\xBD\x9C";
std::string deepseek_marker(const std::string& name) {
  std::string out = "<" + kDeepSeekBar;
  for (char c : name) out += c == ' ' ? std::string("\xE2\x96\x81") : std::string(1, c);
  return out + kDeepSeekBar + ">";
}

ChatTemplate chatml() {
  ChatTemplate t;
  t.name = "chatml";
  t.system = {"<|im_start|>system\n", "<|im_end|>\n"};
  t.user = {"<|im_start|>user\n", "<|im_end|>\n"};
  t.assistant = {"<|im_start|>assistant\n", "<|im_end|>\n"};
  t.tool = {"<|im_start|>user\n<tool_response>\n", "\n</tool_response><|im_end|>\n"};
  t.reasoning = kThink;
  t.tool_call = {"<tool_call>\n", "\n</tool_call>"};
  return t;
}

ChatTemplate builtin(const std::string& name, const std::string& separator) {
  if (name == "chatml") return chatml();
  if (name == "qwen2.5") {
    ChatTemplate t = chatml();
    t.name = name;
    t.default_system = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";
    return t;
  }
  if (name == "qwen3") {
    // Qwen3: the last assistant turn always opens '<think>\n' + reasoning.strip('\n') +
    // '\n</think>\n\n' + content.lstrip('\n'), an empty block when there is no reasoning.
    ChatTemplate t = chatml();
    t.name = name;
    t.reasoning_always = true;
    return t;
  }
  if (name == "llama3.1") {
    // Llama 3.1, 3.2 and 3.3: always a system turn, opened with the knowledge date and the
    // template's own default date (transformers writes today's date where the template calls
    // strftime_now; a date that changes daily would change every score, so the default is kept).
    ChatTemplate t = builtin("llama3", separator);
    t.name = name;
    t.system.prefix += "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n";
    t.system_always = true;
    return t;
  }
  if (name == "llama3") {
    ChatTemplate t;
    t.name = name;
    t.begin = "<|begin_of_text|>";
    t.system = {"<|start_header_id|>system<|end_header_id|>\n\n", "<|eot_id|>"};
    t.user = {"<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>"};
    t.assistant = {"<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>"};
    t.tool = {"<|start_header_id|>ipython<|end_header_id|>\n\n", "<|eot_id|>"};
    t.reasoning = kThink;
    t.add_special_tokens = false;  // BOS is written in the text
    t.trim = true;                 // message['content'] | trim
    return t;
  }
  if (name == "mistral") {
    ChatTemplate t;
    t.name = name;
    t.begin = "<s>";
    t.user = {"[INST] ", " [/INST]"};
    t.assistant = {"", "</s>"};
    t.tool = {"[TOOL_RESULTS] ", " [/TOOL_RESULTS]"};
    t.reasoning = kThink;
    t.tool_call = {"[TOOL_CALLS] ", ""};
    t.system_in_user = true;
    t.add_special_tokens = false;  // BOS is written in the text
    return t;
  }
  // The presets below render what the model's own tokenizer_config.json chat_template renders
  // (tests/data/templates/ holds those templates). Their BOS, where there is one, is written in
  // the text, and HuggingFace's apply_chat_template tokenizes the text without special tokens:
  // add_special_tokens is false. Tool results are user turns where the template has no tool
  // role (Gemma, Phi-3, Phi-4 and OLMo 2 leave them out or refuse them).
  if (name == "gemma") {
    // Gemma 2 and 3 instruct: {{ bos_token }}, then '<start_of_turn>' + role + '\n' + content +
    // '<end_of_turn>\n', the assistant's role written "model". No system role: Gemma 3 writes
    // the system message + '\n\n' at the start of the first user turn (Gemma 2 refuses one).
    ChatTemplate t;
    t.name = name;
    t.begin = "<bos>";
    t.user = {"<start_of_turn>user\n", "<end_of_turn>\n"};
    t.assistant = {"<start_of_turn>model\n", "<end_of_turn>\n"};
    t.tool = t.user;
    t.reasoning = kThink;
    t.system_in_user = true;
    t.add_special_tokens = false;
    t.trim = true;  // message['content'] | trim (the system message before it is kept as it is)
    return t;
  }
  if (name == "phi3") {
    // Phi-3 and Phi-3.5 mini: '<|' + role + '|>\n' + content + '<|end|>\n', no BOS.
    ChatTemplate t;
    t.name = name;
    t.system = {"<|system|>\n", "<|end|>\n"};
    t.user = {"<|user|>\n", "<|end|>\n"};
    t.assistant = {"<|assistant|>\n", "<|end|>\n"};
    t.tool = t.user;
    t.reasoning = kThink;
    t.add_special_tokens = false;
    return t;
  }
  if (name == "phi4") {
    // Phi-4: '<|im_start|>' + role + '<|im_sep|>' + content + '<|im_end|>', no newlines, no BOS.
    ChatTemplate t;
    t.name = name;
    t.system = {"<|im_start|>system<|im_sep|>", "<|im_end|>"};
    t.user = {"<|im_start|>user<|im_sep|>", "<|im_end|>"};
    t.assistant = {"<|im_start|>assistant<|im_sep|>", "<|im_end|>"};
    t.tool = t.user;
    t.reasoning = kThink;
    t.add_special_tokens = false;
    return t;
  }
  if (name == "olmo2") {
    // OLMo 2 instruct: {{ bos_token }} (<|endoftext|>), '<|' + role + '|>\n' + content + '\n' for
    // system and user, '<|assistant|>\n' + content + eos_token (<|endoftext|>) + '\n' for the
    // assistant (no '\n' after the last one). Its <|user|> and the like are text, not tokens.
    ChatTemplate t;
    t.name = name;
    t.begin = "<|endoftext|>";
    t.system = {"<|system|>\n", "\n"};
    t.user = {"<|user|>\n", "\n"};
    t.assistant = {"<|assistant|>\n", "<|endoftext|>\n"};
    t.tool = t.user;
    t.reasoning = kThink;
    t.add_special_tokens = false;
    return t;
  }
  if (name == "deepseek") {
    // DeepSeek-V3, DeepSeek-R1 and the R1 distills: {{ bos_token }} + the system message, then
    // '<｜User｜>' + content and '<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'. R1's
    // templates differ from V3's in two things only: the generation prompt also opens
    // '<think>\n', which is where the response's reasoning starts here (in kThink), and an
    // assistant content is cut to what follows '</think>' (render() keeps reasoning apart from
    // contents, and writes only the response's). Tool results and calls take DeepSeek's tool
    // markers; the templates' exact layout of several results or calls (and of the assistant
    // turn after a tool result) is not kept.
    ChatTemplate t;
    t.name = name;
    t.begin = deepseek_marker("begin of sentence");
    t.user = {deepseek_marker("User"), ""};
    t.assistant = {deepseek_marker("Assistant"), deepseek_marker("end of sentence")};
    t.tool = {deepseek_marker("tool outputs begin") + deepseek_marker("tool output begin"),
              deepseek_marker("tool output end") + deepseek_marker("tool outputs end")};
    t.reasoning = kThink;
    t.tool_call = {deepseek_marker("tool calls begin") + deepseek_marker("tool call begin"),
                   deepseek_marker("tool call end") + deepseek_marker("tool calls end")};
    t.add_special_tokens = false;
    return t;
  }
  if (name == "deepseek-r1") {
    // DeepSeek-R1 and its distills: DeepSeek-V3's format, and an earlier assistant turn keeps
    // only what follows its last '</think>' (content.split('</think>')[-1]).
    ChatTemplate t = builtin("deepseek", separator);
    t.name = name;
    t.cut_history_reasoning = true;
    return t;
  }
  if (name == "plain") {
    ChatTemplate t;
    t.name = name;
    t.system = {"", separator};
    t.user = {"", separator};
    t.assistant = {"", separator};
    t.tool = {"", separator};
    t.reasoning = {"", separator};
    return t;
  }
  throw UsageError("");
}

// Jinja's `| trim`: leading and trailing whitespace removed.
std::string trimmed(const std::string& s) {
  const char* ws = " \t\n\r\f\v";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

// Python's s.strip('\n').
std::string stripped_newlines(const std::string& s) {
  const size_t b = s.find_first_not_of('\n');
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of('\n') - b + 1);
}

std::string read(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The model's tokenizer_config.json (null when there is none).
nlohmann::json tokenizer_config(const std::filesystem::path& model_dir) {
  const auto cfg = model_dir / "tokenizer_config.json";
  if (!std::filesystem::exists(cfg)) return nullptr;
  const std::string text = read(cfg);
  if (json_too_deep(text)) throw CheckpointError(cfg.string() + ": " + json_too_deep_message());
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw CheckpointError(cfg.string() + ": not valid JSON (" + e.what() + ")");
  }
}

// Its chat_template ("" when there is none, or when it is not one string).
std::string chat_template_text(const nlohmann::json& cfg) {
  if (!cfg.is_object() || !cfg.contains("chat_template") || !cfg["chat_template"].is_string()) return "";
  return cfg["chat_template"].get<std::string>();
}

// A special token as tokenizer_config.json writes it: a string or {"content": ...} ("" if neither).
std::string special_token(const nlohmann::json& cfg, const char* key) {
  if (!cfg.is_object() || !cfg.contains(key)) return "";
  const nlohmann::json& v = cfg[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return "";
}

}  // namespace

std::vector<std::string> builtin_templates() {
  return {"chatml", "qwen2.5", "qwen3", "llama3", "llama3.1", "mistral", "gemma", "phi3", "phi4", "olmo2", "deepseek",
          "deepseek-r1", "plain"};
}

ChatTemplate load_chat_template(const std::string& name, const std::string& separator) {
  for (const auto& b : builtin_templates())
    if (name == b) return builtin(name, separator);
  if (!std::filesystem::exists(name)) {
    std::string list;
    for (const auto& b : builtin_templates()) list += (list.empty() ? "" : ", ") + b;
    throw OptionError("template", option_name("template") + " '" + name + "': neither a built-in template (" + list +
                     ") nor a file");
  }
  nlohmann::json j;
  const std::string text = read(name);
  if (json_too_deep(text)) throw UsageError(name + ": " + json_too_deep_message());
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw UsageError(name + ": not valid JSON (" + e.what() + ")");
  }
  if (!j.is_object()) throw UsageError(name + ": a template file holds a JSON object, got " + std::string(j.type_name()));
  for (const char* key : {"user", "assistant"})
    if (!j.contains(key))
      throw UsageError(name + ": the template has no \"" + key + "\" entry ({\"prefix\", \"suffix\"}); "
                       "a template needs at least \"user\" and \"assistant\" (see configs/templates/)");
  nlohmann::json full = j;
  if (!full.contains("name")) full["name"] = std::filesystem::path(name).stem().string();
  return with_context(name, [&] { return template_from_json(full); });
}

nlohmann::ordered_json template_to_json(const ChatTemplate& t) {
  nlohmann::ordered_json j;
  j["name"] = t.name;
  j["begin"] = t.begin;
  for (auto [key, role] : {std::pair{"system", &t.system}, {"user", &t.user}, {"assistant", &t.assistant},
                           {"tool", &t.tool}, {"reasoning", &t.reasoning}, {"tool_call", &t.tool_call}})
    j[key] = {{"prefix", role->prefix}, {"suffix", role->suffix}};
  j["default_system"] = t.default_system;
  j["system_in_user"] = t.system_in_user;
  j["add_special_tokens"] = t.add_special_tokens;
  // Written only when set, so earlier runs' templates read the same.
  if (t.trim) j["trim"] = true;
  if (t.system_always) j["system_always"] = true;
  if (t.cut_history_reasoning) j["cut_history_reasoning"] = true;
  if (t.reasoning_always) j["reasoning_always"] = true;
  return j;
}

ChatTemplate template_from_json(const nlohmann::json& j) {
  static const std::set<std::string> kKeys = {"name", "begin", "system", "user", "assistant", "tool", "reasoning",
                                              "tool_call", "default_system", "system_in_user", "add_special_tokens", "trim",
                                              "system_always", "reasoning_always", "cut_history_reasoning", "origin"};
  if (!j.is_object()) throw UsageError("a template is a JSON object, got " + std::string(j.type_name()));
  for (const auto& [key, value] : j.items())
    if (!kKeys.count(key))
      throw UsageError("unknown template entry \"" + key + "\" (known: name, begin, system, user, assistant, tool, "
                       "reasoning, tool_call, default_system, system_in_user, add_special_tokens, trim, system_always, "
                       "reasoning_always, cut_history_reasoning)");
  auto text = [&](const nlohmann::json& obj, const std::string& key, const std::string& at) {
    if (!obj.contains(key)) return std::string();
    if (!obj[key].is_string())
      throw UsageError("\"" + at + "\": expected a string, got " + std::string(obj[key].type_name()));
    return obj[key].get<std::string>();
  };
  auto flag = [&](const std::string& key, bool fallback) {
    if (!j.contains(key)) return fallback;
    if (!j[key].is_boolean()) throw UsageError("\"" + key + "\": expected true or false, got " + j[key].dump());
    return j[key].get<bool>();
  };
  ChatTemplate t;
  t.name = j.contains("name") ? text(j, "name", "name") : "template";
  t.begin = text(j, "begin", "begin");
  // Entries left out: a tool result is a user turn; reasoning goes in <think> markers; a
  // template without a system entry puts the system message in the first user turn.
  t.reasoning = kThink;
  for (auto [key, role] : {std::pair{"system", &t.system}, {"user", &t.user}, {"assistant", &t.assistant},
                           {"tool", &t.tool}, {"reasoning", &t.reasoning}, {"tool_call", &t.tool_call}}) {
    if (!j.contains(key)) continue;
    const nlohmann::json& e = j[key];
    if (!e.is_object())
      throw UsageError(std::string("\"") + key + "\": expected an object {\"prefix\", \"suffix\"}, got " + e.type_name());
    for (const auto& [k, v] : e.items())
      if (k != "prefix" && k != "suffix")
        throw UsageError(std::string("\"") + key + "\": unknown entry \"" + k + "\" (expected prefix, suffix)");
    role->prefix = text(e, "prefix", std::string(key) + ".prefix");
    role->suffix = text(e, "suffix", std::string(key) + ".suffix");
  }
  if (!j.contains("tool")) t.tool = t.user;
  t.default_system = text(j, "default_system", "default_system");
  t.system_in_user = flag("system_in_user", !j.contains("system"));
  t.add_special_tokens = flag("add_special_tokens", true);
  t.trim = flag("trim", false);
  t.system_always = flag("system_always", false);
  t.reasoning_always = flag("reasoning_always", false);
  t.cut_history_reasoning = flag("cut_history_reasoning", false);
  return t;
}

std::string detect_template(const std::filesystem::path& model_dir, bool* unrecognised) {
  if (unrecognised) *unrecognised = false;
  const nlohmann::json cfg = tokenizer_config(model_dir);
  const std::string s = chat_template_text(cfg);
  if (s.empty()) return "plain";
  auto has = [&](const std::string& text) { return s.find(text) != std::string::npos; };
  if (has("<|im_sep|>")) {
    // Phi-4 writes ChatML's markers with <|im_sep|> after the role (tested before ChatML).
    // Phi-4-reasoning's template also writes its own long system message, which no preset does.
    if (!has("You are Phi, a language model trained by Microsoft")) return "phi4";
  } else {
    if (has("You are Qwen, created by Alibaba Cloud")) return "qwen2.5";
    // Qwen3 reads reasoning_content and writes a <think> block in the last assistant turn.
    if (has("<|im_start|>") && has("reasoning_content") && has("<think>")) return "qwen3";
    if (has("<|im_start|>")) return "chatml";
    // Llama 3.1 to 3.3 write a system turn with the knowledge date; Llama 3 does not.
    if (has("<|start_header_id|>") && has("Cutting Knowledge Date")) return "llama3.1";
    if (has("<|start_header_id|>")) return "llama3";
    if (has("[INST]")) return "mistral";
    if (has("<start_of_turn>")) return "gemma";
    // Phi-3 ends each turn with <|end|>; Zephyr and OLMo with the EOS token.
    if (has("<|user|>") && has("<|end|>")) return "phi3";
    // OLMo 2 opens with {{ bos_token }}, and both its BOS and EOS are <|endoftext|> (OLMo 1's
    // template opens with the EOS token; the same template on other tokens is not OLMo 2's).
    if (has("<|user|>") && has("<|assistant|>") && has("bos_token") &&
        special_token(cfg, "bos_token") == "<|endoftext|>" && special_token(cfg, "eos_token") == "<|endoftext|>")
      return "olmo2";
    // DeepSeek-V3.1 writes '</think>' (or '<think>') after <｜Assistant｜> in every assistant
    // turn: not the preset's rendering.
    if (has(deepseek_marker("User")) && has(deepseek_marker("Assistant")) && !has("</think>'}}") &&
        !has("<think>'}}"))
      return has("</think>") ? "deepseek-r1" : "deepseek";  // R1 cuts earlier turns at '</think>' 
  }
  if (unrecognised) *unrecognised = true;
  return "plain";
}

std::vector<std::string> template_warnings(const ChatTemplate& t, const Tokenizer& tok,
                                           const std::filesystem::path& model_dir) {
  std::vector<std::string> out;
  // Markers that are special tokens wherever they are used: <|...|>, <s>, </s>, <start_of_turn>,
  // <end_of_turn>, DeepSeek's <｜...｜>. ([INST] is ordinary text to some Mistral tokenizers, a
  // token to others.)
  static const std::regex kMarker(R"(<\|[^<>|\s]{1,40}\|>|</?s>|<(start|end)_of_turn>)");
  const std::string ds_open = "<" + kDeepSeekBar, ds_close = kDeepSeekBar + ">";
  std::set<std::string> markers;
  for (const std::string* piece :
       {&t.begin, &t.system.prefix, &t.system.suffix, &t.user.prefix, &t.user.suffix, &t.assistant.prefix,
        &t.assistant.suffix, &t.tool.prefix, &t.tool.suffix}) {
    for (std::sregex_iterator it(piece->begin(), piece->end(), kMarker), end; it != end; ++it)
      markers.insert(it->str());
    for (size_t b = piece->find(ds_open); b != std::string::npos; b = piece->find(ds_open, b + ds_open.size())) {
      const size_t e = piece->find(ds_close, b + ds_open.size());
      if (e == std::string::npos) break;
      if (e - b <= 80) markers.insert(piece->substr(b, e + ds_close.size() - b));
    }
  }
  // A marker that the model's own chat template writes is the model's format even where its
  // tokenizer reads it as several tokens (OLMo 2's <|user|>).
  const std::string own_template = chat_template_text(tokenizer_config(model_dir));
  std::string unknown;
  for (const auto& m : markers)
    if (own_template.find(m) == std::string::npos && tok.encode(m, false).ids.size() != 1)
      unknown += (unknown.empty() ? "" : ", ") + m;
  if (!unknown.empty())
    out.push_back("template " + t.name + " writes " + unknown +
                  ", which this tokenizer does not read as one token: they are scored as ordinary text "
                  "(a template of another model family?)");
  bool unrecognised = false;
  const std::string own = detect_template(model_dir, &unrecognised);
  const auto presets = builtin_templates();
  if (!unrecognised && own != "plain" && own != t.name &&
      std::find(presets.begin(), presets.end(), t.name) != presets.end())
    out.push_back("template " + t.name + " is not the model's own: its tokenizer_config.json chat_template is " + own);
  return out;
}

Rendered render(const ChatTemplate& t, const std::vector<Message>& messages) {
  if (messages.empty()) throw DataError("empty conversation");
  Rendered r;
  r.text = t.begin;
  std::string pending_system;
  bool system_pending = false;
  bool has_system = false;
  for (const auto& m : messages) has_system |= m.role == "system";
  std::vector<Message> msgs;
  if (!has_system && (t.system_always || !t.default_system.empty())) msgs.push_back({"system", t.default_system, "", {}});
  msgs.insert(msgs.end(), messages.begin(), messages.end());

  for (size_t i = 0; i < msgs.size(); ++i) {
    const Message& m = msgs[i];
    const bool last = i + 1 == msgs.size();
    if (m.role == "system" && t.system_in_user) {
      pending_system += (system_pending ? "\n\n" : "") + m.content;
      system_pending = true;  // an empty system message still opens the user turn with "\n\n" (Gemma 3)
      continue;
    }
    const ChatTemplate::Role& role = m.role == "system" ? t.system
                                     : m.role == "user" ? t.user
                                     : m.role == "tool" ? t.tool
                                                        : t.assistant;
    r.text += role.prefix;
    // The content as written: trimmed, or (Qwen3's, after its <think> block) without leading
    // newlines; `from` is where it starts in the message's own content.
    size_t from = 0, count = m.content.size();
    if (t.trim) {
      const std::string kept = trimmed(m.content);
      from = kept.empty() ? 0 : m.content.find_first_not_of(" \t\n\r\f\v");
      count = kept.size();
    }
    std::string content;
    if (m.role == "user" && system_pending) {
      content = pending_system + "\n\n";
      pending_system.clear();
      system_pending = false;
    }
    std::vector<Rendered::Piece> pieces;  // in `content`
    std::string empty_block;  // Qwen3's empty <think> block: the prompt's, as its non-thinking generation prompt writes it
    // Qwen3's template reads reasoning written in the content too ("<think>\n...\n</think>\n\n"
    // before the answer, when the message has no reasoning field): the reasoning is what lies
    // between the last <think> before the first </think> and it, the answer what follows the last
    // </think>; earlier turns keep the answer alone.
    size_t inline_from = 0, inline_size = 0;
    if (t.reasoning_always && m.role == "assistant" && m.reasoning.empty() && !t.trim) {
      const size_t first_close = m.content.find("</think>");
      if (first_close != std::string::npos) {
        size_t end = first_close;
        while (end > 0 && m.content[end - 1] == '\n') --end;
        const size_t open = end >= 7 ? m.content.rfind("<think>", end - 7) : std::string::npos;
        size_t begin = open == std::string::npos ? 0 : open + 7;
        while (begin < end && m.content[begin] == '\n') ++begin;
        inline_from = begin;
        inline_size = end - begin;
        from = m.content.rfind("</think>") + 8;
        count = m.content.size() - from;
        while (count > 0 && m.content[from] == '\n') ++from, --count;
      }
    }
    if (!last && t.cut_history_reasoning && m.role == "assistant") {
      const size_t close = m.content.rfind("</think>");
      if (close != std::string::npos && close + 8 >= from) {
        count = from + count - std::min(from + count, close + 8);
        from = close + 8;
      }
    }
    if (last && t.reasoning_always && m.role == "assistant") {
      const bool own = inline_size == 0;
      const size_t rb = own ? std::min(m.reasoning.size(), m.reasoning.find_first_not_of('\n')) : inline_from;
      const std::string reasoning = own ? stripped_newlines(m.reasoning) : m.content.substr(inline_from, inline_size);
      const std::string block = t.reasoning.prefix + reasoning + t.reasoning.suffix;
      if (reasoning.empty()) {
        empty_block = block;
      } else {
        pieces.push_back({own ? Rendered::kReasoning : Rendered::kContent, content.size() + t.reasoning.prefix.size(),
                          reasoning.size(), rb});
        content += block;
      }
      while (count > 0 && m.content[from] == '\n') ++from, --count;
    } else if (last && !m.reasoning.empty()) {
      pieces.push_back({Rendered::kReasoning, content.size() + t.reasoning.prefix.size(), m.reasoning.size(), 0});
      content += t.reasoning.prefix + m.reasoning + t.reasoning.suffix;
    }
    if (count > 0) pieces.push_back({Rendered::kContent, content.size(), count, from});
    content.append(m.content, from, count);
    for (size_t c = 0; c < m.tool_calls.size(); ++c) {
      content += (content.empty() ? "" : "\n") + t.tool_call.prefix;
      pieces.push_back({Rendered::kToolCall + static_cast<int>(c), content.size(), m.tool_calls[c].size(), 0});
      content += m.tool_calls[c] + t.tool_call.suffix;
    }
    if (last) {
      r.text += empty_block;
      r.response_begin = r.text.size();
      for (Rendered::Piece& p : pieces) p.begin += r.text.size();
      r.pieces = std::move(pieces);
      r.text += content;
      r.response_end = r.text.size();
    } else {
      r.text += content + role.suffix;
    }
  }
  return r;
}

}  // namespace air
