// Curation on top of the scores: group quotas and filters in select, compare, the trainer's
// loss weights in a student's tokenization, and the HTML report.

#include "air/compare_job.h"
#include "air/corpus.h"
#include "air/error.h"
#include "air/report.h"
#include "air/select_job.h"
#include "air/tokenizer.h"
#include "air/weights_job.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <regex>
#include <set>
#include <sstream>

namespace air::test {
namespace {

struct Quiet : JobEvents {
  std::vector<std::string> warnings;
  void warn(const std::string& m) override { warnings.push_back(m); }
};

std::vector<nlohmann::json> read_jsonl(const fs::path& p) {
  std::vector<nlohmann::json> out;
  std::istringstream in(read_text(p));
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

// A corpus of two sources of different sizes, and a score file for it with random scores,
// lengths and steps that tile each response (no meta: read with prompt/response fields).
class CurationTest : public TempDirTest {
 protected:
  struct Rec {
    std::string id, source, prompt, response;
    double score;
    int64_t tokens;
    std::vector<std::array<double, 3>> steps;  // begin, end, weight
  };
  std::vector<Rec> recs_;

  // Without ids (with_ids false), a record's id is its corpus line number, as scoring gives it.
  void make(int n_a, int n_b, uint32_t seed, bool with_missing_field = false, bool with_ids = true) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<double> u(-0.5, 1.5);
    std::string corpus, scores;
    for (int i = 0; i < n_a + n_b; ++i) {
      Rec r;
      r.id = with_ids ? "r" + std::to_string(i) : std::to_string(i + 1);
      r.source = i < n_a ? "gsm8k" : "math";
      r.prompt = "Question " + std::to_string(i) + ": how many apples?";
      r.response = "First step " + std::to_string(i) + ".\n\nSecond step, longer text here.\n\nAnswer: " + std::to_string(i * 7);
      r.score = u(rng);
      r.tokens = 5 + static_cast<int64_t>(rng() % 200);
      size_t b = 0;
      for (size_t cut = r.response.find("\n\n"); b < r.response.size();) {
        const size_t e = cut == std::string::npos ? r.response.size() : cut + 2;
        r.steps.push_back({static_cast<double>(b), static_cast<double>(e), 0.25 + 3.0 * (rng() % 1000) / 1000.0});
        b = e;
        cut = r.response.find("\n\n", e);
      }
      nlohmann::ordered_json line = nlohmann::ordered_json::object();
      if (with_ids) line["id"] = r.id;
      if (!(with_missing_field && i % 9 == 4)) line["source"] = r.source;
      line["prompt"] = r.prompt;
      line["response"] = r.response;
      const std::string raw = line.dump();
      corpus += raw + "\n";
      nlohmann::json steps = nlohmann::json::array();
      for (const auto& s : r.steps)
        steps.push_back({{"begin", static_cast<size_t>(s[0])}, {"end", static_cast<size_t>(s[1])}, {"n_tokens", 3},
                         {"score", s[2] - 1}, {"weight", s[2]}});
      scores += nlohmann::json{{"id", r.id}, {"line", i + 1}, {"line_hash", line_hash(raw)}, {"air_score", r.score},
                               {"loss_base", 1.0 + r.score}, {"loss_ref", 1.5}, {"n_tokens", r.tokens},
                               {"response_length", r.tokens}, {"mean_base_loss", 1.0 + 0.1 * r.tokens},
                               {"mean_base_entropy", 2.0}, {"steps", steps}}
                    .dump() +
                "\n";
      recs_.push_back(r);
    }
    write_text(tmp_ / "corpus.jsonl", corpus);
    write_text(tmp_ / "scores.jsonl", scores);
  }

  // Selects k records per source with `quota`; returns the selected ids by source.
  std::map<std::string, std::set<std::string>> select_grouped(int64_t k, GroupQuota quota, SelectJobResult* res = nullptr) {
    SelectJobOptions o = select_opts(k);
    o.group_by = "source";
    o.per_group = quota;
    Quiet ev;
    const SelectJobResult r = run_select_job(o, ev);
    if (res) *res = r;
    return selected_by_source();
  }

  SelectJobOptions select_opts(int64_t k) {
    SelectJobOptions o;
    o.data = (tmp_ / "corpus.jsonl").string();
    o.scores = {(tmp_ / "scores.jsonl").string()};
    o.out = (tmp_ / "selected.jsonl").string();
    o.top_k = k;
    o.order = SelectOrder::kRank;
    o.prompt_field = "prompt";
    o.response_fields = {"response"};
    return o;
  }

  // The ids of a source's records by score, best first (ties by input order).
  std::vector<std::string> ranked_ids(const std::string& source) {
    std::vector<size_t> idx;
    for (size_t i = 0; i < recs_.size(); ++i)
      if (source.empty() || recs_[i].source == source) idx.push_back(i);
    std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return recs_[a].score > recs_[b].score; });
    std::vector<std::string> ids;
    for (size_t i : idx) ids.push_back(recs_[i].id);
    return ids;
  }

