#pragma once

// Corpus, template and step flags shared by the commands that read a corpus.

#include "air/corpus_setup.h"

#include <string>

namespace CLI {
class App;
}

namespace air::cli {

// The corpus settings as flags; with `rejects`, also --rejects (where rejected records go).
void add_corpus_flags(CLI::App& cmd, CorpusSettings& f, std::string* rejects = nullptr);

}  // namespace air::cli
