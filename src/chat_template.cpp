#include "air/chat_template.h"

#include "air/error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

namespace air {
namespace {

// Reasoning markers of the reasoning models' templates (Qwen3, QwQ, DeepSeek-R1 distills).
const ChatTemplate::Role kThink = {"<think>\n", "\n</think>\n\n"};

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

std::string read(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

std::vector<std::string> builtin_templates() { return {"chatml", "qwen2.5", "llama3", "mistral", "plain"}; }

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
  try {
    j = nlohmann::json::parse(read(name));
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
  return j;
}

ChatTemplate template_from_json(const nlohmann::json& j) {
  static const std::set<std::string> kKeys = {"name", "begin", "system", "user", "assistant", "tool", "reasoning",
                                              "tool_call", "default_system", "system_in_user", "add_special_tokens",
                                              "origin"};
  if (!j.is_object()) throw UsageError("a template is a JSON object, got " + std::string(j.type_name()));
  for (const auto& [key, value] : j.items())
    if (!kKeys.count(key))
      throw UsageError("unknown template entry \"" + key + "\" (known: name, begin, system, user, assistant, tool, "
                       "reasoning, tool_call, default_system, system_in_user, add_special_tokens)");
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
  return t;
}

std::string detect_template(const std::filesystem::path& model_dir, bool* unrecognised) {
  if (unrecognised) *unrecognised = false;
  const auto cfg = model_dir / "tokenizer_config.json";
  if (!std::filesystem::exists(cfg)) return "plain";
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read(cfg));
  } catch (const nlohmann::json::exception& e) {
    throw CheckpointError(cfg.string() + ": not valid JSON (" + e.what() + ")");
  }
  if (!j.contains("chat_template") || !j["chat_template"].is_string()) return "plain";
  const std::string s = j["chat_template"].get<std::string>();
  if (s.find("You are Qwen, created by Alibaba Cloud") != std::string::npos) return "qwen2.5";
  if (s.find("<|im_start|>") != std::string::npos) return "chatml";
  if (s.find("<|start_header_id|>") != std::string::npos) return "llama3";
  if (s.find("[INST]") != std::string::npos) return "mistral";
  if (unrecognised) *unrecognised = true;
  return "plain";
}

std::vector<std::string> template_warnings(const ChatTemplate& t, const Tokenizer& tok,
                                           const std::filesystem::path& model_dir) {
  std::vector<std::string> out;
  // Markers that are special tokens wherever they are used: <|...|>, <s>, </s>, <start_of_turn>,
  // <end_of_turn>. ([INST] is ordinary text to some Mistral tokenizers, a token to others.)
  static const std::regex kMarker(R"(<\|[^<>|\s]{1,40}\|>|</?s>|<(start|end)_of_turn>)");
  std::set<std::string> markers;
  for (const std::string* piece :
       {&t.begin, &t.system.prefix, &t.system.suffix, &t.user.prefix, &t.user.suffix, &t.assistant.prefix,
        &t.assistant.suffix, &t.tool.prefix, &t.tool.suffix})
    for (std::sregex_iterator it(piece->begin(), piece->end(), kMarker), end; it != end; ++it)
      markers.insert(it->str());
  std::string unknown;
  for (const auto& m : markers)
    if (tok.encode(m, false).ids.size() != 1) unknown += (unknown.empty() ? "" : ", ") + m;
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
  bool has_system = false;
  for (const auto& m : messages) has_system |= m.role == "system";
  std::vector<Message> msgs;
  if (!has_system && !t.default_system.empty()) msgs.push_back({"system", t.default_system});
  msgs.insert(msgs.end(), messages.begin(), messages.end());

  for (size_t i = 0; i < msgs.size(); ++i) {
    const Message& m = msgs[i];
    const bool last = i + 1 == msgs.size();
    if (m.role == "system" && t.system_in_user) {
      pending_system += (pending_system.empty() ? "" : "\n\n") + m.content;
      continue;
    }
    const ChatTemplate::Role& role = m.role == "system" ? t.system
                                     : m.role == "user" ? t.user
                                     : m.role == "tool" ? t.tool
                                                        : t.assistant;
    r.text += role.prefix;
    std::string content;
    if (last && !m.reasoning.empty()) content = t.reasoning.prefix + m.reasoning + t.reasoning.suffix;
    content += m.content;
    if (m.role == "user" && !pending_system.empty()) {
      content = pending_system + "\n\n" + content;
      pending_system.clear();
    }
    for (const auto& call : m.tool_calls)
      content += (content.empty() ? "" : "\n") + t.tool_call.prefix + call + t.tool_call.suffix;
    if (last) {
      r.response_begin = r.text.size();
      r.text += content;
      r.response_end = r.text.size();
    } else {
      r.text += content + role.suffix;
    }
  }
  return r;
}

}  // namespace air
