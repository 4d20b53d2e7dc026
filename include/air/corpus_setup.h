#pragma once

// How corpus lines become samples for one model: the settings a job takes, and what they load
// (tokenizer, chat template, step splitter, reading options).

#include "air/dataset.h"
#include "air/job_events.h"

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace air {

struct CorpusSettings {
  std::string format = "auto";               // auto | messages | sharegpt | alpaca | prompt-response
  std::string prompt_field;                  // explicit prompt field
  std::vector<std::string> response_fields;  // explicit response fields, joined in order
  std::string id_field = "id";               // record id field
  std::string tmpl = "auto";                 // preset name, template file, or auto (from the model)
  // The template file, when tmpl names one (an input to keep safe), else "".
  std::string template_file() const;
  std::string separator = "\n\n";            // the plain template's prompt/response separator
  std::string step_delimiter = "\\n\\s*\\n";  // regex that ends a step
  int64_t min_step_tokens = 4;               // shorter steps merge into the one before
  int64_t max_length = -1;                   // tokens per sample (0 = no limit, -1 = the model's context)
  bool truncate = false;                     // cut over-long samples instead of rejecting them
  bool strict = false;                       // stop at the first bad record
};

struct CorpusSetup {
  std::unique_ptr<Tokenizer> tokenizer;
  ChatTemplate tmpl;
  std::string template_origin;  // "detected from FILE", "given", or the template file
  std::unique_ptr<StepSplitter> splitter;  // cuts a response into steps
  DatasetOptions options;
  std::vector<std::string> warnings;  // what the caller should tell (a template that may not fit)
};

// The positions a model was made for, from the config.json in `dir`: max_position_embeddings
// (or n_positions), stretched by a linear, dynamic or YaRN rope_scaling's factor; 0 when the
// config does not say (or there is no config.json). `why` says where the figure comes from.
struct ModelContext {
  int64_t tokens = 0;
  std::string why;
};
ModelContext model_context(const std::filesystem::path& dir);

// Loads the tokenizer at `tokenizer_path` (a model folder or a tokenizer file) and everything
// else the settings name. The default max_length is the model's context (model_context of the
// folder beside the tokenizer; no limit where it does not say): a record past it is rejected, or
// cut with `truncate`, never scored at positions the model never saw. Throws UsageError for
// settings that cannot work.
CorpusSetup make_corpus_setup(const CorpusSettings& settings, const std::string& tokenizer_path);

// Tells `events` what reading a corpus with this setup meets: the setup's warnings now, and, as
// records are read, the first record in each layout and the first that leaves a longer field
// unused (through DatasetOptions::on_notice, which this sets). `events` must outlive the reading.
void report_corpus_notices(CorpusSetup& setup, JobEvents& events);

// After a corpus is read: warns when most records are a single step (the step delimiter does not
// fit the data), when layouts were mixed, and for each longer field left unused.
void report_corpus_summary(const CorpusStats& st, const CorpusSettings& settings, const std::string& corpus,
                           JobEvents& events);

// Writes rejects as JSONL ({line, id, reason, record[, record_base64]}) to `path` (nothing when
// it is empty; an empty file when there are none, so that none is left from an earlier run), and
// warns of the first few.
void write_rejects(const std::string& path, const std::string& corpus, const std::vector<Reject>& rejects,
                   JobEvents& events);

}  // namespace air
