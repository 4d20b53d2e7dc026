// The AIR pipeline: reference model against the fixtures, the probe against the fixtures'
// attention argmaxes, scores that mean something, batch invariance, and the commands.

#include "air/error.h"
#include "air/heads_file.h"
#include "air/probe.h"
#include "air/runtime.h"
#include "air/scorer.h"
#include "cli/cli.h"
#include "test_util.h"

#include <ATen/ATen.h>

#include <fstream>
#include <set>

namespace air::test {
namespace {

fs::path sample_corpus() { return fs::path(AIR_MODELS_DIR) / ".." / "data" / "stories-sample.jsonl"; }

double auroc(const std::vector<double>& pos, const std::vector<double>& neg) {
  double c = 0;
  for (double p : pos)
    for (double n : neg) c += p > n ? 1 : p == n ? 0.5 : 0;
  return c / static_cast<double>(pos.size() * neg.size());
}

std::vector<nlohmann::json> read_jsonl(const fs::path& p) {
  std::vector<nlohmann::json> out;
  std::ifstream in(p);
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
  return out;
}

// A sample over fixture ids whose response is ids[k..].
Sample fixture_sample(const std::vector<int64_t>& ids, int64_t k) {
  Sample s;
  s.ids = ids;
  s.prompt_tokens = k;
  s.steps = {{0, 1, 0, static_cast<int64_t>(ids.size()) - k}};
  return s;
}

TEST(ReferenceModelTest, ScorerLossesMatchHuggingFaceMaskedLosses) {
  for (const char* f : {"llama", "qwen2", "qwen3"}) {
    const LoadedModel m = load_model(fixture_dir(f), test_runtime());
    const auto ex = read_json(fixture_dir(f) / "expected.json")["cases"][0];
    const auto ids = ex["ids"].get<std::vector<int64_t>>();
    const int64_t k = static_cast<int64_t>(ids.size()) / 2;
    for (const auto& masked : ex["masked"]) {
      std::vector<Head> hs;
      for (const auto& h : masked["heads"]) hs.push_back({h[0].get<int64_t>(), h[1].get<int64_t>()});
      // Expected means over the response tokens k..T-1: per_token_loss[k-1 .. T-2].
      const auto base = ex["per_token_loss"].get<std::vector<double>>();
      const auto ref = masked["per_token_loss"].get<std::vector<double>>();
      double mb = 0, mr = 0;
      for (size_t i = k - 1; i < base.size(); ++i) {
        mb += base[i];
        mr += ref[i];
      }
      mb /= static_cast<double>(base.size() - (k - 1));
      mr /= static_cast<double>(base.size() - (k - 1));
      const Sample s = fixture_sample(ids, k);
      for (bool share : {true, false}) {
        ScoreOptions so;
        so.share_prefix = share;
        const Scorer scorer(m.model, HeadSet(hs), so);
        const auto r = scorer.score({&s})[0];
        ASSERT_TRUE(r.error.empty());
        EXPECT_NEAR(r.influence.loss_base, mb, 1e-4) << f;
        EXPECT_NEAR(r.influence.loss_ref, mr, 1e-4) << f << " " << HeadSet(hs).to_string();
        EXPECT_NEAR(r.influence.score, (mr - mb) / mb, 1e-3) << f;
      }
    }
  }
}

// The probe's copy decision per head, recomputed from HF's attention argmax in the fixtures.
TEST(ProbeTest, CopyRatesAgreeWithFixtureArgmax) {
  for (const char* f : {"llama", "mistral", "qwen2", "qwen2-tied", "qwen3"}) {
    const LoadedModel m = load_model(fixture_dir(f), RuntimeOptions{});
    const int64_t L = m.checkpoint.config().num_hidden_layers, H = m.checkpoint.config().num_attention_heads;
    for (const auto& ex : read_json(fixture_dir(f) / "expected.json")["cases"]) {
      const auto ids = ex["ids"].get<std::vector<int64_t>>();
      const int64_t T = static_cast<int64_t>(ids.size()), half = T / 2;
      ProbeItem it;
      it.ids = ids;
      for (int64_t j = 0; j < half; ++j) it.context.push_back(j);
      for (int64_t t = half; t + 1 < T; ++t) it.targets.push_back(t);
      ProbeOptions po;
      po.all_items = true;
      const ProbeResult r = run_probe(m.model, {it}, po);
      ASSERT_EQ(r.ranked.size(), static_cast<size_t>(L * H));
      for (const auto& hs : r.ranked) {
        int64_t copies = 0, ties = 0;
        for (int64_t t : it.targets) {
          const int64_t j = ex["attn_argmax"][hs.head.layer][hs.head.head][t].get<int64_t>();
          copies += j < half && ids[j] == ids[t + 1];
          ties += ex["attn_max_prob"][hs.head.layer][hs.head.head][t].get<double>() < 2.0 / (t + 1);
        }
        const double want = static_cast<double>(copies) / it.targets.size();
        // Only near-uniform rows (possible ties) may decide differently.
        EXPECT_NEAR(hs.score, want, (ties + 0.5) / it.targets.size())
            << f << " head " << hs.head.layer << ":" << hs.head.head;
      }
    }
  }
}

TEST(ProbeTest, RankingOrderAndSelection) {
  std::vector<HeadScore> ranked = {{{2, 1}, 0.5}, {{0, 3}, 0.4}, {{1, 0}, 0.4}, {{3, 3}, 0.1}};
  EXPECT_EQ(select_heads(ranked, 40, {}).to_string(), "0:3,2:1");  // floor(0.05 * 40) = 2
  EXPECT_EQ(select_heads(ranked, 10, {}).size(), 1u);               // at least one
  HeadSelection n;
  n.num_heads = 3;
  EXPECT_EQ(select_heads(ranked, 40, n).to_string(), "0:3,1:0,2:1");
  HeadSelection s;
  s.min_score = 0.4;
  EXPECT_EQ(select_heads(ranked, 40, s).size(), 3u);
  s.min_score = 0.9;
  EXPECT_THROW(select_heads(ranked, 40, s), UsageError);  // no head reaches it: refused, not bent
}

TEST(ProbeTest, Stories260KTopHeadsAreStableAcrossSeeds) {
  const LoadedModel m = load_model(model_dir("stories260K"), RuntimeOptions{});
  const auto tok = load_tokenizer(model_dir("stories260K"));
  std::vector<std::vector<int64_t>> texts;
  for (const auto& j : read_jsonl(sample_corpus()))
    texts.push_back(tok->encode(j["response"].get<std::string>(), false).ids);
  std::vector<std::set<std::pair<int64_t, int64_t>>> tops;
  for (uint64_t seed : {0, 1, 2, 3}) {
    ProbeOptions po;
    po.seed = seed;
    const auto r = run_probe(m.model, repeat_items(texts, tok->encode("", true).ids, po), po);
    std::set<std::pair<int64_t, int64_t>> top;
    for (int i = 0; i < 5; ++i) top.insert({r.ranked[i].head.layer, r.ranked[i].head.head});
    tops.push_back(top);
  }
  double overlap = 0;
  for (size_t i = 1; i < tops.size(); ++i) {
    int common = 0;
    for (const auto& h : tops[i]) common += tops[0].count(h);
    overlap += common / 5.0;
  }
  overlap /= static_cast<double>(tops.size() - 1);
  std::printf("stories260K: mean top-5 overlap with seed 0 over seeds 1-3: %.2f\n", overlap);
  EXPECT_GE(overlap, 0.6);
}

TEST(ProbeTest, KvRetrievalItemsPointAtTheQueriedValue) {
  const auto tok = load_tokenizer(fs::path(AIR_TEST_DATA_DIR) / "tokenizers" / "gpt2");
  const std::vector<std::string> sentences = {
      "The cat sat on the warm mat.", "A red kite flew over the hill.",
      "Tom found a shiny coin today.", "Rain fell softly on the roof.",
      "The baker made fresh bread.", "Birds sang in the tall tree."};
  ProbeOptions po;
  po.num_items = 6;
  po.seed = 3;
  const auto items = kv_retrieval_items(*tok, sentences, false, po);
  ASSERT_EQ(items.size(), 6u);
  for (const auto& it : items) {
    ASSERT_FALSE(it.context.empty());
    ASSERT_FALSE(it.targets.empty());
    // Every answer token is retrievable: it occurs among the queried value's tokens.
    std::multiset<int64_t> ctx;
    for (int64_t k : it.context) ctx.insert(it.ids[k]);
    for (int64_t t : it.targets) {
      ASSERT_LT(t + 1, static_cast<int64_t>(it.ids.size()));
      EXPECT_TRUE(ctx.count(it.ids[t + 1])) << "answer token " << it.ids[t + 1] << " not in the value";
      EXPECT_GT(t, it.context.back());  // the answer comes after the JSON
    }
    // The context is one contiguous span of tokens.
    EXPECT_EQ(it.context.back() - it.context.front() + 1, static_cast<int64_t>(it.context.size()));
  }
  // Seeded: the same items again.
  const auto again = kv_retrieval_items(*tok, sentences, false, po);
  for (size_t i = 0; i < items.size(); ++i) EXPECT_EQ(items[i].ids, again[i].ids);
}

TEST(ProbeTest, CorpusItemsTargetResponseTokensFoundInThePrompt) {
  Sample s;
  s.ids = {1, 10, 11, 12, 13, 11, 20, 12, 13};
  s.prompt_tokens = 5;  // prompt 1 10 11 12 13; response 11 20 12 13
  ProbeOptions po;
  const auto items = corpus_items({s}, po);
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].context, (std::vector<int64_t>{0, 1, 2, 3, 4}));
  // Positions predicting 11 (t=4), 12 (t=6) and 13 (t=7); 20 is not in the prompt.
  EXPECT_EQ(items[0].targets, (std::vector<int64_t>{4, 6, 7}));
}