  std::map<std::string, std::set<std::string>> selected_by_source() {
    std::map<std::string, std::set<std::string>> out;
    for (const auto& j : read_jsonl(tmp_ / "selected.jsonl"))
      out[j.value("source", std::string("(missing)"))].insert(j["id"].get<std::string>());
    return out;
  }
};

TEST_F(CurationTest, ProportionalQuotasKeepTheSourceMix) {
  make(30, 10, 1);
  SelectJobResult r;
  auto sel = select_grouped(8, GroupQuota::kProportional, &r);
  EXPECT_EQ(sel["gsm8k"].size(), 6u);  // 30/40 of 8
  EXPECT_EQ(sel["math"].size(), 2u);
  EXPECT_EQ(r.selected, 8);
  ASSERT_EQ(r.groups.size(), 2u);
  // Each group's records are its best.
  for (const std::string src : {"gsm8k", "math"}) {
    const auto ids = ranked_ids(src);
    const std::set<std::string> best(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(sel[src].size()));
    EXPECT_EQ(sel[src], best) << src;
  }
}

TEST_F(CurationTest, EqualQuotasGiveWhatASmallGroupCannotToTheOthers) {
  make(30, 10, 2);
  auto sel = select_grouped(8, GroupQuota::kEqual);
  EXPECT_EQ(sel["gsm8k"].size(), 4u);
  EXPECT_EQ(sel["math"].size(), 4u);
  sel = select_grouped(30, GroupQuota::kEqual);  // math has only 10
  EXPECT_EQ(sel["math"].size(), 10u);
  EXPECT_EQ(sel["gsm8k"].size(), 20u);
  // An odd total: the extra one goes to the group whose next record scores higher.
  sel = select_grouped(5, GroupQuota::kEqual);
  const auto a = ranked_ids("gsm8k"), b = ranked_ids("math");
  auto score_of = [&](const std::string& id) {
    for (const auto& r : recs_)
      if (r.id == id) return r.score;
    return 0.0;
  };
  const bool a_gets = score_of(a[2]) > score_of(b[2]);
  EXPECT_EQ(sel["gsm8k"].size(), a_gets ? 3u : 2u);
  EXPECT_EQ(sel["math"].size(), a_gets ? 2u : 3u);
}

