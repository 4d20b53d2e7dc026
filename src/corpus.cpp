#include "air/corpus.h"

#include "air/error.h"
#include "air/line_reader.h"
#include "air/tokenizer.h"

#include <nlohmann/json.hpp>
#include <xxhash.h>

#include <algorithm>
#include <cstdio>
#include <set>

namespace air {
namespace {

using nlohmann::json;

// Prompt/response field pairs recognised automatically, in order.
const std::pair<const char*, const char*> kPairs[] = {
    {"problem", "solution"}, {"question", "answer"},   {"prompt", "response"},
    {"prompt", "completion"}, {"query", "response"},   {"instruction", "response"},
    {"question", "response"}, {"input", "output"},     {"prompt", "output"},
    {"problem", "response"},  {"question", "solution"},
};
// Prompt fields, in the order a prompt is looked for.
const char* const kPromptFields[] = {"problem", "question", "prompt", "instruction", "query", "input"};
// Fields holding a reasoning trace, and the final-answer fields that may follow one.
const char* const kTraceFields[] = {"deepseek_reasoning", "reasoning", "reasoning_content", "thinking",
                                    "thought", "chain_of_thought", "rationale", "cot"};
const char* const kFinalFields[] = {"deepseek_solution", "attempt", "response", "output", "answer", "solution"};

// A field reference: "name" or "name[i]".
struct FieldRef {
  std::string name;
  int64_t index = -1;
  std::string text() const { return index < 0 ? name : name + "[" + std::to_string(index) + "]"; }
};

FieldRef parse_field(const std::string& ref) {
  FieldRef f{ref, -1};
  if (ref.size() > 3 && ref.back() == ']') {
    const size_t open = ref.rfind('[');
    const std::string digits = open == std::string::npos ? "" : ref.substr(open + 1, ref.size() - open - 2);
    if (!digits.empty() && digits.size() < 10 && digits.find_first_not_of("0123456789") == std::string::npos) {
      f.name = ref.substr(0, open);
      f.index = std::stoll(digits);
    }
  }
  return f;
}

// Reads one record: what it used, to tell the fields it left.
class Reader {
 public:
  explicit Reader(const json& j) : j_(j) {}

  bool has(const std::string& key) const { return j_.contains(key) && !j_[key].is_null(); }
  bool has_string(const std::string& key) const { return j_.contains(key) && j_[key].is_string(); }
  const json& at(const std::string& key) {
    used_.insert(key);
    return j_[key];
  }

  // A text field: a string; a list of one string; with an index, that element of a list. A list
  // of several strings holds alternatives (several generations of one prompt): never joined.
  std::string text(const std::string& ref) {
    const FieldRef f = parse_field(ref);
    if (!j_.contains(f.name)) throw DataError("missing field '" + f.name + "'");
    const json& v = at(f.name);
    if (f.index >= 0) {
      if (!v.is_array())
        throw DataError("field '" + f.text() + "': '" + f.name + "' is a " + v.type_name() + ", not a list");
      if (f.index >= static_cast<int64_t>(v.size()))
        throw DataError("field '" + f.text() + "': '" + f.name + "' has " + std::to_string(v.size()) +
                        " element(s)");
      const json& x = v[static_cast<size_t>(f.index)];
      if (!x.is_string())
        throw DataError("field '" + f.text() + "': expected a string, got " + std::string(x.type_name()));
      return x.get<std::string>();
    }
    if (v.is_string()) return v.get<std::string>();
    if (v.is_array() && v.size() == 1 && v[0].is_string()) return v[0].get<std::string>();
    if (v.is_array() && v.size() > 1 && std::all_of(v.begin(), v.end(), [](const json& x) { return x.is_string(); }))
      throw DataError("field '" + f.name + "' is a list of " + std::to_string(v.size()) +
                      " texts (alternative generations?), and air scores one response per record: "
                      "pick one with " + option_name("response_fields") + " '" + f.name + "[0]', or put each on its own "
                      "line (docs/RECIPES.md shows how)");
    if (v.is_array() && v.empty()) throw DataError("field '" + f.name + "' is an empty list");
    throw DataError("field '" + f.name + "': expected a string, got " +
                    std::string(v.is_array() ? "a list of non-strings" : v.type_name()));
  }

