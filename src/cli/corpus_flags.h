#pragma once

// Corpus, template and step flags shared by the commands that read a corpus.

#include "air/corpus_setup.h"

#include <memory>
#include <string>

namespace CLI {
class App;
}

namespace air::cli {

// The corpus settings as flags, and where rejected records go.
struct CorpusFlags : CorpusSettings {
  std::string rejects;  // rejects file (empty = OUT.rejects.jsonl)
};

void add_corpus_flags(CLI::App& cmd, CorpusFlags& f);

// The library's corpus setup for these flags, its warnings logged and the corpus's notices
// (layouts, unused fields) logged as reading meets them.
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