TEST_F(CurationTest, ProportionalLeftoversGoByLargestRemainderOneEach) {
  make(16, 24, 12);
  // A third group: source "c" on the last 8 records of "math", leaving 16/16/8.
  std::string corpus, scores;
  std::istringstream in(read_text(tmp_ / "corpus.jsonl")), sin(read_text(tmp_ / "scores.jsonl"));
  std::string line, sline;
  for (int i = 0; std::getline(in, line) && std::getline(sin, sline); ++i) {
    nlohmann::ordered_json j = nlohmann::ordered_json::parse(line);
    if (i >= 32) j["source"] = "c";
    nlohmann::json s = nlohmann::json::parse(sline);
    s["line_hash"] = line_hash(j.dump());
    corpus += j.dump() + "\n";
    scores += s.dump() + "\n";
    if (i >= 32) recs_[static_cast<size_t>(i)].source = "c";
  }
  write_text(tmp_ / "corpus.jsonl", corpus);
  write_text(tmp_ / "scores.jsonl", scores);
  // 16/16/8 of 12: 4.8, 4.8, 2.4 -> 4, 4, 2 and the two units left to the larger remainders.
  auto sel = select_grouped(12, GroupQuota::kProportional);
  EXPECT_EQ(sel["gsm8k"].size(), 5u);
  EXPECT_EQ(sel["math"].size(), 5u);
  EXPECT_EQ(sel["c"].size(), 2u);
  sel = select_grouped(2, GroupQuota::kProportional);  // 0.8, 0.8, 0.4: one each to the first two
  EXPECT_EQ(sel["gsm8k"].size(), 1u);
  EXPECT_EQ(sel["math"].size(), 1u);
  EXPECT_EQ(sel["c"].size(), 0u);
  sel = select_grouped(20, GroupQuota::kEqual);  // 6 each, and the two left to two groups, one each
  EXPECT_EQ(sel["gsm8k"].size() + sel["math"].size() + sel["c"].size(), 20u);
  for (const auto& [g, ids] : sel) {
    EXPECT_GE(ids.size(), 6u) << g;
    EXPECT_LE(ids.size(), 7u) << g;
  }
}

TEST_F(CurationTest, RecordsWithoutTheFieldFormTheirOwnGroup) {
  make(30, 10, 3, true);
  SelectJobOptions o = select_opts(40);
  o.group_by = "source";
  Quiet ev;
  const SelectJobResult r = run_select_job(o, ev);
  int64_t missing = 0;
  for (const auto& g : r.groups)
    if (g.name == "(missing)") missing = g.candidates;
  EXPECT_EQ(missing, 4);  // lines 5, 14, 23, 32
  EXPECT_EQ(r.selected, 40);
  EXPECT_FALSE(ev.warnings.empty());
}

TEST_F(CurationTest, LengthAndScoreFiltersBoundTheCandidates) {
  make(30, 10, 4);
  SelectJobOptions o = select_opts(1000);
  o.min_tokens = 50;
  o.max_tokens = 150;
  o.min_score = 0.2;
  Quiet ev;
  const SelectJobResult r = run_select_job(o, ev);
  int64_t pass = 0;
  std::set<std::string> expected;
  for (const auto& rec : recs_)
    if (rec.tokens >= 50 && rec.tokens <= 150 && rec.score >= 0.2) {
      ++pass;
      expected.insert(rec.id);
    }
  ASSERT_GT(pass, 0);
  EXPECT_EQ(r.selected, pass);
  EXPECT_EQ(r.filtered, static_cast<int64_t>(recs_.size()) - pass);
  std::set<std::string> got;
  for (const auto& j : read_jsonl(tmp_ / "selected.jsonl")) got.insert(j["id"].get<std::string>());
  EXPECT_EQ(got, expected);
  o.max_tokens = 10;  // below min_tokens
  EXPECT_THROW(run_select_job(o, ev), OptionError);
}

// Spearman by its definition on distinct values: 1 - 6 sum d^2 / (n (n^2 - 1)).
double naive_spearman(const std::vector<double>& a, const std::vector<double>& b) {
  const size_t n = a.size();
  auto rank = [&](const std::vector<double>& v, size_t i) {
    size_t r = 1;
    for (size_t j = 0; j < n; ++j) r += v[j] < v[i];
    return static_cast<double>(r);
  };
  double d2 = 0;
  for (size_t i = 0; i < n; ++i) d2 += std::pow(rank(a, i) - rank(b, i), 2);
  const double nn = static_cast<double>(n);
  return 1 - 6 * d2 / (nn * (nn * nn - 1));
}

