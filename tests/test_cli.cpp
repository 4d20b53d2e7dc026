// The command line, run in-process: outputs, exit codes and the absence of partial outputs.

#include "cli/cli.h"
#include "air/corpus_setup.h"
#include "test_util.h"

#include <ATen/Context.h>

#include <fstream>

namespace air::test {
namespace {

class CliTest : public TempDirTest {
 protected:
  // Writes the fixture's cases as an ids JSONL file.
  fs::path write_ids(const nlohmann::json& expected) {
    const fs::path p = tmp_ / "ids.jsonl";
    std::string text;
    for (const auto& c : expected["cases"]) text += nlohmann::json{{"ids", c["ids"]}}.dump() + "\n";
    write_text(p, text);
    return p;
  }
  std::vector<nlohmann::json> read_lines(const fs::path& p) {
    std::vector<nlohmann::json> out;
    std::ifstream in(p);
    std::string line;
    while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
    return out;
  }
  static double max_diff(const nlohmann::json& a, const nlohmann::json& b) {
    EXPECT_EQ(a.size(), b.size());
    double d = 0;
    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
      d = std::max(d, std::abs(a[i].get<double>() - b[i].get<double>()));
    return d;
  }
};

TEST_F(CliTest, LossMatchesHuggingFacePlainAndMasked) {
  for (const char* fixture : {"qwen3", "mistral"}) {
    const auto expected = read_json(fixture_dir(fixture) / "expected.json");
    const fs::path ids = write_ids(expected);
    const fs::path out = tmp_ / "loss.jsonl";
    ASSERT_EQ(cli::run({"loss", "--model", fixture_dir(fixture).string(), "--input", ids.string(),
                        "--out", out.string(), "--threads", "1", "--batch-tokens", "64", "--dtype", "fp32"}),
              0);
    auto lines = read_lines(out);
    ASSERT_EQ(lines.size(), expected["cases"].size());
    for (size_t i = 0; i < lines.size(); ++i)
      EXPECT_LT(max_diff(lines[i]["per_token_loss"], expected["cases"][i]["per_token_loss"]), 1e-4);

    const auto& masked = expected["cases"][0]["masked"].back();
    std::string spec;
    for (const auto& h : masked["heads"])
      spec += (spec.empty() ? "" : ",") + std::to_string(h[0].get<int>()) + ":" +
              std::to_string(h[1].get<int>());
    ASSERT_EQ(cli::run({"loss", "--model", fixture_dir(fixture).string(), "--input",
                        ids.string(), "--out", out.string(), "--mask-heads", spec, "--dtype", "fp32"}),
              0);
    lines = read_lines(out);
    EXPECT_LT(max_diff(lines[0]["per_token_loss"], masked["per_token_loss"]), 1e-4);
  }
}

TEST_F(CliTest, BadInputLineFailsWithFileAndLineAndLeavesNoOutput) {
  const fs::path ids = tmp_ / "ids.jsonl";
  const fs::path out = tmp_ / "loss.jsonl";
  write_text(ids, "{\"ids\": [1, 2, 3]}\n\n{\"ids\": [1, 2\n");
  testing::internal::CaptureStderr();
  EXPECT_EQ(cli::run({"loss", "--model", fixture_dir("llama").string(), "--input", ids.string(),
                      "--out", out.string()}),
            3);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find(ids.string() + ":3"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out.string() + ".tmp"));

  write_text(ids, "{\"ids\": [1, 2, 1000]}\n");
  testing::internal::CaptureStderr();
  EXPECT_EQ(cli::run({"loss", "--model", fixture_dir("llama").string(), "--input", ids.string(),
                      "--out", out.string()}),
            3);
  const std::string err2 = testing::internal::GetCapturedStderr();
  EXPECT_NE(err2.find("ids[2] = 1000"), std::string::npos) << err2;
  EXPECT_NE(err2.find("[0, 1000)"), std::string::npos) << err2;

