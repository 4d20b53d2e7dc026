#include "air/chat_template.h"

#include "air/error.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

namespace air {
namespace {

ChatTemplate chatml() {
  ChatTemplate t;
  t.name = "chatml";
  t.system = {"<|im_start|>system\n", "<|im_end|>\n"};
  t.user = {"<|im_start|>user\n", "<|im_end|>\n"};
  t.assistant = {"<|im_start|>assistant\n", "<|im_end|>\n"};
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
    t.add_special_tokens = false;  // BOS is written in the text
    return t;
  }
  if (name == "mistral") {
    ChatTemplate t;
    t.name = name;
    t.begin = "<s>";
    t.user = {"[INST] ", " [/INST]"};
    t.assistant = {"", "</s>"};
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
    throw UsageError("--template '" + name + "': neither a built-in template (" + list +
                     ") nor a file");
  }
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read(name));
  } catch (const nlohmann::json::exception& e) {
    throw UsageError(name + ": not valid JSON (" + e.what() + ")");
  }
  ChatTemplate t;
  try {
    t.name = j.value("name", std::filesystem::path(name).stem().string());
    t.begin = j.value("begin", "");
    for (auto [key, role] : {std::pair{"system", &t.system}, {"user", &t.user}, {"assistant", &t.assistant}}) {
      if (!j.contains(key)) continue;
      role->prefix = j[key].value("prefix", "");
      role->suffix = j[key].value("suffix", "");
    }
    t.default_system = j.value("default_system", "");
    t.system_in_user = j.value("system_in_user", false);
    t.add_special_tokens = j.value("add_special_tokens", true);
  } catch (const nlohmann::json::exception& e) {
    throw UsageError(name + ": malformed template (" + e.what() + ")");
  }
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
                                                        : t.assistant;
    r.text += role.prefix;
    std::string content = m.content;
    if (m.role == "user" && !pending_system.empty()) {
      content = pending_system + "\n\n" + content;
      pending_system.clear();
    }
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
