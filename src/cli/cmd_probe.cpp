// `air probe`: rank retrieval heads and write heads.json.

#include "air/output.h"
#include "cli/cli.h"
#include "cli/io.h"
#include "cli/probe_flags.h"

#include <CLI/CLI.hpp>

namespace air::cli {
namespace {

struct ProbeCmdOptions {
  std::string model;
  std::string out = "heads.json";
  std::string data;  // corpus whose responses give the probe text
  ProbeFlags probe;
  CorpusFlags corpus;
  RuntimeOptions runtime;
};

}  // namespace

void register_probe(CLI::App& app) {
  auto opt = std::make_shared<ProbeCmdOptions>();
  CLI::App* cmd = app.add_subcommand("probe", "Rank retrieval heads and select the critical set");
  cmd->add_option("--model", opt->model, "HuggingFace model directory")->required();
  cmd->add_option("--out", opt->out, "heads file to write")->capture_default_str();
  cmd->add_option("--data", opt->data, "corpus JSONL whose responses give the probe text");
  add_probe_flags(*cmd, opt->probe);
  add_corpus_flags(*cmd, opt->corpus);
  add_runtime_flags(*cmd, opt->runtime);
  cmd->callback([opt] {
    check_input_file({"corpus (--data)", opt->data});
    check_input_file({"probe items (--probe-data)", opt->probe.probe_data});
    check_input_file({"probe text (--probe-text)", opt->probe.probe_text});
    check_outputs({{"heads file (--out)", opt->out}},
                  {{"model folder (--model)", opt->model},
                   {"corpus (--data)", opt->data},
                   {"probe items (--probe-data)", opt->probe.probe_data},
                   {"probe text (--probe-text)", opt->probe.probe_text}});
    check_writable(opt->out);
    check_jsonl(opt->data);
    const LoadedModel m = load_model(opt->model, opt->runtime);
    const CorpusSetup corpus = make_corpus_setup(opt->corpus, opt->model);
    check_tokenizer_fits(*corpus.tokenizer, m.checkpoint.config().vocab_size, opt->model);
    probe_and_write(m, opt->probe, corpus, opt->data, opt->out);
  });
}

}  // namespace air::cli
