#include "air/corpus_setup.h"

#include "air/error.h"
#include "air/line_reader.h"
#include "air/output.h"
#include "air/tokenizer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace air {
namespace {

std::string base64(const std::string& bytes) {
  static const char kDigits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t v = static_cast<unsigned char>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    if (i + 2 < bytes.size()) v |= static_cast<unsigned char>(bytes[i + 2]);
    out += kDigits[(v >> 18) & 63];
    out += kDigits[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? kDigits[(v >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? kDigits[v & 63] : '=';
  }
  return out;
}

}  // namespace

ModelContext model_context(const std::filesystem::path& dir) {
  ModelContext c;
  const std::filesystem::path config = dir / "config.json";
  if (!std::filesystem::exists(config)) return c;
  std::ifstream in(config);
  std::stringstream ss;
  ss << in.rdbuf();
  if (json_too_deep(ss.str())) throw CheckpointError(config.string() + ": " + json_too_deep_message());
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {
    throw CheckpointError(config.string() + ": malformed JSON (" + e.what() + ")");
  }
  if (j.contains("text_config") && j["text_config"].is_object() && !j.contains("max_position_embeddings")) j = j["text_config"];
  auto integer = [&](const nlohmann::json& o, const char* key) -> int64_t {
    return o.is_object() && o.contains(key) && o[key].is_number_integer() ? o[key].get<int64_t>() : 0;
  };
  int64_t positions = integer(j, "max_position_embeddings");
  const char* field = "max_position_embeddings";
  if (positions <= 0) {
    positions = integer(j, "n_positions");
    field = "n_positions";
  }
  if (positions <= 0) return c;
  c.tokens = positions;
  c.why = std::string(field) + " " + std::to_string(positions) + " in its config.json";
  // Position scaling that stretches the trained context (linear, dynamic, YaRN): factor times
  // the original context. Llama 3 and LongRoPE configs state the stretched context already.
  const nlohmann::json rs = j.value("rope_scaling", nlohmann::json());
  if (rs.is_object() && rs.contains("factor") && rs["factor"].is_number()) {
    std::string type = rs.value("rope_type", rs.value("type", std::string()));
    const double factor = rs["factor"].get<double>();
    if ((type == "linear" || type == "dynamic" || type == "yarn") && std::isfinite(factor) && factor > 1 && factor < 1e6) {
      const int64_t original = integer(rs, "original_max_position_embeddings") > 0
                                   ? integer(rs, "original_max_position_embeddings") : positions;
      const auto stretched = static_cast<int64_t>(static_cast<double>(original) * factor);
      if (stretched > c.tokens) {
        c.tokens = stretched;
        c.why += ", stretched by its " + type + " rope_scaling (factor " + nlohmann::json(factor).dump() + ")";
      }
    }
  }
  return c;
}

std::string CorpusSettings::template_file() const {
  std::error_code ec;
  return tmpl != "auto" && std::filesystem::is_regular_file(tmpl, ec) ? tmpl : std::string();
}

CorpusSetup make_corpus_setup(const CorpusSettings& f, const std::string& tokenizer_path) {
  CorpusSetup s;
  s.tokenizer = load_tokenizer(tokenizer_path);
  const std::filesystem::path p(tokenizer_path);
  const std::filesystem::path dir = std::filesystem::is_directory(p) ? p : p.parent_path();
  std::string name = f.tmpl;
  if (name == "auto") {
    bool unrecognised = false;
    name = detect_template(dir, &unrecognised);
    std::error_code ec;
    const std::filesystem::path config = dir / "tokenizer_config.json";
    s.template_origin = std::filesystem::exists(config, ec)
                            ? "detected from " + config.string()
                            : "no tokenizer_config.json in " + (dir.empty() ? std::string(".") : dir.string()) +
                                  " to detect a chat template from";
    bool chat_markers = false;  // the tokenizer knows a chat family's turn markers
    for (const char* marker : {"<|im_start|>", "<|start_header_id|>", "<start_of_turn>", "<|user|>", "[INST]"})
      chat_markers = chat_markers || s.tokenizer->token_id(marker).has_value();
    if (name == "plain" && !std::filesystem::exists(config, ec) && chat_markers)
      s.warnings.push_back(s.template_origin + ": records are rendered with the plain template; name the model's "
                           "template (" + option_name("template") + ") if it has one");
    if (unrecognised) {
      std::string presets;
      for (const auto& t : builtin_templates())
        if (t != "plain") presets += (presets.empty() ? "" : ", ") + t;
      s.warnings.push_back((dir / "tokenizer_config.json").string() + ": its chat_template matches no preset (" +
                           presets + "): records are rendered with the plain template; name a preset or a "
                           "template file that matches the model");
    }
  } else {
    s.template_origin = std::filesystem::is_regular_file(name) ? name : "given";
  }
  s.tmpl = load_chat_template(name, f.separator);
  for (std::string& w : template_warnings(s.tmpl, *s.tokenizer, dir)) s.warnings.push_back(std::move(w));
  s.splitter = std::make_unique<StepSplitter>(f.step_delimiter, f.min_step_tokens);
  s.options.corpus.format = parse_corpus_format(f.format);
  s.options.corpus.prompt_field = f.prompt_field;
  s.options.corpus.response_fields = f.response_fields;
  s.options.corpus.id_field = f.id_field;
  check_corpus_options(s.options.corpus);
  if (f.max_length < -1) throw OptionError("max_length", option_name("max_length") + " must be >= 0 (0 = no limit)");
  if (f.max_length >= 0) {
    s.options.sample.max_length = f.max_length;
  } else {
    const ModelContext context = model_context(dir);
    s.options.sample.max_length = context.tokens;
    if (context.tokens > 0)
      s.options.sample.max_length_why = "the model's context (" + context.why + "; --truncate cuts a longer record)";
  }
  s.options.sample.truncate = f.truncate;
  s.options.strict = f.strict;
  return s;
}

void report_corpus_notices(CorpusSetup& setup, JobEvents& events) {
  for (const std::string& w : setup.warnings) events.warn(w);
  setup.options.on_notice = [&events](bool warning, int64_t line, const std::string& text) {
    if (!warning) {
      events.info("records are read as " + text + " (first at line " + std::to_string(line) + ")");
      if (text.find("(no prompt)") != std::string::npos)
        events.warn("line " + std::to_string(line) +
                    ": no prompt field found, so records render with no user turn and the copy heads have nothing "
                    "in the context to retrieve from; name it with " + option_name("prompt_field"));
    } else {
      events.warn("line " + std::to_string(line) + ": " + text +
                  "; name the fields to score with " + option_name("response_fields") + " (and " + option_name("prompt_field") + ")");
    }
  };
}

void report_corpus_summary(const CorpusStats& st, const CorpusSettings& settings, const std::string& corpus,
                           JobEvents& events) {
  if (st.layouts.size() > 1) {
    std::string list;
    for (const auto& [layout, n] : st.layouts) list += (list.empty() ? "" : "; ") + layout + ": " + std::to_string(n);
    events.warn(corpus + ": records are read in " + std::to_string(st.layouts.size()) + " different layouts (" + list +
                ")");
  }
  for (const auto& [field, n] : st.unused_fields)
    events.warn(corpus + ": field '" + field + "' was left unused in " + std::to_string(n) +
                " records although it holds more text than the response");
  if (st.samples > 0 && 2 * st.single_step > st.samples)
    events.warn(corpus + ": " + std::to_string(st.single_step) + " of " + std::to_string(st.samples) +
                " records are a single step (" + option_name("step_delimiter") + " '" + settings.step_delimiter +
                "'), so their step weights are all 1: use a delimiter that fits the data, e.g. '\\n' for GSM8K-style "
                "answers, '\\n\\s*\\n' (the default) or '\\n\\n(?=Wait|Alternatively|But)' for long chains of "
                "thought (docs/RECIPES.md)");
}

void write_rejects(const std::string& path, const std::string& corpus, const std::vector<Reject>& rejects,
                   JobEvents& events) {
  constexpr size_t kTold = 5;  // the first few are told; all are in the file
  for (size_t i = 0; i < std::min(rejects.size(), kTold); ++i)
    events.warn(corpus + ":" + std::to_string(rejects[i].line) + ": rejected: " + rejects[i].reason);
  if (rejects.size() > kTold) events.warn("... " + std::to_string(rejects.size() - kTold) + " more rejected records");
  if (path.empty()) return;
  OutputFile out(path);  // written even when empty: no rejects file of an earlier run is left
  for (const Reject& r : rejects) {
    nlohmann::json j = {{"line", r.line}, {"id", r.id}, {"reason", r.reason}};
    // The record verbatim when it is valid UTF-8; else shown with bad bytes replaced, and its
    // exact bytes in base64 so that nothing of it is lost.
    j["record"] = r.raw;
    if (find_invalid_utf8(r.raw)) j["record_base64"] = base64(r.raw);
    out.stream() << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  }
  out.commit();
}

}  // namespace air