class PipelineTest : public TempDirTest {};

// Responses that copy names and things from their prompts score higher than responses that
// need nothing from the prompt, and so do such steps inside one response.
TEST_F(PipelineTest, ScoresRankCopyingResponsesAndStepsHigher) {
  const fs::path scores = tmp_ / "scores.jsonl";
  ASSERT_EQ(cli::run({"score", "--model", model_dir("stories260K").string(), "--data",
                      sample_corpus().string(), "--out", scores.string(), "--threads", "1"}),
            0);
  EXPECT_TRUE(fs::exists(tmp_ / "scores.jsonl.heads.json"));
  EXPECT_TRUE(fs::exists(tmp_ / "scores.jsonl.meta.json"));
  std::map<std::string, nlohmann::json> recs;
  for (const auto& j : read_jsonl(sample_corpus())) recs[j["id"]] = j;
  std::vector<double> pos, neg, step_pos, step_neg;
  const auto lines = read_jsonl(scores);
  ASSERT_EQ(lines.size(), recs.size());
  for (const auto& s : lines) {
    const auto& r = recs.at(s["id"]);
    if (r["kind"] == "copy") pos.push_back(s["air_score"]);
    if (r["kind"] == "free") neg.push_back(s["air_score"]);
    ASSERT_EQ(s["steps"].size(), r["step_kinds"].size()) << s["id"];
    for (size_t i = 0; i < s["steps"].size(); ++i)
      (r["step_kinds"][i] == "copy" ? step_pos : step_neg).push_back(s["steps"][i]["score"]);
  }
  const double a = auroc(pos, neg), b = auroc(step_pos, step_neg);
  std::printf("stories260K sample corpus: AUROC copy vs free: samples %.3f (%zu/%zu), steps %.3f (%zu/%zu)\n",
              a, pos.size(), neg.size(), b, step_pos.size(), step_neg.size());
  EXPECT_GT(a, 0.75);
  EXPECT_GT(b, 0.75);
}