TEST_F(CurationTest, CompareReportsRankAgreementOverlapAndMovers) {
  make(30, 10, 5);
  // B: the same records, scores perturbed; one record moved from the top to the bottom.
  std::mt19937 rng(9);
  std::normal_distribution<double> noise(0, 0.3);
  std::vector<double> a, b;
  std::string text;
  const auto ids = ranked_ids("");
  size_t k = 0;
  for (const auto& j : read_jsonl(tmp_ / "scores.jsonl")) {
    nlohmann::json x = j;
    double s = j["air_score"].get<double>() + noise(rng);
    if (j["id"] == ids[0]) s = -10;
    x["air_score"] = s;
    a.push_back(j["air_score"].get<double>());
    b.push_back(s);
    text += x.dump() + "\n";
    ++k;
  }
  write_text(tmp_ / "scores-b.jsonl", text);
  CompareJobOptions o;
  o.a = {(tmp_ / "scores.jsonl").string()};
  o.b = {(tmp_ / "scores-b.jsonl").string()};
  o.out = (tmp_ / "cmp.json").string();
  o.top_k = 8;
  o.moved = 3;
  Quiet ev;
  const Comparison c = run_compare_job(o, ev);
  EXPECT_EQ(c.both, 40);
  EXPECT_NEAR(c.spearman, naive_spearman(a, b), 1e-12);
  // Top-8 sets by hand.
  auto top = [&](const std::vector<double>& v) {
    std::vector<size_t> idx(v.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](size_t x, size_t y) { return v[x] > v[y]; });
    return std::set<size_t>(idx.begin(), idx.begin() + 8);
  };
  const auto ta = top(a), tb = top(b);
  int64_t shared = 0;
  for (size_t i : ta) shared += tb.count(i);
  EXPECT_EQ(c.top_shared, shared);
  EXPECT_NEAR(c.top_jaccard, static_cast<double>(shared) / static_cast<double>(16 - shared), 1e-12);
  ASSERT_EQ(c.moved.size(), 3u);
  EXPECT_EQ(c.records[c.moved[0]].id, ids[0]);  // from rank 1 to rank 40
  EXPECT_EQ(c.records[c.moved[0]].rank_a, 1);
  EXPECT_EQ(c.records[c.moved[0]].rank_b, 40);
  const nlohmann::json j = read_json(tmp_ / "cmp.json");
  EXPECT_EQ(j["both"], 40);
  EXPECT_EQ(j["moved"][0]["id"], ids[0]);

  // The command line: A and B as arguments; the same file twice moves nothing; a meta beside a
  // score file is never written over.
  std::string err;
  ASSERT_EQ(run_air({"compare", o.a[0], o.b[0], "--top-k", "8", "--out", (tmp_ / "cli.json").string()}, &err), 0) << err;
  EXPECT_EQ(read_json(tmp_ / "cli.json")["top_shared"], shared);
  ASSERT_EQ(run_air({"compare", o.a[0], o.a[0], "--out", (tmp_ / "same.json").string()}, &err), 0) << err;
  EXPECT_EQ(read_json(tmp_ / "same.json")["moved"].size(), 0u);
  EXPECT_NEAR(read_json(tmp_ / "same.json")["spearman"].get<double>(), 1.0, 1e-12);
  write_text(o.b[0] + ".meta.json", "{\"options\": {}, \"counts\": {}}");
  EXPECT_EQ(run_air({"compare", o.a[0], o.b[0], "--out", o.b[0] + ".meta.json"}, &err), 2) << err;
  EXPECT_EQ(read_text(o.b[0] + ".meta.json"), "{\"options\": {}, \"counts\": {}}");
}

TEST(TokenWeights, ByteWeightedMeanScaledToMeanOne) {
  // Steps [0,10) weight 2 and [10,20) weight 0.5; tokens [0,5), [5,15) (5 bytes of each), [15,20).
  const std::vector<ScoredStep> steps{{0, 10, 3, 0, 2.0}, {10, 20, 3, 0, 0.5}};
  const std::vector<double> w = token_weights({{0, 5}, {5, 15}, {15, 20}}, steps);
  ASSERT_EQ(w.size(), 3u);
  const double raw[3] = {2.0, 1.25, 0.5};
  const double scale = 3 / (raw[0] + raw[1] + raw[2]);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(w[i], raw[i] * scale, 1e-12);
  EXPECT_NEAR(std::accumulate(w.begin(), w.end(), 0.0) / 3, 1.0, 1e-12);
}