  // Top-level fields not used and not in `known`, holding more text than `response_bytes`.
  std::vector<std::string> unused(size_t response_bytes, const std::set<std::string>& known) const {
    std::vector<std::string> out;
    for (const auto& [key, v] : j_.items()) {
      if (used_.count(key) || known.count(key)) continue;
      size_t bytes = 0;
      if (v.is_string()) bytes = v.get_ref<const std::string&>().size();
      else if (v.is_array() || v.is_object()) bytes = v.dump().size();
      if (bytes > response_bytes) out.push_back(key);
    }
    return out;
  }

 private:
  const json& j_;
  std::set<std::string> used_;
};

std::string role_of(const std::string& r) {
  if (r == "user" || r == "human") return "user";
  if (r == "assistant" || r == "gpt" || r == "model" || r == "bot" || r == "chatgpt") return "assistant";
  if (r == "system" || r == "developer") return "system";
  if (r == "tool" || r == "function" || r == "ipython" || r == "observation") return "tool";
  throw DataError("unknown role '" + r + "' (expected system, user, assistant or tool)");
}

// A message's content: a string, or OpenAI content parts ({"type": "text", "text": ...}),
// concatenated; null is empty.
std::string content_text(const json& v, const std::string& at) {
  if (v.is_null()) return "";
  if (v.is_string()) return v.get<std::string>();
  if (!v.is_array()) throw DataError(at + ": expected a string or a list of content parts, got " + v.type_name());
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    const json& part = v[i];
    const std::string pat = at + "[" + std::to_string(i) + "]";
    if (part.is_string()) {
      out += part.get<std::string>();
      continue;
    }
    if (!part.is_object()) throw DataError(pat + ": expected a content part object, got " + part.type_name());
    const std::string type = part.contains("type") && part["type"].is_string() ? part["type"].get<std::string>() : "text";
    if (type != "text") throw DataError(pat + ": a content part of type '" + type + "', not text: air scores text only");
    if (!part.contains("text") || !part["text"].is_string())
      throw DataError(pat + ": a text part needs a string 'text', got " +
                      (part.contains("text") ? std::string(part["text"].type_name()) : std::string("none")));
    out += part["text"].get<std::string>();
  }
  return out;
}

// An assistant's tool calls (OpenAI "tool_calls" or the older "function_call") as compact JSON.
std::vector<std::string> tool_calls(const json& m, const std::string& at) {
  std::vector<std::string> out;
  auto call = [&](const json& f, const std::string& where) {
    if (!f.is_object() || !f.contains("name") || !f["name"].is_string())
      throw DataError(where + ": a tool call needs a string 'name'");
    json args = f.contains("arguments") ? f["arguments"] : json::object();
    if (args.is_string()) {  // OpenAI sends arguments as a JSON string
      const std::string& text = args.get_ref<const std::string&>();
      if (json_too_deep(text)) throw DataError(where + ": the tool call's arguments are " + json_too_deep_message());
      json parsed = json::parse(text, nullptr, false);
      if (!parsed.is_discarded()) args = parsed;
    }
    nlohmann::ordered_json c;
    c["name"] = f["name"];
    c["arguments"] = args;
    out.push_back(c.dump());
  };
  if (m.contains("tool_calls") && !m["tool_calls"].is_null()) {
    const json& calls = m["tool_calls"];
    if (!calls.is_array()) throw DataError(at + ".tool_calls: expected a list");
    for (size_t i = 0; i < calls.size(); ++i) {
      const json& c = calls[i];
      call(c.is_object() && c.contains("function") ? c["function"] : c, at + ".tool_calls[" + std::to_string(i) + "]");
    }
  }
  if (m.contains("function_call") && !m["function_call"].is_null()) call(m["function_call"], at + ".function_call");
  return out;
}

// A list of turns: {role, content} or ShareGPT's {from, value}, either in either list.
std::vector<Message> from_turns(const json& arr, const char* list) {
  if (!arr.is_array()) throw DataError("field '" + std::string(list) + "' must be a list");
  std::vector<Message> out;
  for (size_t i = 0; i < arr.size(); ++i) {
    const json& m = arr[i];
    const std::string at = std::string(list) + "[" + std::to_string(i) + "]";
    if (!m.is_object()) throw DataError(at + ": expected an object, got " + std::string(m.type_name()));
    const char* role_key = m.contains("role") ? "role" : "from";
    const char* content_key = m.contains("content") || !m.contains("value") ? "content" : "value";
    if (!m.contains(role_key) || !m[role_key].is_string())
      throw DataError(at + ": missing string field 'role' (or 'from')");
    Message msg;
    msg.role = role_of(m[role_key].get<std::string>());
    if (msg.role == "assistant") msg.tool_calls = tool_calls(m, at);
    for (const char* key : {"reasoning_content", "reasoning", "thinking"}) {
      if (msg.role != "assistant" || !m.contains(key) || m[key].is_null()) continue;
      if (!m[key].is_string())
        throw DataError(at + "." + key + ": expected a string, got " + std::string(m[key].type_name()));
      if (msg.reasoning.empty()) msg.reasoning = m[key].get<std::string>();
    }
    const bool has_content = m.contains(content_key) && !m[content_key].is_null();
    if (!has_content && msg.tool_calls.empty() && msg.reasoning.empty())
      throw DataError(at + ": no '" + std::string(content_key) + "' (or it is null), and no tool calls or reasoning");
    msg.content = has_content ? content_text(m[content_key], at + "." + content_key) : "";
    out.push_back(std::move(msg));
  }
  return out;
}

// Several fields joined, in order, by a blank line.
std::string joined(Reader& r, const std::vector<std::string>& fields) {
  std::string out;
  for (const auto& f : fields) out += (out.empty() ? "" : "\n\n") + r.text(f);
  return out;
}

std::string join_names(const std::vector<std::string>& fields) {
  std::string out;
  for (const auto& f : fields) out += (out.empty() ? "" : " + ") + f;
  return out;
}

// The prompt field: the one given, else the first present of kPromptFields not in `skip`.
std::string find_prompt(const Reader& r, const CorpusOptions& opt, const std::vector<std::string>& skip) {
  if (!opt.prompt_field.empty()) return opt.prompt_field;
  for (const char* p : kPromptFields)
    if (r.has(p) && std::find(skip.begin(), skip.end(), p) == skip.end()) return p;
  return "";
}

std::string id_of(const json& j, int64_t line_no, const std::string& id_field) {
  if (!id_field.empty() && j.is_object()) {
    const auto it = j.find(id_field);
    if (it != j.end()) {
      if (it->is_string()) return it->get<std::string>();
      if (it->is_number_integer()) return std::to_string(it->get<int64_t>());
      if (!it->is_null()) return it->dump();
    }
  }
  return std::to_string(line_no);
}

}  // namespace

