// `air render`: how each record is rendered, tokenized and cut into steps (no model run).

#include "air/error.h"
#include "cli/cli.h"
#include "cli/corpus_flags.h"
#include "cli/io.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

namespace air::cli {
namespace {

struct RenderOptions {
  std::string tokenizer;  // model directory or tokenizer file
  std::string data;       // corpus JSONL
  std::string out = "-";  // JSONL, one line per good record
  bool tokens = false;    // also write ids and offsets
  CorpusFlags corpus;
};

void run_render(const RenderOptions& opt) {
  const std::string rejects = !opt.corpus.rejects.empty() ? opt.corpus.rejects
                              : is_stream_output(opt.out) ? std::string()
                                                          : opt.out + ".rejects.jsonl";
  check_input_file({"corpus (--data)", opt.data});
  check_outputs({{"output (--out)", opt.out}, {"rejects file", rejects}},
                {{"corpus (--data)", opt.data}, {"tokenizer (--tokenizer)", opt.tokenizer}});
  check_writable(opt.out);
  check_writable(rejects);
  check_jsonl(opt.data);
  CorpusSetup setup = make_corpus_setup(opt.corpus, opt.tokenizer);
  spdlog::info("template {}, tokenizer {}", setup.tmpl.name, setup.tokenizer->kind());
  OutputFile out(opt.out);
  const CorpusStats st = read_corpus(
      opt.data, setup.tmpl, *setup.tokenizer, *setup.steps, setup.options, [&](Sample&& s) {
        const size_t rb = s.rendered.response_begin;
        nlohmann::json steps = nlohmann::json::array();
        for (const auto& st : s.steps)
          steps.push_back({{"begin", st.begin}, {"end", st.end}, {"tokens", st.token_end - st.token_begin}});
        nlohmann::json j = {{"id", s.record.id},
                            {"line", s.record.line},
                            {"text", s.rendered.text},
                            {"response_begin", rb},
                            {"n_prompt_tokens", s.prompt_tokens},
                            {"n_tokens", s.response_tokens()},
                            {"truncated", s.truncated},
                            {"steps", steps}};
        if (opt.tokens) {
          j["ids"] = s.ids;
          j["offsets"] = s.offsets;
        }
        out.stream() << j.dump() << "\n";
      });
  out.commit();
  write_rejects(rejects, opt.data, st.rejects);
  log_corpus_summary(st, opt.corpus, opt.data);
  spdlog::info("{} records: {} rendered ({} truncated), {} rejected{}", st.lines, st.samples,
               st.truncated, st.rejects.size(),
               st.rejects.empty() || rejects.empty() ? "" : " (see " + rejects + ")");
}

}  // namespace

void register_render(CLI::App& app) {
  auto opt = std::make_shared<RenderOptions>();
  CLI::App* cmd = app.add_subcommand(
      "render", "Show how records are rendered, tokenized and cut into steps (no model run)");
  cmd->add_option("--tokenizer,--model", opt->tokenizer, "model directory or tokenizer file")->required();
  cmd->add_option("--data", opt->data, "corpus JSONL (- = stdin)")->required();
  cmd->add_option("--out", opt->out, "output JSONL (- = stdout)")->capture_default_str();
  cmd->add_flag("--tokens", opt->tokens, "also write ids and byte offsets");
  add_corpus_flags(*cmd, opt->corpus);
  cmd->callback([opt] { run_render(*opt); });
}

}  // namespace air::cli
