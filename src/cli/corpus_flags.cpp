#include "cli/corpus_flags.h"

#include "air/chat_template.h"

#include <CLI/CLI.hpp>

namespace air::cli {

void add_corpus_flags(CLI::App& cmd, CorpusSettings& f, std::string* rejects) {
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
  std::string presets;
  for (const auto& t : builtin_templates()) presets += t + ", ";
  cmd.add_option("--template", f.tmpl, "chat template: auto, " + presets + "or a JSON file")
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
                 "tokens per sample (default: the model's context, max_position_embeddings with its rope scaling; 0 = no limit); a longer record is rejected, or cut with --truncate")
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
  if (rejects) cmd.add_option("--rejects", *rejects, "rejected records file (default: OUT.rejects.jsonl)")->group(output);
}

}  // namespace air::cli
