// Day-one correctness, as a new user meets it on real data: the right text is scored, runs stay
// comparable, nothing scored is lost, and messages say what a file is. Each test runs the
// commands in-process on the bundled model and the vendored samples.

#include "cli/cli.h"
#include "test_util.h"

#include <sys/stat.h>

#include <zlib.h>

#include <chrono>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

namespace air::test {
namespace {

fs::path data(const std::string& name) { return fs::path(AIR_MODELS_DIR) / ".." / "data" / name; }

std::vector<std::string> lines_of(const fs::path& p) {
  std::vector<std::string> out;
  std::ifstream in(p, std::ios::binary);
  for (std::string l; std::getline(in, l);)
    if (!l.empty()) out.push_back(l);
  return out;
}

std::vector<nlohmann::json> records(const fs::path& p) {
  std::vector<nlohmann::json> out;
  for (const auto& l : lines_of(p)) out.push_back(nlohmann::json::parse(l));
  return out;
}

class DayOneTest : public TempDirTest {
 protected:
  int air(const std::vector<std::string>& args, std::string* err = nullptr) { return run_air(args, err); }
  std::vector<std::string> score(const fs::path& corpus, const fs::path& out, std::vector<std::string> more = {}) {
    std::vector<std::string> a = {"score", "--model", model_dir("stories260K").string(), "--data", corpus.string(),
                                  "--out", out.string(), "--threads", "1"};
    a.insert(a.end(), more.begin(), more.end());
    return a;
  }
  std::vector<std::string> select(const fs::path& corpus, const std::vector<fs::path>& scores,
                                  std::vector<std::string> more = {}) {
    std::vector<std::string> a = {"select", "--data", corpus.string()};
    for (const auto& s : scores) a.insert(a.end(), {"--scores", s.string()});
    a.insert(a.end(), more.begin(), more.end());
    return a;
  }
  fs::path first_lines(const fs::path& from, size_t begin, size_t end, const std::string& name) {
    const auto all = lines_of(from);
    std::string text;
    for (size_t i = begin; i < std::min(end, all.size()); ++i) text += all[i] + "\n";
    write_text(tmp_ / name, text);
    return tmp_ / name;
  }
};

// Sky-T1's AMC23 output: the trace in `code` is scored (hundreds of tokens each), not the
// numeric reference answer (every record was rejected before).
TEST_F(DayOneTest, SkyT1TracesAreScored) {
  std::string err;
  // Past stories260K's 512 positions on purpose (no limit): the test is of the layout.
  ASSERT_EQ(air(score(data("skyt1-amc23-sample.jsonl"), tmp_ / "s.jsonl", {"--num-heads", "2", "--max-length", "0"}), &err), 0) << err;
  EXPECT_NE(err.find("records are read as Sky-T1: question -> code"), std::string::npos) << err;
  const auto scored = records(tmp_ / "s.jsonl");
  ASSERT_EQ(scored.size(), 4u);
  for (const auto& r : scored) EXPECT_GT(r["n_tokens"].get<int64_t>(), 500) << r.dump().substr(0, 200);
  const auto meta = read_json(tmp_ / "s.jsonl.meta.json");
  EXPECT_EQ(meta["layouts"]["Sky-T1: question -> code"], 4);
  EXPECT_EQ(meta["template"]["name"], "plain");
  EXPECT_NE(meta["template"]["origin"].get<std::string>().find("detected from"), std::string::npos);
}

// select reads the records as scoring did (from the meta): --dedupe compares the scored field,
// --show finds the steps; a field flag that disagrees with the meta is refused.
TEST_F(DayOneTest, SelectReadsRecordsAsScoringDid) {
  std::string text;
  const char* traces[] = {"Lily had a red ball. Lily played with the ball.\n\nThen Lily gave the ball to Tom.",
                          "Tom found a big kite. Tom flew the kite.\n\nThe kite went up high in the sky.",
                          "Sue loved her cat. Sue fed the cat.\n\nThe cat slept on the warm bed.",
                          "Max had a blue car. Max drove the car.\n\nThe car went very fast."};
  for (int i = 0; i < 4; ++i)
    text += nlohmann::json{{"question", "Tell a story."}, {"answer", "The end."}, {"trace", traces[i]}}.dump() + "\n";
  write_text(tmp_ / "c.jsonl", text);
  std::string err;
  ASSERT_EQ(air(score(tmp_ / "c.jsonl", tmp_ / "s.jsonl", {"--response-field", "trace", "--num-heads", "2",
                                                           "--min-step-tokens", "2"}), &err), 0) << err;
  ASSERT_EQ(air(select(tmp_ / "c.jsonl", {tmp_ / "s.jsonl"}, {"--top-k", "4", "--dedupe", "--show", "1", "--out",
                                                               (tmp_ / "sel.jsonl").string()}), &err), 0) << err;
  EXPECT_EQ(lines_of(tmp_ / "sel.jsonl").size(), 4u) << "distinct traces were dropped as duplicates: " << err;
  EXPECT_NE(err.find("most influential step"), std::string::npos) << err;
  EXPECT_EQ(air(select(tmp_ / "c.jsonl", {tmp_ / "s.jsonl"}, {"--top-k", "1", "--response-field", "answer", "--out",
                                                               (tmp_ / "sel.jsonl").string()}), &err), 2);
  EXPECT_NE(err.find("scored with 'trace'"), std::string::npos) << err;
}

// Shards of one run go together; score files of different runs are refused unless --allow-mixed.
TEST_F(DayOneTest, SelectRefusesScoresOfDifferentRuns) {
  const fs::path c = first_lines(data("gsm8k-sample.jsonl"), 0, 8, "c.jsonl");
  std::string err;
  ASSERT_EQ(air(score(c, tmp_ / "h.jsonl", {"--num-heads", "2"}), &err), 0) << err;
  const std::string heads = (tmp_ / "h.jsonl.heads.json").string();
  for (const char* i : {"0", "1"})
    ASSERT_EQ(air(score(c, tmp_ / ("s" + std::string(i) + ".jsonl"), {"--heads", heads, "--shard", std::string(i) + "/2"})), 0);
  ASSERT_EQ(air(score(c, tmp_ / "abs1.jsonl", {"--heads", heads, "--shard", "1/2", "--score", "absolute"})), 0);
  const std::vector<std::string> out = {"--top-k", "3", "--out", (tmp_ / "sel.jsonl").string()};
  EXPECT_EQ(air(select(c, {tmp_ / "s0.jsonl", tmp_ / "s1.jsonl"}, out), &err), 0) << err;
  EXPECT_EQ(air(select(c, {tmp_ / "s0.jsonl", tmp_ / "abs1.jsonl"}, out), &err), 2);
  EXPECT_NE(err.find("different scoring runs (--score"), std::string::npos) << err;
  std::vector<std::string> mixed = out;
  mixed.push_back("--allow-mixed");
  EXPECT_EQ(air(select(c, {tmp_ / "s0.jsonl", tmp_ / "abs1.jsonl"}, mixed), &err), 0) << err;
  EXPECT_NE(err.find("--allow-mixed"), std::string::npos) << err;
}

// A subset (or reordering) of the scored corpus is matched record by record; another corpus
// whose ids are also line numbers is not.
TEST_F(DayOneTest, SelectMatchesRecordsByTheirTextNotTheirLine) {
  const fs::path c = first_lines(data("gsm8k-sample.jsonl"), 0, 20, "c.jsonl");
  std::string err;
  ASSERT_EQ(air(score(c, tmp_ / "s.jsonl", {"--num-heads", "2", "--step-delimiter", "\\n", "--truncate"}), &err), 0) << err;
  const fs::path sub = first_lines(c, 5, 15, "sub.jsonl");
  ASSERT_EQ(air(select(sub, {tmp_ / "s.jsonl"}, {"--top-k", "3", "--out", (tmp_ / "sel.jsonl").string()}), &err), 0)
      << err;
  const auto mine = lines_of(sub);
  const std::set<std::string> subset(mine.begin(), mine.end());
  for (const auto& l : lines_of(tmp_ / "sel.jsonl")) EXPECT_TRUE(subset.count(l)) << l;
  // The same records picked from the whole corpus: the subset's top 3 are its best 3 there too.
  std::vector<std::pair<double, std::string>> ranked;
  const auto all = lines_of(c);
  const auto sc = records(tmp_ / "s.jsonl");
  for (size_t i = 0; i < all.size(); ++i)
    if (subset.count(all[i])) ranked.emplace_back(-sc[i]["air_score"].get<double>(), all[i]);
  std::sort(ranked.begin(), ranked.end());
  std::set<std::string> want;
  for (int i = 0; i < 3; ++i) want.insert(ranked[i].second);
  const auto got = lines_of(tmp_ / "sel.jsonl");
  EXPECT_EQ(std::set<std::string>(got.begin(), got.end()), want);

  const fs::path math = first_lines(data("math500-sample.jsonl"), 0, 12, "math.jsonl");
  EXPECT_EQ(air(select(math, {tmp_ / "s.jsonl"}, {"--top-k", "3", "--out", (tmp_ / "sel.jsonl").string()}), &err), 3);
  EXPECT_NE(err.find("belong to another corpus"), std::string::npos) << err;
  EXPECT_EQ(air(select(c, {tmp_ / "s.jsonl.meta.json"}, {"--top-k", "3", "--out", (tmp_ / "x.jsonl").string()}), &err), 2);
  EXPECT_NE(err.find("is the run description (meta)"), std::string::npos) << err;
}

TEST_F(DayOneTest, ProbeFlagsWithHeadsAreRefused) {
  const fs::path c = first_lines(data("stories-sample.jsonl"), 0, 4, "c.jsonl");
  std::string err;
  ASSERT_EQ(air(score(c, tmp_ / "s.jsonl", {"--num-heads", "2"}), &err), 0) << err;
  EXPECT_EQ(air(score(c, tmp_ / "t.jsonl", {"--heads", (tmp_ / "s.jsonl.heads.json").string(), "--num-items", "8"}), &err), 2);
  EXPECT_NE(err.find("--num-items"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(tmp_ / "t.jsonl"));
  // heads.json tells how far the selected heads stand out.
  const auto h = read_json(tmp_ / "s.jsonl.heads.json");
  ASSERT_TRUE(h.contains("separation")) << h.dump();
  EXPECT_TRUE(h["separation"]["z_mean_selected"].is_number());
  EXPECT_TRUE(h["separation"]["distinct"].is_boolean());
}

// A random-weights model's probe is noise, and the log says so.
TEST_F(DayOneTest, ANoiseSelectionIsWarnedAbout) {
  const fs::path m = copy_fixture("llama", "random");
  fs::copy_file(model_dir("stories260K") / "tokenizer.model", m / "tokenizer.model");
  std::string err;
  ASSERT_EQ(air({"probe", "--model", m.string(), "--probe", "random-repeat", "--out", (tmp_ / "h.json").string()}, &err), 0)
      << err;
  EXPECT_NE(err.find("indistinguishable from noise"), std::string::npos) << err;
  EXPECT_FALSE(read_json(tmp_ / "h.json")["separation"]["distinct"].get<bool>());
}

TEST_F(DayOneTest, WhenEveryRecordIsRejectedTheMessageSaysWhy) {
  const fs::path c = first_lines(data("gsm8k-sample.jsonl"), 0, 5, "c.jsonl");
  std::string err;
  EXPECT_EQ(air(score(c, tmp_ / "s.jsonl", {"--prompt-field", "questoin", "--num-heads", "2"}), &err), 3);
  EXPECT_NE(err.find("none of its 5 records could be read"), std::string::npos) << err;
  EXPECT_NE(err.find("missing field 'questoin'"), std::string::npos) << err;
}

TEST_F(DayOneTest, JsonArraysAreRefusedUpFrontAndGzipIsRead) {
  const fs::path c = first_lines(data("gsm8k-sample.jsonl"), 0, 6, "c.jsonl");
  std::string arr = "[";
  for (const auto& l : lines_of(c)) arr += (arr.size() > 1 ? "," : "") + l;
  write_text(tmp_ / "c.json", arr + "]\n");
  std::string err;
  EXPECT_EQ(air(score(tmp_ / "c.json", tmp_ / "a.jsonl", {"--num-heads", "2"}), &err), 3);
  EXPECT_NE(err.find("not JSON Lines"), std::string::npos) << err;
  EXPECT_EQ(err.find("probe"), std::string::npos) << "the model ran first: " << err;

  const std::string text = read_text(c);
  gzFile gz = gzopen((tmp_ / "c.jsonl.gz").c_str(), "wb");
  gzwrite(gz, text.data(), static_cast<unsigned>(text.size()));
  gzclose(gz);
  ASSERT_EQ(air(score(c, tmp_ / "plain.jsonl", {"--num-heads", "2"}), &err), 0) << err;
  ASSERT_EQ(air(score(tmp_ / "c.jsonl.gz", tmp_ / "gz.jsonl", {"--heads", (tmp_ / "plain.jsonl.heads.json").string()}), &err), 0)
      << err;
  EXPECT_EQ(read_text(tmp_ / "gz.jsonl"), read_text(tmp_ / "plain.jsonl"));
  ASSERT_EQ(air(select(tmp_ / "c.jsonl.gz", {tmp_ / "gz.jsonl"}, {"--top-k", "2", "--out", (tmp_ / "sel.jsonl").string()}), &err), 0)
      << err;
}

TEST_F(DayOneTest, ResumedRunsAddUpTheirTime) {
  const fs::path c = first_lines(data("gsm8k-sample.jsonl"), 0, 6, "c.jsonl");  // one step each
  std::string err;
  ASSERT_EQ(air(score(c, tmp_ / "s.jsonl", {"--num-heads", "2"}), &err), 0) << err;
  ASSERT_EQ(air(score(c, tmp_ / "s.jsonl", {"--num-heads", "2", "--resume"}), &err), 0) << err;
  const auto meta = read_json(tmp_ / "s.jsonl.meta.json");
  EXPECT_EQ(meta["counts"]["single_step"], 6) << "records taken from the earlier run are counted too";
  ASSERT_EQ(meta["runs"].size(), 2u) << meta.dump();
  const double sum = meta["runs"][0]["wall_seconds"].get<double>() + meta["runs"][1]["wall_seconds"].get<double>();
  EXPECT_NEAR(meta["wall_seconds"].get<double>(), sum, 1e-6);
  EXPECT_EQ(meta["runs"][0]["records"], 6);
  EXPECT_EQ(meta["runs"][1]["records"], 0);
}

// A partial output that a kill cut in the middle of a line: select takes its whole lines, as
// --resume does, and reads its description beside it.
TEST_F(DayOneTest, SelectReadsAPartialOutputCutShort) {
  const fs::path c = first_lines(data("gsm8k-sample.jsonl"), 0, 8, "c.jsonl");
  std::string err;
  ASSERT_EQ(air(score(c, tmp_ / "s.jsonl", {"--num-heads", "2"}), &err), 0) << err;
  const auto scored = lines_of(tmp_ / "s.jsonl");
  std::string text;
  for (int i = 0; i < 5; ++i) text += scored[i] + "\n";
  write_text(tmp_ / "p.jsonl.partial", text + scored[5].substr(0, scored[5].size() / 2));
  fs::copy_file(tmp_ / "s.jsonl.meta.json", tmp_ / "p.jsonl.partial.json");
  ASSERT_EQ(air(select(c, {tmp_ / "p.jsonl.partial"}, {"--allow-partial", "--top-k", "2", "--out",
                                                       (tmp_ / "sel.jsonl").string()}), &err), 0) << err;
  EXPECT_NE(err.find("incomplete"), std::string::npos) << err;
  EXPECT_NE(err.find("3 of the 8 records of"), std::string::npos) << err;
  // A field flag where scoring detected the layout: the message says so.
  EXPECT_EQ(air(select(c, {tmp_ / "s.jsonl"}, {"--top-k", "2", "--response-field", "answer", "--out",
                                               (tmp_ / "sel.jsonl").string()}), &err), 2);
  EXPECT_NE(err.find("their layout detected: question -> answer"), std::string::npos) << err;
}

// Records reach OUT.partial as they are scored, not only when a window of 1,024 fills: a corpus
// that arrives slowly (a FIFO here) has its first records on disk before it ends.
TEST_F(DayOneTest, ScoredRecordsAreWrittenBeforeTheRunEnds) {
  const auto lines = lines_of(data("stories-sample.jsonl"));
  const fs::path c = first_lines(data("stories-sample.jsonl"), 0, 4, "c.jsonl");
  std::string err;
  ASSERT_EQ(air(score(c, tmp_ / "h.jsonl", {"--num-heads", "2"}), &err), 0) << err;
  const fs::path fifo = tmp_ / "in.fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  const fs::path out = tmp_ / "s.jsonl";
  int rc = -1;
  std::thread run([&] {
    rc = cli::run(score(fifo, out, {"--heads", (tmp_ / "h.jsonl.heads.json").string(), "--batch-tokens", "64"}));
  });
  bool seen = false;
  {
    std::ofstream w(fifo);
    w << lines[0] << "\n" << std::flush;
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < until && !seen) {
      seen = fs::exists(tmp_ / "s.jsonl.partial") && lines_of(tmp_ / "s.jsonl.partial").size() >= 1;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    w << lines[1] << "\n" << lines[2] << "\n";
  }
  run.join();
  EXPECT_TRUE(seen) << "no record was written while the corpus was still open";
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(lines_of(out).size(), 3u);
}

TEST_F(DayOneTest, StepDelimiterMisfitIsWarnedAbout) {
  const fs::path c = first_lines(data("gsm8k-sample.jsonl"), 0, 10, "c.jsonl");
  std::string err;
  const std::vector<std::string> render = {"render", "--model", model_dir("stories260K").string(), "--data", c.string(),
                                           "--out", (tmp_ / "r.jsonl").string(), "--truncate"};
  ASSERT_EQ(air(render, &err), 0) << err;
  EXPECT_NE(err.find("10 of 10 records are a single step"), std::string::npos) << err;
  std::vector<std::string> nl = render;
  nl.insert(nl.end(), {"--step-delimiter", "\\n"});
  ASSERT_EQ(air(nl, &err), 0) << err;
  EXPECT_EQ(err.find("single step"), std::string::npos) << err;
}

// The rejects file is rewritten on every run: a clean run leaves an empty one, not the last
// run's rejects; its ids are the records' ids as score gives them.
TEST_F(DayOneTest, RenderRejectsAreNeverStale) {
  const fs::path c = first_lines(data("gsm8k-sample.jsonl"), 0, 3, "c.jsonl");
  write_text(tmp_ / "bad.jsonl", read_text(c) + "{\"question\": \"q\"}\n");
  const std::vector<std::string> base = {"render", "--model", model_dir("stories260K").string(), "--out",
                                         (tmp_ / "r.jsonl").string(), "--data"};
  std::vector<std::string> bad = base, good = base;
  bad.push_back((tmp_ / "bad.jsonl").string());
  good.push_back(c.string());
  ASSERT_EQ(air(bad), 0);
  const auto rejects = records(tmp_ / "r.jsonl.rejects.jsonl");
  ASSERT_EQ(rejects.size(), 1u);
  EXPECT_EQ(rejects[0]["id"], "4");
  ASSERT_EQ(air(good), 0);
  EXPECT_TRUE(fs::exists(tmp_ / "r.jsonl.rejects.jsonl"));
  EXPECT_EQ(read_text(tmp_ / "r.jsonl.rejects.jsonl"), "");
}

std::string help_of(const std::vector<std::string>& args) {
  testing::internal::CaptureStdout();
  testing::internal::CaptureStderr();
  cli::run(args);
  testing::internal::GetCapturedStderr();
  return testing::internal::GetCapturedStdout();
}

std::set<std::string> flags_in(const std::string& text) {
  std::set<std::string> out;
  static const std::regex flag(R"((^|[^A-Za-z0-9_-])(--[a-z][a-z0-9-]+))");
  for (std::sregex_iterator it(text.begin(), text.end(), flag), end; it != end; ++it) out.insert((*it)[2].str());
  return out;
}

// Every flag the README or docs/OUTPUTS.md mentions exists, and every flag of the main commands
// is documented there.
TEST(HelpTest, EveryFlagIsDocumentedAndEveryDocumentedFlagExists) {
  const fs::path root = fs::path(AIR_MODELS_DIR) / "..";
  const std::string docs = read_text(root / "README.md") + read_text(root / "docs" / "OUTPUTS.md");
  std::set<std::string> known = flags_in(help_of({"--help"}));
  // The Slurm scripts' flags (scripts/slurm/submit.sh and the sbatch options it sets) are theirs.
  for (const char* script : {"submit.sh", "air-score.sbatch"}) {
    const auto f = flags_in(read_text(root / "scripts" / "slurm" / script));
    known.insert(f.begin(), f.end());
  }
  const std::set<std::string> documented{"probe", "score", "select", "render", "compare", "report", "weights"};
  for (const char* cmd :
       {"probe", "score", "select", "render", "compare", "report", "weights", "tokenize", "loss", "inspect", "bench"}) {
    const std::string help = help_of({cmd, "--help"});
    const auto flags = flags_in(help);
    known.insert(flags.begin(), flags.end());
    if (documented.count(cmd))
      for (const auto& f : flags)
        if (f != "--help") EXPECT_NE(docs.find(f), std::string::npos) << "air " << cmd << " " << f << " is not documented";
  }
  // Lines of other tools' commands (cmake, ctest, the scripts) are not air's flags.
  std::string air_lines;
  std::istringstream in(docs);
  for (std::string l; std::getline(in, l);)
    if (l.find("cmake ") == std::string::npos && l.find("ctest ") == std::string::npos &&
        l.find("scripts/") == std::string::npos)
      air_lines += l + "\n";
  for (const auto& f : flags_in(air_lines)) EXPECT_TRUE(known.count(f)) << f << " is documented but no command has it";
}

}  // namespace
}  // namespace air::test