  write_text(ids, "{\"tokens\": [1, 2]}\n");
  testing::internal::CaptureStderr();
  EXPECT_EQ(cli::run({"loss", "--model", fixture_dir("llama").string(), "--input", ids.string()}),
            3);
  EXPECT_NE(testing::internal::GetCapturedStderr().find("field 'ids'"), std::string::npos);
}

TEST_F(CliTest, UsageErrorsExitTwo) {
  const fs::path ids = tmp_ / "ids.jsonl";
  write_text(ids, "{\"ids\": [1, 2, 3]}\n");
  testing::internal::CaptureStderr();
  EXPECT_EQ(cli::run({"loss", "--model", fixture_dir("llama").string(), "--input", ids.string(),
                      "--mask-heads", "4:0"}),
            2);
  EXPECT_EQ(cli::run({"loss", "--model", fixture_dir("llama").string(), "--input", ids.string(),
                      "--dtype", "int8"}),
            2);
  EXPECT_EQ(cli::run({"loss", "--bogus"}), 2);
  EXPECT_EQ(cli::run({}), 2);
  EXPECT_EQ(cli::run({"inspect", "--model", fixture_dir("llama").string(), "--threads", "-1"}), 2);
  // --log-level is taken before or after the subcommand, and checked either way.
  EXPECT_EQ(cli::run({"inspect", "--model", fixture_dir("llama").string(), "--log-level", "nope"}), 2);
  EXPECT_EQ(cli::run({"inspect", "--model", fixture_dir("llama").string(), "--log-level", "warn"}), 0);
  EXPECT_EQ(cli::run({"--log-level", "info", "inspect", "--model", fixture_dir("llama").string()}), 0);
  if (!at::hasCUDA())
    EXPECT_EQ(cli::run({"loss", "--model", fixture_dir("llama").string(), "--input", ids.string(),
                        "--device", "cuda"}),
              2);
  testing::internal::GetCapturedStderr();
}

// --max-length defaults to the model's context (max_position_embeddings), at least 4,096; a
// tokenizer with no config.json beside it has no limit.
TEST_F(CliTest, MaxLengthDefaultsToTheModelContext) {
  const fs::path corpus = tmp_ / "c.jsonl", out = tmp_ / "r.jsonl";
  auto rec = [](const std::string& id, int sentences) {
    std::string words;
    for (int i = 0; i < sentences; ++i) words += "Lily saw a big red ball. ";
    return "{\"id\": \"" + id + "\", \"prompt\": \"Once\", \"response\": \"" + words + "\"}\n";
  };
  // About 5,400, 2,700 and 9 tokens with the stories260K tokenizer.
  write_text(corpus, rec("long", 600) + rec("mid", 300) + rec("short", 1));
  auto rendered = [&](const fs::path& tok, const std::vector<std::string>& extra) {
    std::vector<std::string> args{"render", "--model", tok.string(), "--data", corpus.string(), "--out", out.string()};
    args.insert(args.end(), extra.begin(), extra.end());
    EXPECT_EQ(cli::run(args), 0);
    std::vector<std::string> ids;
    std::ifstream in(out);
    for (std::string line; std::getline(in, line);) ids.push_back(nlohmann::json::parse(line)["id"]);
    return ids;
  };
  using Ids = std::vector<std::string>;
  const fs::path stories = model_dir("stories260K");
  // stories260K's context is 512: no record is scored at positions the model never saw.
  EXPECT_EQ(rendered(stories, {}), (Ids{"short"}));
  EXPECT_NE(read_text(out.string() + ".rejects.jsonl").find("more than 512, the model's context (max_position_embeddings 512"),
            std::string::npos);
  EXPECT_EQ(rendered(stories, {"--truncate"}), (Ids{"long", "mid", "short"}));
  // Linear position scaling stretches it: 512 x 8 = 4,096.
  const fs::path scaled = tmp_ / "scaled";
  fs::create_directories(scaled);
  for (const char* f : {"tokenizer.model", "tokenizer_config.json"}) fs::copy_file(stories / f, scaled / f);
  nlohmann::json sc = read_json(stories / "config.json");
  sc["rope_scaling"] = {{"type", "linear"}, {"factor", 8.0}};
  write_text(scaled / "config.json", sc.dump());
  EXPECT_EQ(rendered(scaled, {}), (Ids{"mid", "short"}));
  EXPECT_EQ(model_context(scaled).tokens, 4096);
  // The same tokenizer with an 8,192-token context.
  const fs::path wide = tmp_ / "wide";
  fs::create_directories(wide);
  for (const char* f : {"tokenizer.model", "tokenizer_config.json"}) fs::copy_file(stories / f, wide / f);
  nlohmann::json config = read_json(stories / "config.json");
  config["max_position_embeddings"] = 8192;
  write_text(wide / "config.json", config.dump());
  EXPECT_EQ(rendered(wide, {}), (Ids{"long", "mid", "short"}));
  // Given, or none.
  EXPECT_EQ(rendered(stories, {"--max-length", "1000"}), (Ids{"short"}));
  EXPECT_EQ(rendered(stories, {"--max-length", "0"}), (Ids{"long", "mid", "short"}));
  EXPECT_EQ(rendered(fs::path(AIR_TEST_DATA_DIR) / "tokenizers" / "qwen2_5", {}), (Ids{"long", "mid", "short"}));
  EXPECT_EQ(cli::run({"render", "--model", stories.string(), "--data", corpus.string(), "--max-length", "-2"}), 2);
}

TEST_F(CliTest, BenchScoreAgreesAcrossMethodsAndRounds) {
  // The benchmark's own check: both methods give the same sample scores, with the rounds
  // splitting the short workload (tokens counted once) and repeating a long sample.
  const fs::path short_json = tmp_ / "short.json", long_json = tmp_ / "long.json";
  testing::internal::CaptureStdout();
  ASSERT_EQ(cli::run({"bench", "score", "--shape", "small", "--samples", "5", "--rounds", "2",
                      "--threads", "2", "--dtype", "fp32", "--json", short_json.string()}),
            0);
  ASSERT_EQ(cli::run({"bench", "score", "--shape", "small", "--workload", "long", "--lengths", "48",
                      "--rounds", "3", "--threads", "2", "--dtype", "fp32", "--json", long_json.string()}),
            0);
  testing::internal::GetCapturedStdout();
  const auto s = read_json(short_json), l = read_json(long_json);
  ASSERT_EQ(s["rows"].size(), 2u);
  ASSERT_EQ(l["rows"].size(), 2u);
  for (const auto& r : s["rows"]) {
    EXPECT_EQ(r["rounds"], 2);
    EXPECT_GE(r["tokens"].get<int64_t>(), 5 * 100);  // five samples of 100-400 tokens, once
    EXPECT_LE(r["tokens"].get<int64_t>(), 5 * 400);
    EXPECT_GT(r["tokens_per_s"].get<double>(), 0);
  }
  EXPECT_EQ(s["rows"][0]["tokens"], s["rows"][1]["tokens"]);
  for (const auto& r : l["rows"]) EXPECT_EQ(r["tokens"], 3 * 48);
  for (const auto& j : {s, l}) {
    EXPECT_EQ(j["rows"][0]["method"], "straightforward");
    EXPECT_EQ(j["rows"][1]["method"], "air");
    EXPECT_LT(j["rows"][1]["max_score_diff"].get<double>(), 1e-4);
    EXPECT_GT(j["rows"][1]["ratio"].get<double>(), 0);
  }

  // bf16 on a CPU: both methods in bf16 and in fp32 on the same weights, and air bf16's speed
  // over the straightforward fp32 method with its ranking against air fp32.
  const fs::path bf16_json = tmp_ / "bf16.json";
  testing::internal::CaptureStdout();
  ASSERT_EQ(cli::run({"bench", "score", "--shape", "small", "--samples", "24", "--rounds", "1", "--threads", "2",
                      "--dtype", "bf16", "--json", bf16_json.string()}),
            0);
  testing::internal::GetCapturedStdout();
  const auto b = read_json(bf16_json);
  ASSERT_EQ(b["rows"].size(), 4u);
  const std::vector<std::pair<std::string, std::string>> rows{
      {"straightforward", "bf16"}, {"air", "bf16"}, {"straightforward", "fp32"}, {"air", "fp32"}};
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(b["rows"][i]["method"], rows[i].first);
    EXPECT_EQ(b["rows"][i]["dtype"], rows[i].second);
  }
  EXPECT_LT(b["rows"][3]["max_score_diff"].get<double>(), 1e-4);  // the fp32 pair agrees exactly
  const auto& air_bf16 = b["rows"][1];
  EXPECT_GT(air_bf16["ratio_to_straightforward_fp32"].get<double>(), 0);
  // Measured and reported (random weights score near zero, where bf16 rounding decides much of
  // the order; Fixtures/ParityTest.Bf16RanksSamplesAsFp32 holds the ranking on the fixtures).
  const auto& agree = air_bf16["agreement_with_air_fp32"];
  for (const char* k : {"sample_spearman", "step_spearman", "top10_overlap"}) {
    ASSERT_TRUE(agree[k].is_number()) << k;
    EXPECT_GE(agree[k].get<double>(), -1.0) << k;
    EXPECT_LE(agree[k].get<double>(), 1.0) << k;
  }
}