TEST_F(PipelineTest, ScoresDoNotDependOnBatching) {
  const fs::path heads = tmp_ / "heads.json";
  ASSERT_EQ(cli::run({"probe", "--model", model_dir("stories260K").string(), "--data",
                      sample_corpus().string(), "--out", heads.string()}),
            0);
  std::vector<std::vector<nlohmann::json>> runs;
  for (const auto& [bt, window] : std::vector<std::pair<std::string, std::string>>{
           {"100000", "1024"}, {"64", "1024"}, {"300", "3"}}) {
    const fs::path out = tmp_ / ("s" + bt + ".jsonl");
    ASSERT_EQ(cli::run({"score", "--model", model_dir("stories260K").string(), "--data",
                        sample_corpus().string(), "--heads", heads.string(), "--out", out.string(),
                        "--batch-tokens", bt, "--window", window}),
              0);
    runs.push_back(read_jsonl(out));
  }
  for (size_t r = 1; r < runs.size(); ++r) {
    ASSERT_EQ(runs[r].size(), runs[0].size());
    for (size_t i = 0; i < runs[0].size(); ++i) {
      EXPECT_EQ(runs[r][i]["id"], runs[0][i]["id"]);
      EXPECT_NEAR(runs[r][i]["air_score"].get<double>(), runs[0][i]["air_score"].get<double>(), 1e-5);
      for (size_t k = 0; k < runs[0][i]["steps"].size(); ++k)
        EXPECT_NEAR(runs[r][i]["steps"][k]["score"].get<double>(),
                    runs[0][i]["steps"][k]["score"].get<double>(), 1e-5);
    }
  }
}

