#include "air/corpus.h"

#include "air/error.h"
#include "air/tokenizer.h"

#include <nlohmann/json.hpp>
#include <xxhash.h>

#include <cstdio>

namespace air {
namespace {

using nlohmann::json;

// Prompt/response field pairs recognised automatically, in order.
const std::pair<const char*, const char*> kPairs[] = {
    {"problem", "solution"}, {"question", "answer"},   {"prompt", "response"},
    {"prompt", "completion"}, {"query", "response"},   {"instruction", "response"},
    {"question", "response"}, {"input", "output"},     {"prompt", "output"},
};

// A text field: a string, or an array of strings joined by blank lines.
std::string text_field(const json& j, const std::string& key) {
  if (!j.contains(key)) throw DataError("missing field '" + key + "'");
  const json& v = j[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_array() && !v.empty()) {
    std::string out;
    for (const auto& x : v) {
      if (!x.is_string())
        throw DataError("field '" + key + "': expected a string or an array of strings");
      out += (out.empty() ? "" : "\n\n") + x.get<std::string>();
    }
    return out;
  }
  throw DataError("field '" + key + "': expected a string, got " + std::string(v.type_name()));
}

std::string role_of(const std::string& r) {
  if (r == "user" || r == "human") return "user";
  if (r == "assistant" || r == "gpt" || r == "model" || r == "bot") return "assistant";
  if (r == "system") return "system";
  throw DataError("unknown role '" + r + "' (expected system, user or assistant)");
}

std::vector<Message> from_turns(const json& arr, const char* list, const char* role_key,
                                const char* content_key) {
  if (!arr.is_array()) throw DataError("field '" + std::string(list) + "' must be an array");
  std::vector<Message> out;
  for (size_t i = 0; i < arr.size(); ++i) {
    const json& m = arr[i];
    const std::string at = std::string(list) + "[" + std::to_string(i) + "]";
    if (!m.is_object() || !m.contains(role_key) || !m[role_key].is_string())
      throw DataError(at + ": missing string field '" + role_key + "'");
    if (!m.contains(content_key) || !m[content_key].is_string())
      throw DataError(at + ": missing string field '" + content_key + "'");
    out.push_back({role_of(m[role_key].get<std::string>()), m[content_key].get<std::string>()});
  }
  return out;
}

std::vector<Message> prompt_response(const json& j, const std::string& p, const std::string& r) {
  std::vector<Message> out;
  if (!p.empty()) out.push_back({"user", text_field(j, p)});
  out.push_back({"assistant", text_field(j, r)});
  return out;
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

bool read_line(std::istream& in, std::string& line, size_t max_bytes, bool* too_long) {
  line.clear();
  *too_long = false;
  std::streambuf* sb = in.rdbuf();
  bool any = false;
  for (;;) {
    const int c = sb->sbumpc();
    if (c == std::char_traits<char>::eof()) {
      if (!any) in.setstate(std::ios::eofbit);
      return any;
    }
    any = true;
    if (c == '\n') return true;
    if (line.size() < max_bytes) line.push_back(static_cast<char>(c));
    else *too_long = true;
  }
}

std::string line_hash(const std::string& line) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(XXH3_64bits(line.data(), line.size())));
  return buf;
}

std::string record_id(const std::string& line, int64_t line_no, const std::string& id_field) {
  return id_of(json::parse(line, nullptr, /*allow_exceptions=*/false), line_no, id_field);
}

CorpusFormat parse_corpus_format(const std::string& name) {
  if (name == "auto") return CorpusFormat::kAuto;
  if (name == "messages") return CorpusFormat::kMessages;
  if (name == "sharegpt") return CorpusFormat::kShareGpt;
  if (name == "alpaca") return CorpusFormat::kAlpaca;
  if (name == "prompt-response") return CorpusFormat::kPromptResponse;
  throw UsageError("--format '" + name +
                   "': expected auto, messages, sharegpt, alpaca or prompt-response");
}

Record parse_record(const std::string& line, int64_t line_no, const CorpusOptions& opt) {
  if (auto bad = find_invalid_utf8(line))
    throw DataError("invalid UTF-8 at byte " + std::to_string(*bad) + " of the line");
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

  CorpusFormat f = opt.format;
  if (!opt.response_field.empty()) f = CorpusFormat::kPromptResponse;
  if (f == CorpusFormat::kAuto) {
    if (j.contains("messages")) f = CorpusFormat::kMessages;
    else if (j.contains("conversations")) f = CorpusFormat::kShareGpt;
    else if (j.contains("instruction") && j.contains("output")) f = CorpusFormat::kAlpaca;
    else f = CorpusFormat::kPromptResponse;
  }
  switch (f) {
    case CorpusFormat::kMessages:
      rec.messages = from_turns(j.value("messages", json()), "messages", "role", "content");
      break;
    case CorpusFormat::kShareGpt:
      rec.messages = from_turns(j.value("conversations", json()), "conversations", "from", "value");
      break;
    case CorpusFormat::kAlpaca: {
      std::string prompt = text_field(j, "instruction");
      if (j.contains("input") && j["input"].is_string() && !j["input"].get<std::string>().empty())
        prompt += "\n\n" + j["input"].get<std::string>();
      rec.messages = {{"user", prompt}, {"assistant", text_field(j, "output")}};
      break;
    }
    case CorpusFormat::kPromptResponse:
    case CorpusFormat::kAuto: {
      if (!opt.response_field.empty()) {
        rec.messages = prompt_response(j, opt.prompt_field, opt.response_field);
      } else if (j.contains("question") && j.contains("thinking_trajectories") &&
                 j.contains("attempt")) {
        // s1K: the thinking, then the final attempt.
        rec.messages = {{"user", text_field(j, "question")},
                        {"assistant", text_field(j, "thinking_trajectories") + "\n\n" +
                                          text_field(j, "attempt")}};
      } else {
        bool found = false;
        for (const auto& [p, r] : kPairs) {
          if (j.contains(p) && j.contains(r)) {
            rec.messages = prompt_response(j, opt.prompt_field.empty() ? p : opt.prompt_field, r);
            found = true;
            break;
          }
        }
        if (!found)
          throw DataError("no known record layout (messages, conversations, instruction/output, "
                          "problem/solution, question/answer, prompt/response, ...); name the "
                          "fields with --prompt-field/--response-field");
      }
      break;
    }
  }
  if (rec.messages.empty() || rec.messages.back().role != "assistant")
    throw DataError("the last message must be the assistant's response");
  if (rec.messages.back().content.empty()) throw DataError("empty response");
  return rec;
}

}  // namespace air