class WeightsTest : public CurationTest {
 protected:
  // `data` for stories260K with the plain template, against scores.jsonl, into student.jsonl.
  WeightsJobOptions plain_opts(const std::string& data) {
    WeightsJobOptions o;
    o.data = data;
    o.scores = {(tmp_ / "scores.jsonl").string()};
    o.tokenizer = model_dir("stories260K").string();
    o.tmpl = "plain";
    o.out = (tmp_ / "student.jsonl").string();
    o.fields.prompt_field = "prompt";
    o.fields.response_fields = {"response"};
    return o;
  }

  // Writes the student's file and checks it against the student's own tokenization of the
  // rendered text: `prefix` + prompt + `middle` + response + `suffix`.
  void run_and_check(const std::string& tokenizer, const std::string& tmpl, const std::string& prefix,
                     const std::string& middle, const std::string& suffix) {
    WeightsJobOptions o;
    o.data = (tmp_ / "corpus.jsonl").string();
    o.scores = {(tmp_ / "scores.jsonl").string()};
    o.tokenizer = tokenizer;
    o.tmpl = tmpl;
    o.out = (tmp_ / "student.jsonl").string();
    o.fields.prompt_field = "prompt";
    o.fields.response_fields = {"response"};
    Quiet ev;
    const WeightsJobResult r = run_weights_job(o, ev);
    EXPECT_EQ(r.written, static_cast<int64_t>(recs_.size()));
    const auto tok = load_tokenizer(tokenizer);
    const auto lines = read_jsonl(tmp_ / "student.jsonl");
    ASSERT_EQ(lines.size(), recs_.size());
    for (size_t i = 0; i < lines.size(); ++i) {
      const auto& j = lines[i];
      const Rec& rec = recs_[i];
      ASSERT_EQ(j["id"], rec.id);
      const std::string text = prefix + rec.prompt + middle + rec.response + suffix;
      const size_t rb = prefix.size() + rec.prompt.size() + middle.size(), re = rb + rec.response.size();
      const Encoding enc = tok->encode(text, true);
      const auto ids = j["input_ids"].get<std::vector<int64_t>>();
      const auto labels = j["labels"].get<std::vector<int64_t>>();
      const auto w = j["loss_weights"].get<std::vector<double>>();
      ASSERT_EQ(ids, enc.ids) << rec.id;
      ASSERT_EQ(labels.size(), ids.size());
      ASSERT_EQ(w.size(), ids.size());
      double sum = 0;
      int64_t n = 0;
      std::vector<double> raw;  // byte-weighted step weight of each response token
      std::vector<size_t> resp;
      for (size_t k = 0; k < ids.size(); ++k) {
        const auto [b, e] = enc.offsets[k];
        const bool in_response = e > rb && b < re && k > 0;
        if (in_response) {
          EXPECT_EQ(labels[k], ids[k]);
          sum += w[k];
          ++n;
          double bytes = 0, acc = 0;
          for (const auto& s : rec.steps) {
            const double lo = std::max<double>(static_cast<double>(std::max(b, rb) - rb), s[0]);
            const double hi = std::min<double>(static_cast<double>(std::min(e, re) - rb), s[1]);
            if (hi > lo) {
              bytes += hi - lo;
              acc += (hi - lo) * s[2];
            }
          }
          raw.push_back(bytes > 0 ? acc / bytes : 1);
          resp.push_back(k);
        } else if (b < rb) {
          EXPECT_EQ(labels[k], -100) << rec.id << " token " << k;
          EXPECT_EQ(w[k], 0.0);
        } else {  // the turn's end
          EXPECT_EQ(labels[k], ids[k]);
          EXPECT_EQ(w[k], 1.0);
        }
      }
      ASSERT_GT(n, 0);
      EXPECT_NEAR(sum / static_cast<double>(n), 1.0, 1e-4) << rec.id;
      const double scale = static_cast<double>(n) / std::accumulate(raw.begin(), raw.end(), 0.0);
      for (size_t q = 0; q < resp.size(); ++q) EXPECT_NEAR(w[resp[q]], raw[q] * scale, 2e-5) << rec.id << " token " << resp[q];
    }
  }
};

TEST_F(WeightsTest, SentencePieceStudentWithThePlainTemplate) {
  make(6, 3, 7);
  run_and_check(model_dir("stories260K").string(), "plain", "", "\n\n", "");
}

