// `air weights`: the selected records in a student's tokenization with per-token loss weights.

#include "air/weights_job.h"
#include "cli/cli.h"

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

namespace air::cli {

void register_weights(CLI::App& app) {
  auto opt = std::make_shared<WeightsJobOptions>();
  CLI::App* cmd = app.add_subcommand(
      "weights", "Write records as a student model's input_ids, labels and per-token loss weights from the step weights");
  cmd->add_option("--data", opt->data, "the records (the output of `air select`, or the scored corpus)")->required()->group("Input");
  cmd->add_option("--scores", opt->scores, "their scores JSONL (several: the outputs of --shard runs)")->required()->group("Input");
  cmd->add_option("--tokenizer", opt->tokenizer,
                  "the student model's folder (tokenizer and chat template), tokenizer.json or tokenizer.model")
      ->required()
      ->group("Student");
  cmd->add_option("--template", opt->tmpl, "the student's chat template: auto (from its folder), a preset or a JSON file")
      ->capture_default_str()
      ->group("Student");
  cmd->add_option("--separator", opt->separator, "the plain template's separator")->group("Student");
  cmd->add_option("--max-length", opt->max_length, "leave out records longer than this in student tokens (0: no limit)")
      ->capture_default_str()
      ->group("Student");
  cmd->add_flag("--allow-mixed", opt->allow_mixed, "use score files whose metas differ")->group("Input");
  cmd->add_option("--id-field", opt->fields.id_field, "record id field, for score files without a meta")->group("Input");
  cmd->add_option("--prompt-field", opt->fields.prompt_field, "prompt field, for score files without a meta")->group("Input");
  cmd->add_option("--response-field", opt->fields.response_fields, "response field(s), for score files without a meta")
      ->delimiter(',')
      ->group("Input");
  cmd->add_option("--out", opt->out, "JSONL {id, input_ids, labels, loss_weights} (- = stdout)")
      ->capture_default_str()
      ->group("Output");
  cmd->callback([opt] {
    LogEvents events;
    const WeightsJobResult r = run_weights_job(*opt, events);
    spdlog::info("{} of {} records written ({} response tokens weighted), {} left out -> {}", r.written, r.records,
                 r.response_tokens, r.skipped, opt->out);
  });
}

}  // namespace air::cli