TEST_F(PipelineTest, BadRecordsStayInPlaceAsErrorLines) {
  const fs::path corpus = tmp_ / "c.jsonl";
  write_text(corpus, "{\"id\": \"a\", \"prompt\": \"Lily had a ball.\", \"response\": \"Lily played with the ball.\"}\n"
                     "{\"id\": \"b\", \"prompt\": \"x\"\n"
                     "{\"id\": \"c\", \"prompt\": \"Tom had a kite.\", \"response\": \"Tom flew the kite.\"}\n");
  const fs::path out = tmp_ / "s.jsonl";
  ASSERT_EQ(cli::run({"score", "--model", model_dir("stories260K").string(), "--data", corpus.string(),
                      "--out", out.string(), "--num-heads", "2", "--emit-token-scores"}),
            0);
  const auto lines = read_jsonl(out);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[1]["line"], 2);
  EXPECT_TRUE(lines[1].contains("error"));
  EXPECT_EQ(lines[2]["id"], "c");
  EXPECT_EQ(lines[0]["token_deltas"].size(), lines[0]["n_tokens"].get<size_t>());
  const auto meta = read_json(out.string() + ".meta.json");
  EXPECT_EQ(meta["counts"]["scored"], 2);
  EXPECT_EQ(meta["counts"]["skipped"], 1);
  EXPECT_TRUE(fs::exists(out.string() + ".rejects.jsonl"));
  // --strict stops instead.
  EXPECT_EQ(cli::run({"score", "--model", model_dir("stories260K").string(), "--data", corpus.string(),
                      "--out", (tmp_ / "t.jsonl").string(), "--num-heads", "2", "--strict"}),
            3);
}