// The output of `air select --annotate` is matched to its scores as the line was scored.
TEST_F(WeightsTest, AnnotatedSelectionReadsAsScored) {
  make(6, 3, 9);
  SelectJobOptions so = select_opts(4);
  so.annotate = true;
  Quiet ev;
  run_select_job(so, ev);
  WeightsJobOptions o = plain_opts(so.out);
  const WeightsJobResult r = run_weights_job(o, ev);
  EXPECT_EQ(r.written, 4);
  EXPECT_EQ(r.skipped, 0);
}

// A corpus without ids (GSM8K, MATH-500): every output of a selection names each record by its
// corpus id, line and line hash as in the scores, never by its line in selected.jsonl.
TEST_F(WeightsTest, OutputsOfASelectionJoinBackToTheScores) {
  make(12, 8, 21, false, false);
  std::map<std::string, nlohmann::json> by_id;  // the scores, by id
  for (const auto& j : read_jsonl(tmp_ / "scores.jsonl")) by_id[j["id"].get<std::string>()] = j;
  SelectJobOptions so = select_opts(5);
  so.order = SelectOrder::kInput;
  so.weights_out = (tmp_ / "select-weights.jsonl").string();
  Quiet ev;
  run_select_job(so, ev);
  const std::vector<std::string> top = ranked_ids("");
  const std::set<std::string> want(top.begin(), top.begin() + 5);
  auto check = [&](const nlohmann::json& j, const std::string& id_key, const std::string& line_key, const std::string& hash_key) {
    const std::string id = j[id_key].get<std::string>();
    ASSERT_TRUE(want.count(id)) << j.dump();
    EXPECT_EQ(j[line_key], by_id[id]["line"]);
    EXPECT_EQ(j[hash_key], by_id[id]["line_hash"]);
  };
  const auto sw = read_jsonl(so.weights_out);
  ASSERT_EQ(sw.size(), 5u);
  for (const auto& j : sw) check(j, "id", "line", "line_hash");

  WeightsJobOptions o = plain_opts(so.out);
  EXPECT_EQ(run_weights_job(o, ev).written, 5);
  const auto student = read_jsonl(o.out);
  ASSERT_EQ(student.size(), 5u);
  std::set<std::string> got;
  for (const auto& j : student) {
    check(j, "id", "line", "line_hash");
    got.insert(j["id"].get<std::string>());
  }
  EXPECT_EQ(got, want);

  // Annotated: the record carries its corpus line and hash, and still reads as scored.
  so.annotate = true;
  so.weights_out.clear();
  so.out = (tmp_ / "annotated.jsonl").string();
  run_select_job(so, ev);
  const auto annotated = read_jsonl(so.out);
  ASSERT_EQ(annotated.size(), 5u);
  for (size_t i = 0; i < annotated.size(); ++i) {
    EXPECT_EQ(annotated[i]["air_line"], sw[i]["line"]);
    EXPECT_EQ(annotated[i]["air_line_hash"], sw[i]["line_hash"]);
    EXPECT_FALSE(annotated[i].contains("id"));
  }
  // Selecting from the annotated file again replaces the annotation, leaving the rest as it was.
  so.data = so.out;
  so.out = (tmp_ / "again.jsonl").string();
  run_select_job(so, ev);
  EXPECT_EQ(read_text(so.out), read_text(tmp_ / "annotated.jsonl"));
  o.data = (tmp_ / "annotated.jsonl").string();
  o.out = (tmp_ / "student2.jsonl").string();
  EXPECT_EQ(run_weights_job(o, ev).written, 5);
  EXPECT_EQ(read_text(o.out), read_text(tmp_ / "student.jsonl"));
}

