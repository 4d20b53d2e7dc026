#include "air/corpus_setup.h"

#include "air/error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>

namespace air {
namespace {

// max_position_embeddings of the config.json in dir, at least 4,096 (rotary models run past
// their context; a small model with a short one, like the bundled stories260K's 512, would
// otherwise reject most reasoning traces); 0 (no limit) without a config.json.
int64_t default_max_length(const std::filesystem::path& dir) {
  constexpr int64_t kAtLeast = 4096;
  const std::filesystem::path config = dir / "config.json";
  if (!std::filesystem::exists(config)) return 0;
  std::ifstream in(config);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw CheckpointError(config.string() + ": malformed JSON (" + e.what() + ")");
  }
  const auto it = j.find("max_position_embeddings");
  const int64_t context = it != j.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
  return std::max(context, kAtLeast);
}

}  // namespace

CorpusSetup make_corpus_setup(const CorpusSettings& f, const std::string& tokenizer_path) {
  CorpusSetup s;
  s.tokenizer = load_tokenizer(tokenizer_path);
  const std::filesystem::path p(tokenizer_path);
  const std::filesystem::path dir = std::filesystem::is_directory(p) ? p : p.parent_path();
  std::string name = f.tmpl;
  if (name == "auto") {
    bool unrecognised = false;
    name = detect_template(dir, &unrecognised);
    s.template_origin = "detected from " + (dir / "tokenizer_config.json").string();
    if (unrecognised)
      s.warnings.push_back((dir / "tokenizer_config.json").string() +
                           ": its chat_template matches no preset (chatml, qwen2.5, llama3, mistral): records are "
                           "rendered with the plain template; name a preset or a template file that matches the model");
  } else {
    s.template_origin = std::filesystem::is_regular_file(name) ? name : "given";
  }
  s.tmpl = load_chat_template(name, f.separator);
  for (std::string& w : template_warnings(s.tmpl, *s.tokenizer, dir)) s.warnings.push_back(std::move(w));
  s.steps = std::make_unique<StepSplitter>(f.step_delimiter, f.min_step_tokens);
  s.options.corpus.format = parse_corpus_format(f.format);
  s.options.corpus.prompt_field = f.prompt_field;
  s.options.corpus.response_fields = f.response_fields;
  s.options.corpus.id_field = f.id_field;
  check_corpus_options(s.options.corpus);
  if (f.max_length < -1) throw UsageError("max_length must be >= 0 (0 = no limit)");
  s.options.sample.max_length = f.max_length >= 0 ? f.max_length : default_max_length(dir);
  s.options.sample.truncate = f.truncate;
  s.options.strict = f.strict;
  return s;
}

}  // namespace air
