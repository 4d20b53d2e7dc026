#include "cli/corpus_flags.h"

#include "air/error.h"
#include "cli/io.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

namespace air::cli {

void add_corpus_flags(CLI::App& cmd, CorpusFlags& f) {
  const std::string input = "Input", tmpl = "Template", steps = "Steps", output = "Output";
  cmd.add_option("--format", f.format, "auto, messages, sharegpt, alpaca or prompt-response")
      ->capture_default_str()
      ->group(input);
  cmd.add_option("--prompt-field", f.prompt_field, "field holding the prompt")
      ->group(input);
  cmd.add_option("--response-field", f.response_fields,
                 "field(s) holding the response, joined in order by a blank line (a,b or repeated; name[i] = "
                 "the i-th of a list)")
      ->delimiter(',')
      ->group(input);
  cmd.add_option("--id-field", f.id_field, "field holding the record id (default: line number)")
      ->capture_default_str()
      ->group(input);
  cmd.add_option("--template", f.tmpl,
                 "chat template: auto, chatml, qwen2.5, llama3, mistral, plain, or a JSON file")
      ->capture_default_str()
      ->group(tmpl);
  cmd.add_option("--separator", f.separator, "separator of the plain template")
      ->group(tmpl);
  cmd.add_option("--step-delimiter", f.step_delimiter, "regex ending a reasoning step")
      ->capture_default_str()
      ->group(steps);
  cmd.add_option("--min-step-tokens", f.min_step_tokens, "shorter steps merge into the one before")
      ->capture_default_str()
      ->group(steps);
  cmd.add_option("--max-length", f.max_length,
                 "tokens per sample (default: the model's max_position_embeddings, at least 4096; 0 = no limit)")
      ->check(CLI::Validator(
          [](std::string& v) -> std::string {
            return !v.empty() && v[0] != '-' ? "" : "expected 0 (no limit) or a number of tokens, got " + v;
          },
          "TOKENS"))
      ->group(input);
  cmd.add_flag("--truncate", f.truncate, "cut over-long samples at --max-length instead of rejecting")
      ->group(input);
  cmd.add_flag("--strict", f.strict, "stop at the first bad record instead of rejecting it")
      ->group(input);
  cmd.add_option("--rejects", f.rejects, "rejected records file (default: OUT.rejects.jsonl)")
      ->group(output);
}

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

CorpusSetup make_corpus_setup(const CorpusFlags& f, const std::string& tokenizer_path) {
  CorpusSetup s = air::make_corpus_setup(f, tokenizer_path);
  for (const std::string& w : s.warnings) spdlog::warn("{}", w);
  s.options.on_notice = [](bool warning, int64_t line, const std::string& text) {
    if (!warning) {
      spdlog::info("records are read as {} (first at line {})", text, line);
      if (text.find("(no prompt)") != std::string::npos)
        spdlog::warn("line {}: no prompt field found, so records render with no user turn and the copy heads have "
                     "nothing in the context to retrieve from; name it with --prompt-field", line);
    } else {
      spdlog::warn("line {}: {}; name the fields to score with --response-field (and --prompt-field)", line, text);
    }
  };
  return s;
}

void log_corpus_summary(const CorpusStats& st, const CorpusFlags& f, const std::string& corpus) {
  if (st.layouts.size() > 1) {
    std::string list;
    for (const auto& [layout, n] : st.layouts) list += (list.empty() ? "" : "; ") + layout + ": " + std::to_string(n);
    spdlog::warn("{}: records are read in {} different layouts ({})", corpus, st.layouts.size(), list);
  }
  for (const auto& [field, n] : st.unused_fields)
    spdlog::warn("{}: field '{}' was left unused in {} records although it holds more text than the response",
                 corpus, field, n);
  const int64_t samples = st.samples;
  if (samples > 0 && 2 * st.single_step > samples)
    spdlog::warn("{}: {} of {} records are a single step (--step-delimiter '{}'), so their step weights are all 1: "
                 "use a delimiter that fits the data, e.g. '\\n' for GSM8K-style answers, '\\n\\s*\\n' (the "
                 "default) or '\\n\\n(?=Wait|Alternatively|But)' for long chains of thought (docs/RECIPES.md)",
                 corpus, st.single_step, samples, f.step_delimiter);
}

void write_rejects(const std::string& path, const std::string& corpus,
                   const std::vector<Reject>& rejects) {
  // The first few are logged; all are in the file.
  constexpr size_t kLogged = 5;
  for (size_t i = 0; i < std::min(rejects.size(), kLogged); ++i)
    spdlog::warn("{}:{}: rejected: {}", corpus, rejects[i].line, rejects[i].reason);
  if (rejects.size() > kLogged) spdlog::warn("... {} more rejected records", rejects.size() - kLogged);
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

}  // namespace air::cli
