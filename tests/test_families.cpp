// Every model family end to end: `air probe`, `air score` and `air select` on a tiny checkpoint
// of the family (the HF fixture, its vocabulary widened to a real tokenizer of the family) with
// that tokenizer and the family's chat template, detected from its tokenizer_config.json.

#include "air/runtime.h"
#include "air/tokenizer.h"
#include "cli/cli.h"
#include "test_util.h"

#include <cmath>
#include <fstream>

namespace air::test {
namespace {

fs::path tokenizers_dir() { return fs::path(AIR_TEST_DATA_DIR) / "tokenizers"; }
fs::path templates_dir() { return fs::path(AIR_TEST_DATA_DIR) / "templates"; }
fs::path corpus() { return fs::path(AIR_MODELS_DIR) / ".." / "data" / "gsm8k-messages-sample.jsonl"; }

struct Family {
  std::string fixture;    // tests/data/fixtures/NAME
  std::string tokenizer;  // tests/data/tokenizers/NAME (tokenizer.json)
  std::string config;     // tokenizer_config.json: tests/data/templates/NAME, else the tokenizer's own
  std::string tmpl;       // the preset it must be detected as ...
  bool named = false;     // ... or, where the tokenizer_config.json has no chat_template, is named
};

std::vector<Family> families() {
  return {{"gemma2", "gemma3", "", "gemma"},
          {"gemma3", "gemma3", "", "gemma"},
          {"phi3", "mistral", "Phi-3.5-mini-instruct", "phi3"},
          {"phi3-longrope", "mistral", "Phi-3-mini-4k-instruct", "phi3"},
          {"olmo2", "cl100k", "OLMo-2-1124-13B-Instruct", "olmo2"},
          {"mixtral", "mistral", "", "mistral", true},
          {"qwen2-moe", "qwen2_5", "", "qwen2.5"},
          {"qwen3-moe", "qwen3", "", "qwen3"}};
}

// The fixture with its embeddings (and output head) widened to `vocab` rows, row i a copy of
// row i mod the old vocabulary: real weights at every id the tokenizer can give.
void widen_vocab(const fs::path& dir, int64_t vocab) {
  nlohmann::json c = read_json(dir / "config.json");
  const int64_t old = c["vocab_size"].get<int64_t>();
  std::vector<RawTensor> tensors = read_raw_tensors(dir / "model.safetensors");
  for (auto& t : tensors) {
    if (t.name != "model.embed_tokens.weight" && t.name != "lm_head.weight") continue;
    const size_t row = t.bytes.size() / static_cast<size_t>(old);
    std::string bytes;
    bytes.reserve(row * static_cast<size_t>(vocab));
    for (int64_t i = 0; i < vocab; ++i) bytes.append(t.bytes, static_cast<size_t>(i % old) * row, row);
    t.bytes = std::move(bytes);
    t.shape[0] = vocab;
  }
  write_safetensors(dir / "model.safetensors", tensors);
  c["vocab_size"] = vocab;
  write_text(dir / "config.json", c.dump(2));
}

void PrintTo(const Family& f, std::ostream* os) { *os << f.fixture << " with " << f.tokenizer; }

class FamilyTest : public TempDirTest, public ::testing::WithParamInterface<Family> {};

TEST_P(FamilyTest, ProbeScoreSelectWithItsTokenizerAndTemplate) {
  const Family& f = GetParam();
  const fs::path tok = tokenizers_dir() / f.tokenizer;
  ASSERT_TRUE(fs::exists(tok / "tokenizer.json")) << tok << " absent (the build unpacks it: scripts/unpack-tokenizers.sh)";
  const fs::path model = copy_fixture(f.fixture, "model");
  fs::copy_file(tok / "tokenizer.json", model / "tokenizer.json");
  fs::copy_file((f.config.empty() ? tok : templates_dir() / f.config) / "tokenizer_config.json",
                model / "tokenizer_config.json");
  widen_vocab(model, load_tokenizer(model.string())->vocab_size());

  // Six records of the GSM8K chat sample.
  const fs::path data = tmp_ / "data.jsonl";
  {
    std::ifstream in(corpus());
    std::ofstream out(data);
    std::string line;
    for (int i = 0; i < 6 && std::getline(in, line); ++i) out << line << "\n";
  }
  const fs::path heads = tmp_ / "heads.json", scores = tmp_ / "scores.jsonl", selected = tmp_ / "selected.jsonl";
  std::string err;
  ASSERT_EQ(run_air({"probe", "--model", model.string(), "--out", heads.string(), "--num-heads", "2", "--threads", "1"}, &err), 0)
      << err;
  std::vector<std::string> score = {"score", "--model", model.string(), "--heads", heads.string(), "--data",
                                    data.string(), "--out", scores.string(), "--threads", "1", "--truncate"};
  if (f.named) score.insert(score.end(), {"--template", f.tmpl});
  ASSERT_EQ(run_air(score, &err), 0) << err;
  const nlohmann::json meta = read_json(scores.string() + ".meta.json");
  EXPECT_EQ(meta["options"]["template"], f.tmpl) << f.fixture;
  EXPECT_EQ(meta["model"]["architecture"], read_json(model / "config.json")["architectures"][0]);
  std::ifstream in(scores);
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    ASSERT_TRUE(j.contains("air_score")) << f.fixture << ": " << line.substr(0, 300);
    EXPECT_TRUE(std::isfinite(j["air_score"].get<double>())) << line.substr(0, 300);
    EXPECT_GT(j["steps"].size(), 0u);
    ++lines;
  }
  EXPECT_EQ(lines, 6);
  ASSERT_EQ(run_air({"select", "--scores", scores.string(), "--data", data.string(), "--top-k", "2", "--out",
                     selected.string()},
                    &err),
            0)
      << err;
  std::ifstream sel(selected);
  int kept = 0;
  while (std::getline(sel, line)) ++kept;
  EXPECT_EQ(kept, 2);
}

INSTANTIATE_TEST_SUITE_P(Families, FamilyTest, ::testing::ValuesIn(families()), [](const auto& info) {
  std::string n = info.param.fixture;
  for (char& ch : n)
    if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
});

}  // namespace
}  // namespace air::test