std::string line_hash(const std::string& line) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(XXH3_64bits(line.data(), line.size())));
  return buf;
}

std::string record_id(const std::string& line, int64_t line_no, const std::string& id_field) {
  if (json_too_deep(line)) return std::to_string(line_no);  // rejected when read as a record
  return id_of(json::parse(line, nullptr, /*allow_exceptions=*/false), line_no, id_field);
}

CorpusFormat parse_corpus_format(const std::string& name) {
  if (name == "auto") return CorpusFormat::kAuto;
  if (name == "messages") return CorpusFormat::kMessages;
  if (name == "sharegpt") return CorpusFormat::kShareGpt;
  if (name == "alpaca") return CorpusFormat::kAlpaca;
  if (name == "prompt-response") return CorpusFormat::kPromptResponse;
  throw OptionError("format", option_name("format") + " '" + name +
                   "': expected auto, messages, sharegpt, alpaca or prompt-response");
}

void check_corpus_options(const CorpusOptions& opt) {
  std::vector<std::string> names = opt.response_fields;
  if (!opt.prompt_field.empty()) names.push_back(opt.prompt_field);
  for (const auto& f : names) {
    const FieldRef ref = parse_field(f);
    if (ref.name.empty() || ref.name.find_first_of("[]") != std::string::npos)
      throw UsageError("field name '" + f + "': expected NAME or NAME[i] with i a whole number");
  }
  for (size_t i = 0; i < opt.response_fields.size(); ++i)
    for (size_t k = i + 1; k < opt.response_fields.size(); ++k)
      if (opt.response_fields[i] == opt.response_fields[k])
        throw UsageError("response field '" + opt.response_fields[i] + "' is named twice");
  if (!opt.response_fields.empty() && opt.format != CorpusFormat::kAuto && opt.format != CorpusFormat::kPromptResponse)
    throw UsageError("response fields are named, which reads records as prompt-response, but another format is forced");
  if (!opt.prompt_field.empty() &&
      (opt.format == CorpusFormat::kMessages || opt.format == CorpusFormat::kShareGpt || opt.format == CorpusFormat::kAlpaca))
    throw UsageError("a prompt field is named, but the forced format takes the prompt from its own fields");
}