// A run cut short keeps what it scored in OUT.partial; --resume continues it (skipping the
// records it holds, rescoring a torn last line) to the output an uninterrupted run gives, and
// refuses a partial from other options or a corpus that changed.
TEST_F(PipelineTest, ResumeContinuesARunCutShort) {
  std::vector<std::string> good_lines;
  {
    std::ifstream in(sample_corpus());
    for (std::string l; std::getline(in, l) && good_lines.size() < 12;) good_lines.push_back(l);
  }
  std::string good, bad;
  for (size_t i = 0; i < good_lines.size(); ++i) {
    good += good_lines[i] + "\n";
    bad += (i == 5 ? std::string("{\"id\": \"broken\"") : good_lines[i]) + "\n";
  }
  const fs::path good_c = tmp_ / "good.jsonl", bad_c = tmp_ / "bad.jsonl";
  write_text(good_c, good);
  write_text(bad_c, bad);
  const std::string model = model_dir("stories260K").string();
  auto score = [&](const fs::path& data, const fs::path& out, std::vector<std::string> extra) {
    std::vector<std::string> args{"score", "--model", model, "--data", data.string(), "--out",
                                  out.string(), "--num-heads", "2", "--window", "2"};
    for (size_t i = 0; i < extra.size(); ++i) {
      if (extra[i] == "--heads" && i + 1 < extra.size()) use_heads(args, extra[++i]);
      else args.push_back(extra[i]);
    }
    return cli::run(args);
  };
  const fs::path ref = tmp_ / "ref.jsonl", out = tmp_ / "s.jsonl";
  const std::string partial = out.string() + ".partial", sidecar = out.string() + ".partial.json";

  // Cut short by a bad line 6 (--strict), after the probe: two windows of two are kept, with
  // their sidecar and the probed heads.
  ASSERT_EQ(score(bad_c, out, {"--strict"}), 3);
  const std::string heads = out.string() + ".heads.json";
  ASSERT_TRUE(fs::exists(heads));
  ASSERT_EQ(score(good_c, ref, {"--heads", heads}), 0);  // the run that was not cut short
  EXPECT_FALSE(fs::exists(out));
  ASSERT_TRUE(fs::exists(partial));
  EXPECT_TRUE(fs::exists(sidecar));
  const std::vector<nlohmann::json> kept = read_jsonl(partial);
  ASSERT_EQ(kept.size(), 4u);
  {  // a write cut short: part of the next record, no newline
    std::ofstream app(partial, std::ios::binary | std::ios::app);
    app << read_jsonl(ref)[4].dump().substr(0, 30);
  }

  ASSERT_EQ(score(good_c, out, {"--resume"}), 0);  // with the heads probed before
  EXPECT_FALSE(fs::exists(partial));
  EXPECT_FALSE(fs::exists(sidecar));
  const auto a = read_jsonl(ref), b = read_jsonl(out);
  ASSERT_EQ(b.size(), a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(b[i]["id"], a[i]["id"]);
    EXPECT_EQ(b[i]["line"], a[i]["line"]);
    EXPECT_NEAR(b[i]["air_score"].get<double>(), a[i]["air_score"].get<double>(), 1e-5) << i;
    if (i < kept.size()) EXPECT_EQ(b[i], kept[i]);  // the kept records stay as they were
  }
  auto counts = [](const fs::path& o) { return read_json(o.string() + ".meta.json")["counts"]; };
  EXPECT_EQ(counts(out)["resumed"], 4);
  for (const char* k : {"records", "scored", "errors", "skipped", "response_tokens"})
    EXPECT_EQ(counts(out)[k], counts(ref)[k]) << k;

  // Resuming a complete output checks it against the corpus and scores nothing.
  const std::string done = read_text(out);
  ASSERT_EQ(score(good_c, out, {"--resume"}), 0);
  EXPECT_EQ(read_text(out), done);
  EXPECT_EQ(counts(out)["resumed"], static_cast<int64_t>(a.size()));
  // Other options, or a corpus whose scored part changed: refused, the output left as it was.
  EXPECT_EQ(score(good_c, out, {"--resume", "--score", "absolute"}), 2);
  std::string changed;
  for (size_t i = 0; i < good_lines.size(); ++i)
    if (i != 2) changed += good_lines[i] + "\n";
  write_text(tmp_ / "changed.jsonl", changed);
  EXPECT_EQ(score(tmp_ / "changed.jsonl", out, {"--resume"}), 3);
  EXPECT_EQ(read_text(out), done);
  EXPECT_FALSE(fs::exists(partial));
  // The heads the first run probed are reused only for the same probe settings.
  EXPECT_EQ(cli::run({"score", "--model", model, "--data", good_c.string(), "--out", out.string(),
                      "--num-heads", "3", "--resume"}),
            2);
  EXPECT_EQ(read_text(out), done);
  // --resume writes to a file only.
  EXPECT_EQ(score(good_c, "-", {"--resume", "--heads", heads}), 2);
}