TEST_F(CliTest, InspectDescribesAndRejects) {
  testing::internal::CaptureStdout();
  ASSERT_EQ(cli::run({"inspect", "--model", fixture_dir("qwen3").string(), "--json"}), 0);
  const auto j = nlohmann::json::parse(testing::internal::GetCapturedStdout());
  EXPECT_EQ(j["architecture"], "Qwen3ForCausalLM");
  EXPECT_EQ(j["layers"], 4);
  EXPECT_EQ(j["heads"], 4);
  EXPECT_EQ(j["kv_heads"], 2);
  EXPECT_EQ(j["head_dim"], 32);
  EXPECT_EQ(j["tensor_dtypes"]["BF16"].get<int>(), j["files"][0]["tensors"].get<int>());
  EXPECT_EQ(j["files"][0]["bytes"].get<uint64_t>(),
            fs::file_size(fixture_dir("qwen3") / "model.safetensors"));
  EXPECT_TRUE(j["unused_tensors"].empty());

  // Each family's specifics: Gemma 2's windowed layers, soft-caps and scaling; the experts.
  testing::internal::CaptureStdout();
  ASSERT_EQ(cli::run({"inspect", "--model", fixture_dir("gemma2").string(), "--json"}), 0);
  const auto g = nlohmann::json::parse(testing::internal::GetCapturedStdout());
  EXPECT_EQ(g["window_layers"], nlohmann::json({0, 2}));
  EXPECT_EQ(g["attn_logit_softcap"], 5.0);
  EXPECT_EQ(g["final_logit_softcap"], 3.0);
  EXPECT_EQ(g["norm_scale"], "1 + weight");
  EXPECT_TRUE(g["unused_tensors"].empty());  // all four norms a layer are read
  testing::internal::CaptureStdout();
  ASSERT_EQ(cli::run({"inspect", "--model", fixture_dir("qwen3-moe").string()}), 0);
  const std::string text = testing::internal::GetCapturedStdout();
  EXPECT_NE(text.find("experts:         8 of width 48, top-2 renormalised; sparse layers 1 2 3"), std::string::npos)
      << text;
  testing::internal::CaptureStdout();
  ASSERT_EQ(cli::run({"inspect", "--model", fixture_dir("qwen2-moe").string(), "--json"}), 0);
  const auto q = nlohmann::json::parse(testing::internal::GetCapturedStdout());
  EXPECT_EQ(q["experts"]["shared_expert_intermediate_size"], 96);
  EXPECT_FALSE(q["experts"]["renormalised"].get<bool>());
  EXPECT_TRUE(q["unused_tensors"].empty());

  const fs::path dir = copy_fixture("llama", "broken");
  const std::string bytes = read_text(dir / "model.safetensors");
  write_text(dir / "model.safetensors", bytes.substr(0, bytes.size() / 2));
  testing::internal::CaptureStderr();
  EXPECT_EQ(cli::run({"inspect", "--model", dir.string()}), 4);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("model.safetensors"), std::string::npos) << err;
  EXPECT_NE(err.find("out of range"), std::string::npos) << err;

  write_text(dir / "config.json", "{\"architectures\": [\"BertModel\"]}");
  testing::internal::CaptureStderr();
  EXPECT_EQ(cli::run({"inspect", "--model", dir.string()}), 4);
  EXPECT_NE(testing::internal::GetCapturedStderr().find("unknown architecture 'BertModel'"),
            std::string::npos);
}

}  // namespace
}  // namespace air::test
