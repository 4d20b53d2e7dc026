#pragma once

// Corpus, template and step flags shared by the commands that read a corpus.

#include "air/dataset.h"

#include <memory>
#include <string>

namespace CLI {
class App;
}

namespace air::cli {

struct CorpusFlags {
  std::string format = "auto";      // auto | messages | sharegpt | alpaca | prompt-response
  std::string prompt_field;         // explicit prompt field
  std::vector<std::string> response_fields;  // explicit response fields, joined in order
  std::string id_field = "id";      // record id field
  std::string tmpl = "auto";        // built-in name, template file, or auto (from the model)
  std::string separator = "\n\n";   // plain template's prompt/response separator
  std::string step_delimiter = "\\n\\s*\\n";  // regex that ends a step
  int64_t min_step_tokens = 4;      // shorter steps merge into the one before
  int64_t max_length = -1;          // tokens per sample (0 = no limit, -1 = the model's context)
  bool truncate = false;            // cut over-long samples instead of rejecting them
  bool strict = false;              // stop at the first bad record
  std::string rejects;              // rejects file (empty = OUT.rejects.jsonl)
};

void add_corpus_flags(CLI::App& cmd, CorpusFlags& f);

// Everything needed to turn corpus lines into samples for a model directory. --max-length's
// default is the model's context, max_position_embeddings in the config.json beside the
// tokenizer, at least 4,096 (no limit where there is no config.json).
struct CorpusSetup {
  std::unique_ptr<Tokenizer> tokenizer;
  ChatTemplate tmpl;
  std::string template_origin;  // "detected from FILE", "given", or the template file
  std::unique_ptr<StepSplitter> steps;
  DatasetOptions options;
};
CorpusSetup make_corpus_setup(const CorpusFlags& f, const std::string& tokenizer_path);

// After a corpus is read: warns when most records are a single step (the step delimiter does
// not fit the data) and sums up the layouts and unused fields.
void log_corpus_summary(const CorpusStats& st, const CorpusFlags& f, const std::string& corpus);

// Writes rejects as JSONL ({line, id, reason, record[, record_base64]}) to `path` (nothing when
// it is empty; an empty file when there are none, so that none is left from an earlier run);
// logs the first few.
void write_rejects(const std::string& path, const std::string& corpus,
                   const std::vector<Reject>& rejects);

}  // namespace air::cli