// Resuming a complete output scores only the records added to the corpus since, and its
// records, rejects and counts (truncated ones included) are those of one run over the whole.
TEST_F(PipelineTest, ResumeScoresOnlyAddedRecords) {
  std::string words, prompt;
  for (int i = 0; i < 40; ++i) words += "Lily saw a big red ball. ";
  for (int i = 0; i < 40; ++i) prompt += "Once upon a time. ";
  auto rec = [](const std::string& id, const std::string& p, const std::string& r) {
    return "{\"id\": \"" + id + "\", \"prompt\": \"" + p + "\", \"response\": \"" + r + "\"}\n";
  };
  const std::string first = rec("a", "Tom had a kite.", "Tom flew the kite.") +
                            rec("long", "Lily had a ball.", words) +       // truncated
                            rec("long-prompt", prompt, "a cat.") +         // rejected: prompt over the limit
                            "{\"id\": \"broken\"\n" +                      // rejected: malformed
                            rec("b", "Sue had a cat.", "Sue fed the cat.");
  const std::string added = rec("c", "Max had a dog.", "Max walked the dog.") +
                            rec("d", "Mia had a hat.", "Mia wore the hat.");
  write_text(tmp_ / "first.jsonl", first);
  write_text(tmp_ / "all.jsonl", first + added);
  const std::string model = model_dir("stories260K").string();
  const fs::path heads = tmp_ / "heads.json";
  ASSERT_EQ(cli::run({"probe", "--model", model, "--data", (tmp_ / "all.jsonl").string(), "--out", heads.string()}), 0);
  auto score = [&](const char* data, const fs::path& out, bool resume) {
    std::vector<std::string> args{"score", "--model", model, "--data", (tmp_ / data).string(), "--out",
                                  out.string(), "--heads", heads.string(), "--max-length", "60",
                                  "--truncate", "--window", "2"};
    if (resume) args.push_back("--resume");
    return cli::run(args);
  };
  const fs::path ref = tmp_ / "ref.jsonl", out = tmp_ / "out.jsonl";
  ASSERT_EQ(score("all.jsonl", ref, false), 0);
  ASSERT_EQ(score("first.jsonl", out, false), 0);
  ASSERT_EQ(score("all.jsonl", out, true), 0);
  const auto a = read_jsonl(ref), b = read_jsonl(out);
  ASSERT_EQ(b.size(), a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(b[i]["id"], a[i]["id"]);
    EXPECT_EQ(b[i]["line"], a[i]["line"]);
    EXPECT_EQ(b[i].contains("error"), a[i].contains("error")) << i;
    if (a[i].contains("air_score"))
      EXPECT_NEAR(b[i]["air_score"].get<double>(), a[i]["air_score"].get<double>(), 1e-5) << i;
  }
  const auto ca = read_json(ref.string() + ".meta.json")["counts"], cb = read_json(out.string() + ".meta.json")["counts"];
  EXPECT_EQ(ca["truncated"], 1);
  EXPECT_EQ(ca["skipped"], 2);
  for (const char* k : {"records", "scored", "errors", "skipped", "truncated", "response_tokens"})
    EXPECT_EQ(cb[k], ca[k]) << k;
  EXPECT_EQ(cb["resumed"], 5);
  const auto ra = read_jsonl(ref.string() + ".rejects.jsonl"), rb = read_jsonl(out.string() + ".rejects.jsonl");
  ASSERT_EQ(rb.size(), ra.size());
  for (size_t i = 0; i < ra.size(); ++i) EXPECT_EQ(rb[i]["line"], ra[i]["line"]);
}

// `--shard I/N` runs score disjoint records that together make the whole run, and `air select`
// takes their outputs together as it takes the one of a single run.
TEST_F(PipelineTest, ShardsTogetherAreTheWholeRun) {
  const std::string model = model_dir("stories260K").string(), data = sample_corpus().string();
  const fs::path heads = tmp_ / "heads.json";
  ASSERT_EQ(cli::run({"probe", "--model", model, "--data", data, "--out", heads.string()}), 0);
  auto score = [&](const fs::path& out, const std::string& shard) {
    return cli::run({"score", "--model", model, "--data", data, "--heads", heads.string(), "--out",
                     out.string(), "--shard", shard});
  };
  const fs::path whole = tmp_ / "whole.jsonl";
  ASSERT_EQ(score(whole, "0/1"), 0);
  std::map<int64_t, nlohmann::json> by_line;
  std::vector<std::string> parts;
  for (int i = 0; i < 3; ++i) {
    const fs::path part = tmp_ / ("part" + std::to_string(i) + ".jsonl");
    ASSERT_EQ(score(part, std::to_string(i) + "/3"), 0);
    parts.push_back(part.string());
    for (const auto& j : read_jsonl(part)) {
      EXPECT_EQ((j["line"].get<int64_t>() - 1) % 3, i);  // the sample corpus has no blank lines
      EXPECT_TRUE(by_line.emplace(j["line"].get<int64_t>(), j).second) << "scored twice: " << j["line"];
    }
  }
  const auto ref = read_jsonl(whole);
  ASSERT_EQ(by_line.size(), ref.size());
  for (const auto& r : ref) {
    const auto& j = by_line.at(r["line"].get<int64_t>());
    EXPECT_EQ(j["id"], r["id"]);
    EXPECT_NEAR(j["air_score"].get<double>(), r["air_score"].get<double>(), 1e-5) << r["id"];
  }
  auto select = [&](const std::vector<std::string>& scores, const fs::path& out) {
    std::vector<std::string> args{"select", "--data", data, "--top-k", "10", "--out", out.string(), "--scores"};
    args.insert(args.end(), scores.begin(), scores.end());
    return cli::run(args);
  };
  ASSERT_EQ(select({whole.string()}, tmp_ / "a.jsonl"), 0);
  ASSERT_EQ(select(parts, tmp_ / "b.jsonl"), 0);
  EXPECT_EQ(read_text(tmp_ / "b.jsonl"), read_text(tmp_ / "a.jsonl"));
  EXPECT_EQ(select({parts[0], parts[1]}, tmp_ / "c.jsonl"), 3);            // a shard missing
  EXPECT_EQ(select({parts[0], parts[1], parts[2], parts[1]}, tmp_ / "c.jsonl"), 3);  // one twice
  // A rejects file (caught by a too-wide glob) is not a score file.
  write_text(tmp_ / "rejects.jsonl", "{\"line\": 1, \"id\": \"x\", \"reason\": \"bad\", \"record\": \"{}\"}\n");
  EXPECT_EQ(cli::run({"select", "--data", data, "--top-k", "1", "--out", (tmp_ / "c.jsonl").string(),
                      "--allow-partial", "--scores", (tmp_ / "rejects.jsonl").string()}),
            3);
  EXPECT_EQ(score(tmp_ / "x.jsonl", "3/3"), 2);
  EXPECT_EQ(score(tmp_ / "x.jsonl", "1"), 2);
}