// Step weights outside what scoring writes (negative, huge, not in byte order) leave their record
// out with a warning naming it; the others are written, every loss weight finite and >= 0.
TEST_F(WeightsTest, StepWeightsAreChecked) {
  make(8, 0, 23);
  auto lines = read_jsonl(tmp_ / "scores.jsonl");
  lines[1]["steps"][0]["weight"] = -3;
  lines[2]["steps"][1]["weight"] = 1e308;
  lines[3]["steps"][1]["begin"] = 0;
  std::string text;
  for (const auto& j : lines) text += j.dump() + "\n";
  write_text(tmp_ / "scores.jsonl", text);
  WeightsJobOptions o = plain_opts((tmp_ / "corpus.jsonl").string());
  Quiet ev;
  const WeightsJobResult r = run_weights_job(o, ev);
  EXPECT_EQ(r.written, 5);
  EXPECT_EQ(r.skipped, 3);
  std::string all;
  for (const auto& w : ev.warnings) all += w + "\n";
  EXPECT_NE(all.find("id 'r1'"), std::string::npos) << all;
  EXPECT_NE(all.find("weight -3"), std::string::npos) << all;
  EXPECT_NE(all.find("weight 1e+308"), std::string::npos) << all;
  EXPECT_NE(all.find("id 'r3'"), std::string::npos) << all;
  for (const auto& j : read_jsonl(o.out)) {
    EXPECT_NE(j["id"], "r1");
    for (const auto& w : j["loss_weights"]) {
      ASSERT_TRUE(w.is_number()) << j["id"];
      EXPECT_GE(w.get<double>(), 0.0);
      EXPECT_LE(w.get<double>(), 16.0);
    }
  }
}

TEST_F(WeightsTest, ByteLevelBpeStudentWithChatml) {
  make(6, 3, 8);
  const fs::path tok = fs::path(AIR_TEST_DATA_DIR) / "tokenizers" / "qwen2_5" / "tokenizer.json";
  run_and_check(tok.string(), "chatml", "<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n", "<|im_end|>\n");
}

TEST_F(CurationTest, ReportIsSelfContainedWithEveryPlot) {
  make(300, 100, 11);
  // A heads file for the head map, and a second run to compare.
  nlohmann::json heads{{"selected", {{1, 0}, {0, 1}}}, {"heads", nlohmann::json::array()}};
  for (int l = 0; l < 3; ++l)
    for (int h = 0; h < 4; ++h) heads["heads"].push_back({{"rank", 1}, {"layer", l}, {"head", h}, {"score", 0.1 * (l + h)}});
  write_text(tmp_ / "heads.json", heads.dump());
  std::string b;
  for (auto j : read_jsonl(tmp_ / "scores.jsonl")) {
    j["air_score"] = -j["air_score"].get<double>();
    b += j.dump() + "\n";
  }
  write_text(tmp_ / "scores-b.jsonl", b);
  ReportOptions o;
  o.scores = {(tmp_ / "scores.jsonl").string(), (tmp_ / "scores-b.jsonl").string()};
  o.data = (tmp_ / "corpus.jsonl").string();
  o.heads = (tmp_ / "heads.json").string();
  o.top_k = 40;
  o.samples = 5;
  o.out = (tmp_ / "report.html").string();
  Quiet ev;
  const ReportResult r = run_report_job(o, ev);
  EXPECT_EQ(r.runs, 2);
  EXPECT_EQ(r.scored, 400);
  EXPECT_EQ(r.shown, 10);
  const std::string html = read_text(tmp_ / "report.html");
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("http://", html.find("<body")), html.find("http://www.w3.org/2000/svg", html.find("<body")));
  EXPECT_EQ(html.find("https://"), std::string::npos);
  // Every plot has marks.
  const std::regex svg_re("<svg class=\"plot\"[^]*?</svg>");
  int plots = 0;
  for (auto it = std::sregex_iterator(html.begin(), html.end(), svg_re); it != std::sregex_iterator(); ++it) {
    const std::string s = it->str();
    ++plots;
    EXPECT_TRUE(s.find("<rect x=\"") != std::string::npos || s.find("<circle") != std::string::npos) << s.substr(0, 200);
  }
  EXPECT_EQ(plots, 6);  // histogram, 3 scatter plots, head map, rank-rank
  // The best record's response is shown with its steps shaded; the compared runs are anti-correlated.
  const auto ids = ranked_ids("");
  EXPECT_NE(html.find("> " + ids[0] + " <"), std::string::npos);
  EXPECT_NE(html.find("class=\"step\""), std::string::npos);
  EXPECT_NE(html.find("Spearman <span class=\"stat\">-1.0000"), std::string::npos);
  // Outlined selected heads.
  size_t outlined = 0;
  for (size_t p = html.find("stroke-width=\"2\""); p != std::string::npos; p = html.find("stroke-width=\"2\"", p + 1)) ++outlined;
  EXPECT_EQ(outlined, 2u);
  // The output may not be an input, nor a meta or heads file that is read.
  for (const std::string& in : {o.data, o.heads}) {
    o.out = in;
    EXPECT_THROW(run_report_job(o, ev), Error);
  }
  // Another corpus: none of the records shown is in it.
  write_text(tmp_ / "other.jsonl", "{\"id\": \"x\", \"prompt\": \"p\", \"response\": \"r\"}\n");
  o.data = (tmp_ / "other.jsonl").string();
  o.out = (tmp_ / "r2.html").string();
  EXPECT_THROW(run_report_job(o, ev), DataError);
}

