// `air tokenize`: token ids (and byte offsets) of JSON strings, one a line.

#include "air/error.h"
#include "air/tokenizer.h"
#include "cli/cli.h"
#include "cli/io.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

namespace air::cli {
namespace {

struct TokenizeOptions {
  std::string tokenizer;  // model directory or tokenizer file
  std::string input = "-";
  std::string out = "-";
  bool special = false;   // add the post-processor's special tokens (BOS)
  bool offsets = false;   // also write byte offsets
};

void run_tokenize(const TokenizeOptions& opt) {
  check_input_file({"input (--input)", opt.input});
  check_outputs({{"output (--out)", opt.out}}, {{"input (--input)", opt.input}, {"tokenizer (--tokenizer)", opt.tokenizer}});
  const auto tok = load_tokenizer(opt.tokenizer);
  OutputFile out(opt.out);
  int64_t n = 0;
  for_each_line(opt.input, [&](const std::string& line, int64_t line_no) {
    const std::string where = opt.input + ":" + std::to_string(line_no);
    const nlohmann::json j = parse_json_line(line, where);
    std::string text;
    if (j.is_string()) text = j.get<std::string>();
    else if (j.is_object() && j.contains("text") && j["text"].is_string()) text = j["text"].get<std::string>();
    else throw DataError(where + ": expected a JSON string or an object with a string 'text'");
    const Encoding enc = with_context(where, [&] { return tok->encode(text, opt.special); });
    nlohmann::json o = {{"ids", enc.ids}};
    if (opt.offsets) o["offsets"] = enc.offsets;
    out.stream() << o.dump() << "\n";
    ++n;
  });
  out.commit();
  spdlog::debug("tokenized {} lines", n);
}

}  // namespace

void register_tokenize(CLI::App& app) {
  auto opt = std::make_shared<TokenizeOptions>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Token ids of JSON strings, one a line");
  cmd->add_option("--tokenizer", opt->tokenizer, "model directory, tokenizer.json or tokenizer.model")
      ->required();
  cmd->add_option("--input", opt->input, "JSONL of strings or {\"text\": ...} (- = stdin)")
      ->capture_default_str();
  cmd->add_option("--out", opt->out, "output JSONL (- = stdout)")->capture_default_str();
  cmd->add_flag("--special", opt->special, "add the post-processor's special tokens (BOS)");
  cmd->add_flag("--offsets", opt->offsets, "also write each token's [begin, end) byte range");
  cmd->callback([opt] { run_tokenize(*opt); });
}

}  // namespace air::cli