TEST_F(PipelineTest, SelectWritesInputLinesVerbatimWithStableTies) {
  const fs::path corpus = tmp_ / "c.jsonl";
  // Odd spacing and key order must survive byte for byte.
  const std::vector<std::string> raw = {
      R"({"id":"r1",  "prompt": "Lily had a ball.", "response": "Lily played."})",
      R"({"response": "Tom ran.", "prompt": "Tom had a kite.", "id": "r2"})",
      R"({"id": "r3", "prompt": "Sue had a hat.", "response": "Sue smiled. \u00e9"})",
      R"({"id": "r4", "prompt": "Ben had a cat.", "response": "Ben sat."})"};
  std::string text;
  for (const auto& r : raw) text += r + "\n";
  write_text(corpus, text);
  const fs::path scores = tmp_ / "s.jsonl";
  // Scores written by hand: r2 and r4 tie; r3 could not be scored.
  write_text(scores, R"({"id": "r1", "line": 1, "air_score": 0.1, "steps": [{"begin": 0, "end": 12, "weight": 1.0}]})" "\n"
                     R"({"id": "r2", "line": 2, "air_score": 0.5, "steps": []})" "\n"
                     R"({"id": "r3", "line": 3, "error": "non-finite loss"})" "\n"
                     R"({"id": "r4", "line": 4, "air_score": 0.5, "steps": []})" "\n");
  const fs::path out = tmp_ / "sel.jsonl";
  ASSERT_EQ(cli::run({"select", "--data", corpus.string(), "--scores", scores.string(), "--out",
                      out.string(), "--top-k", "2", "--order", "rank"}),
            0);
  EXPECT_EQ(read_text(out), raw[1] + "\n" + raw[3] + "\n");
  ASSERT_EQ(cli::run({"select", "--data", corpus.string(), "--scores", scores.string(), "--out",
                      out.string(), "--top-ratio", "1.0", "--order", "input", "--weights-out",
                      (tmp_ / "w.jsonl").string()}),
            0);
  EXPECT_EQ(read_text(out), raw[0] + "\n" + raw[1] + "\n" + raw[3] + "\n");
  EXPECT_EQ(read_jsonl(tmp_ / "w.jsonl")[0]["steps"][0]["end"], 12);
  ASSERT_EQ(cli::run({"select", "--data", corpus.string(), "--scores", scores.string(), "--out",
                      out.string(), "--top-k", "1", "--annotate"}),
            0);
  const auto ann = read_jsonl(out)[0];
  EXPECT_EQ(ann["id"], "r2");
  EXPECT_DOUBLE_EQ(ann["air_score"].get<double>(), 0.5);

  // Scores that do not cover the corpus, or belong to other ids, are refused.
  write_text(scores, R"({"id": "r1", "line": 1, "air_score": 0.1})" "\n"
                     R"({"id": "zz", "line": 2, "air_score": 0.5})" "\n");
  testing::internal::CaptureStderr();
  EXPECT_EQ(cli::run({"select", "--data", corpus.string(), "--scores", scores.string(), "--out",
                      out.string(), "--top-k", "1"}),
            3);
  EXPECT_EQ(cli::run({"select", "--data", corpus.string(), "--scores", scores.string(), "--out",
                      out.string(), "--top-k", "1", "--allow-partial"}),
            0);
  EXPECT_EQ(cli::run({"select", "--data", corpus.string(), "--scores", scores.string(), "--out",
                      out.string()}),
            2);
  testing::internal::GetCapturedStderr();
  EXPECT_EQ(read_text(out), raw[0] + "\n");
}