Record parse_record(const std::string& line, int64_t line_no, const CorpusOptions& opt) {
  if (auto bad = find_invalid_utf8(line))
    throw DataError("invalid UTF-8 at byte " + std::to_string(*bad) + " of the line");
  if (json_too_deep(line)) throw DataError("the record is " + json_too_deep_message());
  json j;
  try {
    j = json::parse(line);
  } catch (const json::exception& e) {
    throw DataError(std::string("malformed JSON (") + e.what() + ")");
  }
  if (!j.is_object()) throw DataError("expected a JSON object, got " + std::string(j.type_name()));

  Record rec;
  rec.line = line_no;
  rec.id = id_of(j, line_no, opt.id_field);
  rec.hash = line_hash(line);

  Reader r(j);
  if (!opt.id_field.empty() && j.contains(opt.id_field)) r.at(opt.id_field);
  std::set<std::string> known;  // reference fields a known layout leaves on purpose
  // A prompt/response record: the prompt (when there is one), then the response fields joined.
  auto pair = [&](const std::string& prompt, const std::vector<std::string>& response, const std::string& name) {
    for (const auto& f : response)
      if (!prompt.empty() && parse_field(f).name == parse_field(prompt).name)
        throw DataError("field '" + prompt + "' would be both the prompt and the response; name the response field");
    if (!prompt.empty()) rec.messages.push_back({"user", r.text(prompt)});
    rec.messages.push_back({"assistant", joined(r, response)});
    rec.layout = (name.empty() ? "" : name + ": ") + (prompt.empty() ? "(no prompt)" : prompt) + " -> " +
                 join_names(response);
  };

  CorpusFormat f = opt.format;
  if (!opt.response_fields.empty()) f = CorpusFormat::kPromptResponse;
  if (f == CorpusFormat::kAuto) {
    if (j.contains("messages")) f = CorpusFormat::kMessages;
    else if (j.contains("conversations")) f = CorpusFormat::kShareGpt;
    else if (j.contains("instruction") && j.contains("output")) f = CorpusFormat::kAlpaca;
    else f = CorpusFormat::kPromptResponse;
  }
  switch (f) {
    case CorpusFormat::kMessages:
      if (!j.contains("messages")) throw DataError("missing field 'messages'");
      rec.messages = from_turns(r.at("messages"), "messages");
      rec.layout = "messages";
      break;
    case CorpusFormat::kShareGpt:
      if (!j.contains("conversations")) throw DataError("missing field 'conversations'");
      rec.messages = from_turns(r.at("conversations"), "conversations");
      rec.layout = "conversations";
      break;
    case CorpusFormat::kAlpaca: {
      std::string prompt = r.text("instruction");
      if (r.has_string("input") && !r.at("input").get<std::string>().empty())
        prompt += "\n\n" + j["input"].get<std::string>();
      rec.messages = {{"user", prompt}, {"assistant", r.text("output")}};
      rec.layout = "alpaca: instruction + input -> output";
      break;
    }
    case CorpusFormat::kPromptResponse:
    case CorpusFormat::kAuto: {
      const std::string prompt = find_prompt(r, opt, {});  // of the known layouts below
      if (!opt.response_fields.empty()) {
        pair(find_prompt(r, opt, opt.response_fields), opt.response_fields, "");
      } else if (r.has("deepseek_thinking_trajectory") && r.has("deepseek_attempt")) {
        known = {"solution", "cot", "metadata", "gemini_thinking_trajectory", "gemini_attempt", "thinking_trajectories", "attempt"};
        pair(prompt, {"deepseek_thinking_trajectory", "deepseek_attempt"}, "s1K-1.1");
      } else if (r.has("thinking_trajectories") && r.has("attempt")) {
        known = {"solution", "cot", "metadata"};
        pair(prompt, {"thinking_trajectories", "attempt"}, "s1K");
      } else if (r.has("code") && (j["code"].is_string() || j["code"].is_array()) && !prompt.empty()) {
        known = {"solution", "gt_cot", "gt", "answer", "pred", "report", "score"};
        pair(prompt, {"code"}, "Sky-T1");
      } else if (r.has("generations") && j["generations"].is_array() && !prompt.empty()) {
        known = {"solution", "answer"};
        pair(prompt, {"generations"}, "OpenR1");
      } else {
        const char* trace = nullptr;
        for (const char* t : kTraceFields)
          if (r.has_string(t)) {
            trace = t;
            break;
          }
        if (trace && !prompt.empty()) {
          std::vector<std::string> response = {trace};
          for (const char* a : kFinalFields)
            if (r.has_string(a) && a != prompt) {
              response.push_back(a);
              break;
            }
          known = {"solution", "ground_truth_solution", "answer"};
          pair(prompt, response, "reasoning trace");
        } else {
          bool found = false;
          for (const auto& [p, resp] : kPairs) {
            if (j.contains(p) && j.contains(resp)) {
              pair(opt.prompt_field.empty() ? p : opt.prompt_field, {resp}, "");
              found = true;
              break;
            }
          }
          if (!found)
            throw DataError("no known record layout (messages, conversations, instruction/output, "
                            "problem/solution, question/answer, prompt/response, s1K, Sky-T1, ...); name the "
                            "fields (" + option_name("prompt_field") + ", " + option_name("response_fields") + ")");
        }
      }
      break;
    }
  }
  if (!opt.prompt_field.empty() && (f == CorpusFormat::kMessages || f == CorpusFormat::kShareGpt || f == CorpusFormat::kAlpaca))
    rec.layout += " (the named prompt field is not used)";
  // A top-level system prompt (Bespoke-Stratos, OpenThoughts) where the turns have none.
  if (r.has("system") && !j["system"].is_string())
    throw DataError("field 'system': expected a string, got " + std::string(j["system"].type_name()));
  const bool turns_have_system =
      std::any_of(rec.messages.begin(), rec.messages.end(), [](const Message& m) { return m.role == "system"; });
  if (r.has_string("system") && !j["system"].get<std::string>().empty() && !turns_have_system) {
    rec.messages.insert(rec.messages.begin(), {"system", r.at("system").get<std::string>()});
    rec.layout += " + system";
  } else if (turns_have_system) {
    known.insert("system");  // the turns' own system message wins
  }
  if (rec.messages.empty() || rec.messages.back().role != "assistant")
    throw DataError("the last message must be the assistant's response");
  const Message& resp = rec.messages.back();
  if (resp.content.empty() && resp.reasoning.empty() && resp.tool_calls.empty()) throw DataError("empty response");
  size_t response_bytes = resp.content.size() + resp.reasoning.size();
  for (const auto& c : resp.tool_calls) response_bytes += c.size();
  rec.unused = r.unused(response_bytes, known);
  return rec;
}

}  // namespace air
