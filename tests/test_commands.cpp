// The commands end to end on the bundled model, for the settings that had no test of their own:
// probe items from a file, probe text, kv-retrieval, resuming with another batch size or a
// shard, a template file, an id field, and scores on stdout.

#include "cli/cli.h"
#include "air/build_info.h"
#include "test_util.h"

#include <torch/version.h>

#include <fstream>

namespace air::test {
namespace {

fs::path data(const std::string& name) { return fs::path(AIR_MODELS_DIR) / ".." / "data" / name; }

std::vector<nlohmann::json> records(const fs::path& p) {
  std::vector<nlohmann::json> out;
  std::ifstream in(p);
  for (std::string l; std::getline(in, l);)
    if (!l.empty()) out.push_back(nlohmann::json::parse(l));
  return out;
}

class CommandsTest : public TempDirTest {
 protected:
  std::string model() const { return model_dir("stories260K").string(); }
  int air(const std::vector<std::string>& args, std::string* err = nullptr) { return run_air(args, err); }
};

TEST_F(CommandsTest, ProbeFromItemsTextAndKvRetrieval) {
  // Items made by hand: a span of ids, then the same span again.
  std::string items;
  for (int i = 0; i < 6; ++i) {
    nlohmann::json ids = nlohmann::json::array(), ctx = nlohmann::json::array(), tgt = nlohmann::json::array();
    ids.push_back(1);
    for (int k = 0; k < 12; ++k) ids.push_back(20 + 7 * i + k);
    for (int k = 0; k < 12; ++k) ids.push_back(20 + 7 * i + k);
    for (int k = 1; k <= 12; ++k) ctx.push_back(k);
    for (int k = 12; k < 24; ++k) tgt.push_back(k);
    items += nlohmann::json{{"ids", ids}, {"context", ctx}, {"targets", tgt}}.dump() + "\n";
  }
  write_text(tmp_ / "items.jsonl", items);
  std::string err;
  ASSERT_EQ(air({"probe", "--model", model(), "--probe-data", (tmp_ / "items.jsonl").string(), "--num-heads", "2",
                 "--out", (tmp_ / "h1.json").string()}, &err), 0) << err;
  auto h = read_json(tmp_ / "h1.json");
  EXPECT_EQ(h["probe"]["source"], (tmp_ / "items.jsonl").string());
  EXPECT_EQ(h["probe"]["items_total"], 6);
  EXPECT_EQ(h["selected"].size(), 2u);

  std::string text;
  for (const auto& r : records(data("stories-sample.jsonl")))
    text += r["response"].get<std::string>() + "\n\n";
  write_text(tmp_ / "text.txt", text);
  for (const char* kind : {"repeat", "kv-retrieval"}) {
    const fs::path out = tmp_ / (std::string(kind) + ".json");
    ASSERT_EQ(air({"probe", "--model", model(), "--probe", kind, "--probe-text", (tmp_ / "text.txt").string(),
                   "--num-items", "8", "--out", out.string()}, &err), 0) << kind << ": " << err;
    h = read_json(out);
    EXPECT_EQ(h["probe"]["kind"], kind);
    EXPECT_EQ(h["probe"]["source"], (tmp_ / "text.txt").string());
    EXPECT_EQ(h["probe"]["items_total"], 8);
    EXPECT_EQ(h["heads"].size(), 40u);  // 5 layers x 8 heads, every one ranked
  }
}

// A run resumed with another --batch-tokens, or one shard resumed, gives the scores of one run.
TEST_F(CommandsTest, ResumingWithAnotherBatchSizeOrAShard) {
  const std::string c = data("stories-sample.jsonl").string();
  std::string err;
  ASSERT_EQ(air({"probe", "--model", model(), "--data", c, "--num-heads", "2", "--out", (tmp_ / "h.json").string()}), 0);
  const std::vector<std::string> base = {"score", "--model", model(), "--data", c, "--heads", (tmp_ / "h.json").string()};
  auto with = [&](std::vector<std::string> more) {
    std::vector<std::string> a = base;
    a.insert(a.end(), more.begin(), more.end());
    return a;
  };
  ASSERT_EQ(air(with({"--out", (tmp_ / "whole.jsonl").string(), "--batch-tokens", "100000"})), 0);
  // A run cut short after 7 records, with small batches: its partial output and description.
  ASSERT_EQ(air(with({"--out", (tmp_ / "small.jsonl").string(), "--batch-tokens", "64"})), 0);
  std::ifstream in(tmp_ / "small.jsonl");
  std::string line, head;
  for (int i = 0; i < 7 && std::getline(in, line); ++i) head += line + "\n";
  write_text(tmp_ / "cut.jsonl.partial", head);
  nlohmann::json side = read_json(tmp_ / "small.jsonl.meta.json");
  side.erase("counts");
  write_text(tmp_ / "cut.jsonl.partial.json", side.dump());
  ASSERT_EQ(air(with({"--out", (tmp_ / "cut.jsonl").string(), "--batch-tokens", "100000", "--resume"}), &err), 0) << err;
  const auto whole = records(tmp_ / "whole.jsonl"), cut = records(tmp_ / "cut.jsonl");
  ASSERT_EQ(cut.size(), whole.size());
  for (size_t i = 0; i < whole.size(); ++i) {
    EXPECT_EQ(cut[i]["line"], whole[i]["line"]);
    EXPECT_NEAR(cut[i]["air_score"].get<double>(), whole[i]["air_score"].get<double>(), 1e-5) << i;
  }
  EXPECT_EQ(read_json(tmp_ / "cut.jsonl.meta.json")["counts"]["resumed"], 7);

  ASSERT_EQ(air(with({"--out", (tmp_ / "s1.jsonl").string(), "--shard", "1/3"})), 0);
  const std::string shard = read_text(tmp_ / "s1.jsonl");
  ASSERT_EQ(air(with({"--out", (tmp_ / "s1.jsonl").string(), "--shard", "1/3", "--resume"}), &err), 0) << err;
  EXPECT_EQ(read_text(tmp_ / "s1.jsonl"), shard);
  EXPECT_EQ(read_json(tmp_ / "s1.jsonl.meta.json")["counts"]["resumed"], records(tmp_ / "s1.jsonl").size());
  EXPECT_EQ(air(with({"--out", (tmp_ / "s1.jsonl").string(), "--shard", "2/3", "--resume"}), &err), 2)
      << "another shard's output was resumed: " << err;
}

TEST_F(CommandsTest, TemplateFileIdFieldAndStdout) {
  std::string text;
  int n = 0;
  for (const auto& r : records(data("stories-sample.jsonl"))) {
    if (n++ == 5) break;
    text += nlohmann::json{{"uid", "u" + std::to_string(100 + n)}, {"instruction", r["prompt"]}, {"output", r["response"]}}.dump() + "\n";
  }
  write_text(tmp_ / "c.jsonl", text);
  const fs::path tmpl = fs::path(AIR_MODELS_DIR) / ".." / "configs" / "templates" / "alpaca.json";
  std::string err;
  ASSERT_EQ(air({"score", "--model", model(), "--data", (tmp_ / "c.jsonl").string(), "--out", (tmp_ / "s.jsonl").string(),
                 "--template", tmpl.string(), "--id-field", "uid", "--num-heads", "2"}, &err), 0) << err;
  const auto scored = records(tmp_ / "s.jsonl");
  ASSERT_EQ(scored.size(), 5u);
  EXPECT_EQ(scored[0]["id"], "u101");
  const auto meta = read_json(tmp_ / "s.jsonl.meta.json");
  EXPECT_EQ(meta["template"]["name"], "alpaca");
  EXPECT_EQ(meta["template"]["origin"], tmpl.string());
  EXPECT_EQ(meta["options"]["id_field"], "uid");
  // The meta records the build as `air --version` prints it.
  EXPECT_EQ(meta["build"]["libtorch"], TORCH_VERSION);
  EXPECT_EQ(meta["build"]["commit"], build_info().commit);
  EXPECT_EQ(meta["build"]["fused_attention"], nn::fused_attention_compiled());
  // select takes the id field from the meta.
  ASSERT_EQ(air({"select", "--data", (tmp_ / "c.jsonl").string(), "--scores", (tmp_ / "s.jsonl").string(), "--top-k", "2",
                 "--weights-out", (tmp_ / "w.jsonl").string(), "--out", (tmp_ / "sel.jsonl").string()}, &err), 0) << err;
  for (const auto& w : records(tmp_ / "w.jsonl")) EXPECT_EQ(w["id"].get<std::string>().rfind("u1", 0), 0u) << w.dump();

  // --out -: the records on stdout, no file beside.
  fs::create_directories(tmp_ / "here");
  testing::internal::CaptureStdout();
  const int rc = air({"score", "--model", model(), "--data", (tmp_ / "c.jsonl").string(), "--out", "-",
                      "--heads", (tmp_ / "s.jsonl.heads.json").string(), "--template", tmpl.string(), "--id-field", "uid"});
  const std::string out = testing::internal::GetCapturedStdout();
  ASSERT_EQ(rc, 0);
  std::istringstream lines(out);
  int count = 0;
  for (std::string l; std::getline(lines, l);) {
    const auto j = nlohmann::json::parse(l);
    EXPECT_EQ(j["air_score"], scored[count]["air_score"]);
    ++count;
  }
  EXPECT_EQ(count, 5);
  EXPECT_FALSE(fs::exists(fs::path("-.meta.json")));
  EXPECT_FALSE(fs::exists(fs::path("-.rejects.jsonl")));
}

}  // namespace
}  // namespace air::test