TEST_F(PipelineTest, SelectDedupeKeepsTheBestRankedCopy) {
  const fs::path corpus = tmp_ / "c.jsonl";
  write_text(corpus, R"({"id": "a", "prompt": "p1", "response": "same answer"})" "\n"
                     R"({"id": "b", "prompt": "p2", "response": "same answer"})" "\n"
                     R"({"id": "c", "prompt": "p3", "response": "other answer"})" "\n");
  const fs::path scores = tmp_ / "s.jsonl";
  write_text(scores, R"({"id": "a", "line": 1, "air_score": 0.2})" "\n"
                     R"({"id": "b", "line": 2, "air_score": 0.9})" "\n"
                     R"({"id": "c", "line": 3, "air_score": 0.1})" "\n");
  const fs::path out = tmp_ / "sel.jsonl";
  ASSERT_EQ(cli::run({"select", "--data", corpus.string(), "--scores", scores.string(), "--out",
                      out.string(), "--top-k", "2", "--order", "rank", "--dedupe"}),
            0);
  const auto sel = read_jsonl(out);
  ASSERT_EQ(sel.size(), 2u);
  EXPECT_EQ(sel[0]["id"], "b");
  EXPECT_EQ(sel[1]["id"], "c");  // "a" repeats b's response
  ASSERT_EQ(cli::run({"select", "--data", corpus.string(), "--scores", scores.string(), "--out",
                      out.string(), "--top-k", "2", "--order", "rank"}),
            0);
  EXPECT_EQ(read_jsonl(out)[1]["id"], "a");  // without --dedupe the copy stays
}

TEST_F(PipelineTest, HeadsFileRoundTripsAndGuardsTheModel) {
  const fs::path heads = tmp_ / "heads.json";
  ASSERT_EQ(cli::run({"probe", "--model", model_dir("stories260K").string(), "--probe",
                      "random-repeat", "--num-heads", "3", "--out", heads.string()}),
            0);
  const HeadsFile h = read_heads_file(heads.string());
  EXPECT_EQ(h.selected.size(), 3u);
  const auto j = read_json(heads);
  EXPECT_EQ(j["heads"].size(), 40u);
  EXPECT_EQ(j["selected"].size(), 3u);
  EXPECT_GE(j["heads"][0]["score"].get<double>(), j["heads"][39]["score"].get<double>());
  // A heads file from another model is refused.
  const fs::path corpus = tmp_ / "c.jsonl";
  write_text(corpus, "{\"prompt\": \"a\", \"response\": \"b c d\"}\n");
  const fs::path other = tmp_ / "other";
  fs::create_directories(other);
  for (const auto& e : fs::directory_iterator(model_dir("stories260K")))
    fs::copy_file(e.path(), other / e.path().filename());
  write_text(other / "config.json", read_text(other / "config.json") + "\n");  // another fingerprint
  testing::internal::CaptureStderr();
  EXPECT_EQ(cli::run({"score", "--model", other.string(), "--data", corpus.string(), "--heads",
                      heads.string(), "--out", (tmp_ / "s.jsonl").string()}),
            2);
  EXPECT_EQ(cli::run({"score", "--model", other.string(), "--data", corpus.string(), "--heads",
                      heads.string(), "--out", (tmp_ / "s.jsonl").string(), "--allow-heads-mismatch"}),
            0);
  testing::internal::GetCapturedStderr();
}

}  // namespace
}  // namespace air::test