// The head map outlines the heads the scores were made with (the meta's), not those of a heads
// file probed again since, says so, and repeats the probe's verdict on a selection that is noise.
TEST_F(CurationTest, ReportHeadMapShowsTheHeadsThatScored) {
  make(30, 10, 17);
  nlohmann::json heads{{"selected", {{1, 0}, {0, 1}}}, {"heads", nlohmann::json::array()}};
  for (int l = 0; l < 3; ++l)
    for (int h = 0; h < 4; ++h) heads["heads"].push_back({{"rank", 1}, {"layer", l}, {"head", h}, {"score", 0.1 * (l + h)}});
  write_text(tmp_ / "heads.json", heads.dump());
  write_text(tmp_ / "scores.jsonl.meta.json",
             nlohmann::json{{"options", {{"prompt_field", "prompt"}, {"response_fields", {"response"}}}},
                            {"heads", {{"file", (tmp_ / "heads.json").string()}, {"selected", "2:3,0:0,1:2"}}}}
                 .dump());
  ReportOptions o;
  o.scores = {(tmp_ / "scores.jsonl").string()};
  o.top_k = 5;
  o.out = (tmp_ / "report.html").string();
  Quiet ev;
  run_report_job(o, ev);
  const std::string html = read_text(tmp_ / "report.html");
  size_t outlined = 0;
  for (size_t p = html.find("stroke-width=\"2\""); p != std::string::npos; p = html.find("stroke-width=\"2\"", p + 1)) ++outlined;
  EXPECT_EQ(outlined, 3u);  // the meta's three, not the file's two
  EXPECT_NE(html.find("now selects 0:1,1:0, but the scores were made with 0:0,1:2,2:3"), std::string::npos);
  EXPECT_NE(html.find("indistinguishable from noise"), std::string::npos);
  std::string warned;
  for (const auto& w : ev.warnings) warned += w + "\n";
  EXPECT_NE(warned.find("probed again since"), std::string::npos) << warned;
}

// Scores a few ulps apart, all equal, or huge: every plot still has finite coordinates, and the
// report ends.
TEST_F(CurationTest, ReportOfScoresWithoutARange) {
  make(30, 10, 13);
  const auto lines = read_jsonl(tmp_ / "scores.jsonl");
  for (const auto& pair : std::vector<std::pair<double, double>>{{1e20, 1e20 + 16384}, {0.5, 0.5}, {-1e300, 1e300}, {1e-300, 2e-300}}) {
    std::string text;
    for (size_t i = 0; i < lines.size(); ++i) {
      nlohmann::json j = lines[i];
      j["air_score"] = i % 2 ? pair.first : pair.second;
      text += j.dump() + "\n";
    }
    write_text(tmp_ / "scores.jsonl", text);
    ReportOptions o;
    o.scores = {(tmp_ / "scores.jsonl").string()};
    o.data = (tmp_ / "corpus.jsonl").string();
    o.top_k = 10;
    o.out = (tmp_ / "report.html").string();
    Quiet ev;
    run_report_job(o, ev);
    const std::string html = read_text(tmp_ / "report.html");
    EXPECT_EQ(html.find("nan"), std::string::npos) << pair.first;
    EXPECT_EQ(html.find("inf\""), std::string::npos) << pair.first;
  }
}

}  // namespace
}  // namespace air::test
