// Hostile input, absurd settings, concurrent runs and full disks: each finding of the reliability
// review (outputs over inputs, special files, concurrent runs, sizes, broken numbers, one bad
// record, ids, tokenizer ids, streams, and the smaller ones) as a regression test.

#include "air/build_info.h"
#include "air/corpus.h"
#include "air/error.h"
#include "air/heads_file.h"
#include "air/scorer.h"
#include "air/tokenizer.h"
#include "cli/cli.h"
#include "air/score_output.h"
#include "test_util.h"

#include <ATen/ATen.h>

#include <fcntl.h>
#include <link.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

extern char** environ;

namespace air::test {
namespace {

fs::path stories() { return fs::path(AIR_MODELS_DIR) / ".." / "data" / "stories-sample.jsonl"; }

std::vector<std::string> lines_of(const fs::path& p) {
  std::vector<std::string> out;
  std::ifstream in(p, std::ios::binary);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

class ReliabilityTest : public TempDirTest {
 protected:
  // The first n records of the bundled stories corpus, repeated `times` times.
  fs::path corpus(size_t n, int times = 1, const std::string& name = "c.jsonl") {
    const auto all = lines_of(stories());
    std::string text;
    for (int t = 0; t < times; ++t)
      for (size_t i = 0; i < std::min(n, all.size()); ++i) text += all[i] + "\n";
    write_text(tmp_ / name, text);
    return tmp_ / name;
  }
  // Runs the command line; returns the exit code, stderr in *err.
  int air(const std::vector<std::string>& args, std::string* err = nullptr) { return run_air(args, err); }
  std::vector<std::string> score_args(const fs::path& data, const fs::path& out) {
    return {"score", "--model", model_dir("stories260K").string(), "--data", data.string(), "--out",
            out.string(), "--num-heads", "2", "--threads", "1"};
  }
  // Copies stories260K (the SentencePiece model, with its config edited by `edit`).
  fs::path stories_copy(const std::function<void(nlohmann::json&)>& edit = nullptr) {
    const fs::path dir = tmp_ / "m";
    fs::create_directories(dir);
    for (const auto& e : fs::directory_iterator(model_dir("stories260K")))
      fs::copy_file(e.path(), dir / e.path().filename(), fs::copy_options::overwrite_existing);
    if (edit) {
      nlohmann::json c = read_json(dir / "config.json");
      edit(c);
      write_text(dir / "config.json", c.dump());
    }
    return dir;
  }
};

// 1. An output naming an input, however spelled, is refused before anything is written.
TEST_F(ReliabilityTest, OutputsOverInputsAreRefused) {
  const fs::path c = corpus(6);
  const std::string before = read_text(c);
  fs::create_directories(tmp_ / "x");
  std::string err;
  const std::string dotted = (tmp_ / "x" / ".." / "c.jsonl").string();
  EXPECT_EQ(air(score_args(c, dotted), &err), 2);
  EXPECT_NE(err.find("would destroy"), std::string::npos) << err;
  fs::create_hard_link(c, tmp_ / "link.jsonl");
  EXPECT_EQ(air(score_args(c, tmp_ / "link.jsonl")), 2);
  EXPECT_EQ(read_text(c), before);

  const fs::path s = tmp_ / "s.jsonl";
  ASSERT_EQ(air(score_args(c, s)), 0);
  const std::string scores = read_text(s);
  const std::string sel = "select";
  EXPECT_EQ(air({sel, "--data", c.string(), "--scores", s.string(), "--top-k", "2", "--out", s.string()}), 2);
  EXPECT_EQ(air({sel, "--data", c.string(), "--scores", s.string(), "--top-k", "2", "--out", dotted}), 2);
  EXPECT_EQ(air({sel, "--data", c.string(), "--scores", s.string(), "--top-k", "2", "--out",
                 (tmp_ / "o.jsonl").string(), "--weights-out", c.string()}),
            2);
  EXPECT_EQ(air({sel, "--data", c.string(), "--scores", s.string(), "--top-k", "2", "--out",
                 (tmp_ / "o.jsonl").string(), "--weights-out", (tmp_ / "o.jsonl").string()}),
            2);
  EXPECT_EQ(air({"probe", "--model", model_dir("stories260K").string(), "--data", c.string(), "--out", c.string()}), 2);
  EXPECT_EQ(air({"render", "--model", model_dir("stories260K").string(), "--data", c.string(), "--out", dotted}), 2);
  write_text(tmp_ / "ids.jsonl", "{\"ids\": [1, 2, 3]}\n");
  EXPECT_EQ(air({"loss", "--model", model_dir("stories260K").string(), "--input", (tmp_ / "ids.jsonl").string(),
                 "--out", (tmp_ / "x" / ".." / "ids.jsonl").string()}),
            2);
  EXPECT_EQ(read_text(tmp_ / "ids.jsonl"), "{\"ids\": [1, 2, 3]}\n");
  EXPECT_EQ(read_text(c), before);
  EXPECT_EQ(read_text(s), scores);
}

// Reads a FIFO to its end in a thread; finish() unblocks a reader whose writer never came.
class FifoReader {
 public:
  explicit FifoReader(const fs::path& p) : path_(p) {
    EXPECT_EQ(::mkfifo(p.c_str(), 0644), 0);
    thread_ = std::thread([this] {
      std::ifstream in(path_, std::ios::binary);
      std::stringstream ss;
      ss << in.rdbuf();
      text_ = ss.str();
    });
  }
  std::string finish() {
    const int fd = ::open(path_.c_str(), O_WRONLY | O_NONBLOCK);  // succeeds only while blocked
    if (fd >= 0) ::close(fd);
    thread_.join();
    return text_;
  }

 private:
  fs::path path_;
  std::thread thread_;
  std::string text_;
};

bool is_fifo_file(const fs::path& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISFIFO(st.st_mode);
}

// Files of a model folder are inputs too; an output's lock file must not be an input, nor a link
// or a file of someone else's; links among outputs are followed, never replaced.
TEST_F(ReliabilityTest, ModelFilesLockFilesAndLinksAreNeverWrittenThrough) {
  const fs::path m = stories_copy();
  const std::string config = read_text(m / "config.json");
  const fs::path c = corpus(4);
  auto args = score_args(c, m / "config.json");
  args[2] = m.string();
  EXPECT_EQ(air(args), 2);
  EXPECT_EQ(air({"probe", "--model", m.string(), "--out", (m / "tokenizer.model").string()}), 2);
  EXPECT_EQ(read_text(m / "config.json"), config);

  // A corpus named like the output's lock file; a lock path that is a link; a stranger's file.
  fs::copy_file(c, tmp_ / "k.jsonl.lock");
  EXPECT_EQ(air(score_args(tmp_ / "k.jsonl.lock", tmp_ / "k.jsonl")), 2);
  EXPECT_EQ(read_text(tmp_ / "k.jsonl.lock"), read_text(c));
  const fs::path s = tmp_ / "s.jsonl";
  ASSERT_EQ(air(score_args(c, s)), 0);
  write_text(tmp_ / "victim.txt", "keep me\n");
  fs::create_symlink(tmp_ / "victim.txt", tmp_ / "z.jsonl.lock");
  std::string err;
  EXPECT_EQ(air({"select", "--data", c.string(), "--scores", s.string(), "--top-k", "2", "--out",
                 (tmp_ / "z.jsonl").string()},
                &err),
            5);
  EXPECT_NE(err.find("symbolic link"), std::string::npos) << err;
  write_text(tmp_ / "y.jsonl.lock", "my notes\n");
  EXPECT_EQ(air({"select", "--data", c.string(), "--scores", s.string(), "--top-k", "2", "--out",
                 (tmp_ / "y.jsonl").string()}),
            5);
  EXPECT_EQ(read_text(tmp_ / "y.jsonl.lock"), "my notes\n");

  // A partial left as a link to another file: that file is not written.
  fs::create_symlink(tmp_ / "victim.txt", tmp_ / "p.jsonl.partial");
  EXPECT_EQ(air(score_args(c, tmp_ / "p.jsonl")), 0);
  EXPECT_FALSE(fs::is_symlink(tmp_ / "p.jsonl"));
  EXPECT_EQ(read_text(tmp_ / "victim.txt"), "keep me\n");

  // --out a link: the link stays and its target gets the output.
  write_text(tmp_ / "target.jsonl", "");
  fs::create_symlink(tmp_ / "target.jsonl", tmp_ / "link.jsonl");
  EXPECT_EQ(air({"select", "--data", c.string(), "--scores", s.string(), "--top-k", "2", "--out",
                 (tmp_ / "link.jsonl").string()}),
            0);
  EXPECT_TRUE(fs::is_symlink(tmp_ / "link.jsonl"));
  EXPECT_EQ(lines_of(tmp_ / "target.jsonl").size(), 2u);

  // --out a link into /proc (as /dev/stdout is): written in place through the open file.
  const fs::path opened = tmp_ / "opened.jsonl";
  const int fd = ::open(opened.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  fs::create_symlink("/proc/self/fd/" + std::to_string(fd), tmp_ / "so");
  EXPECT_EQ(air({"select", "--data", c.string(), "--scores", s.string(), "--top-k", "3", "--out",
                 (tmp_ / "so").string()}),
            0);
  ::close(fd);
  EXPECT_TRUE(fs::is_symlink(tmp_ / "so"));
  EXPECT_EQ(lines_of(opened).size(), 3u);
  EXPECT_FALSE(fs::exists(tmp_ / "so.lock"));
}

// Probe settings the model cannot run, and probe text that gives nothing, are errors at once.
TEST_F(ReliabilityTest, ProbeSettingsAreCheckedBeforeTheProbeRuns) {
  const std::string M = model_dir("stories260K").string();
  const std::string out = (tmp_ / "h.json").string();
  std::string err;
  EXPECT_EQ(air({"probe", "--model", M, "--out", out, "--span-tokens", "100000"}, &err), 2);
  EXPECT_NE(err.find("--span-tokens"), std::string::npos) << err;
  EXPECT_EQ(air({"probe", "--model", M, "--out", out, "--num-heads", "0"}), 2);
  EXPECT_EQ(air({"probe", "--model", M, "--out", out, "--delta", "nan"}), 2);
  EXPECT_EQ(air({"probe", "--model", M, "--out", out, "--min-score", "-inf"}), 2);
  write_text(tmp_ / "empty.jsonl", "\n\n");
  EXPECT_EQ(air({"probe", "--model", M, "--out", out, "--data", (tmp_ / "empty.jsonl").string()}, &err), 3);
  EXPECT_NE(err.find("no text for the repeat probe"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(out));
}

// A --max-memory that does not parse is said on stderr; stdout stays clean (a separate process:
// the logger is set up once per process).
TEST_F(ReliabilityTest, FlagErrorsGoToStderr) {
  write_text(tmp_ / "ids.jsonl", "{\"ids\": [1, 2, 3]}\n");
  const std::string cmd = std::string(AIR_EXE) + " loss --model " + model_dir("stories260K").string() +
                          " --input " + (tmp_ / "ids.jsonl").string() + " --max-memory abc >" + (tmp_ / "o.txt").string() + " 2>" + (tmp_ / "e.txt").string();
  const int status = std::system(cmd.c_str());
  EXPECT_EQ(WEXITSTATUS(status), 2);
  EXPECT_EQ(read_text(tmp_ / "o.txt"), "");
  EXPECT_NE(read_text(tmp_ / "e.txt").find("memory size 'abc'"), std::string::npos) << read_text(tmp_ / "e.txt");
}

// select sees a record edited after scoring (its line_hash), as --resume does.
TEST_F(ReliabilityTest, SelectRefusesScoresOfEditedRecords) {
  const fs::path c = corpus(5);
  const fs::path s = tmp_ / "s.jsonl";
  ASSERT_EQ(air(score_args(c, s)), 0);
  auto lines = lines_of(c);
  auto j = nlohmann::ordered_json::parse(lines[1]);
  j["response"] = "Hi.";
  lines[1] = j.dump();
  std::string text;
  for (const auto& l : lines) text += l + "\n";
  write_text(c, text);
  std::string err;
  EXPECT_EQ(air({"select", "--data", c.string(), "--scores", s.string(), "--top-k", "2", "--out",
                 (tmp_ / "sel.jsonl").string()},
                &err),
            3);
  EXPECT_NE(err.find("changed"), std::string::npos) << err;
}

// 2. A FIFO (or a device) as output is written in place, never replaced by a regular file.
TEST_F(ReliabilityTest, SpecialFilesAreWrittenInPlace) {
  const fs::path c = corpus(6);
  const fs::path s = tmp_ / "s.jsonl";
  ASSERT_EQ(air(score_args(c, s)), 0);

  const fs::path f = tmp_ / "fifo";
  FifoReader sel(f);
  EXPECT_EQ(air({"select", "--data", c.string(), "--scores", s.string(), "--top-k", "3", "--out", f.string()}), 0);
  const std::string selected = sel.finish();
  EXPECT_TRUE(is_fifo_file(f));
  EXPECT_EQ(std::count(selected.begin(), selected.end(), '\n'), 3);

  fs::remove(f);
  FifoReader scored(f);
  auto args = score_args(c, f);
  use_heads(args, s.string() + ".heads.json");
  args.insert(args.end(), {"--meta", (tmp_ / "fifo.meta.json").string()});
  EXPECT_EQ(air(args), 0);
  const std::string text = scored.finish();
  EXPECT_TRUE(is_fifo_file(f));
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 6);
  EXPECT_EQ(read_json(tmp_ / "fifo.meta.json")["counts"]["scored"], 6);
  EXPECT_FALSE(fs::exists(f.string() + ".partial"));

  fs::remove(f);
  FifoReader heads(f);
  EXPECT_EQ(air({"probe", "--model", model_dir("stories260K").string(), "--data", c.string(), "--out", f.string()}), 0);
  EXPECT_TRUE(nlohmann::json::parse(heads.finish()).contains("selected"));
  EXPECT_TRUE(is_fifo_file(f));
}

// 3. A second run on the same --out (another process) is refused while the first runs; the
// first's output is whole and its own.
TEST_F(ReliabilityTest, ASecondRunOnTheSameOutputIsRefused) {
  const fs::path big = corpus(40, 30, "big.jsonl");
  const fs::path small = corpus(5, 1, "small.jsonl");
  const fs::path out = tmp_ / "o.jsonl";
  std::vector<std::string> args = {AIR_EXE};
  for (const auto& a : score_args(big, out)) args.push_back(a);
  args.insert(args.end(), {"--window", "4", "--log-level", "warn"});
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, AIR_EXE, nullptr, nullptr, argv.data(), environ), 0);
  const auto t0 = std::chrono::steady_clock::now();
  while (!fs::exists(out.string() + ".partial") && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_TRUE(fs::exists(out.string() + ".partial")) << "the first run never started writing";
  std::string err;
  EXPECT_EQ(air(score_args(small, out), &err), 5);
  EXPECT_NE(err.find("another run (pid " + std::to_string(pid) + ")"), std::string::npos) << err;
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  const auto lines = lines_of(out);
  ASSERT_EQ(lines.size(), 1200u);
  const auto want = lines_of(big);
  for (size_t i = 0; i < lines.size(); ++i)
    ASSERT_EQ(nlohmann::json::parse(lines[i])["id"], nlohmann::json::parse(want[i])["id"]) << i;
  EXPECT_FALSE(fs::exists(out.string() + ".lock"));
  // Free again once the first has ended.
  EXPECT_EQ(air(score_args(small, out)), 0);
  EXPECT_EQ(lines_of(out).size(), 5u);
}

// 4. Sizes in config.json and flags: checked against the weights and the machine before any
// allocation, each a clear error with its exit code.
TEST_F(ReliabilityTest, AbsurdSizesAreRefusedBeforeAllocation) {
  const std::vector<std::pair<std::string, nlohmann::json>> cases = {
      {"num_hidden_layers", 1000000000000LL}, {"num_hidden_layers", 10000000}, {"hidden_size", 1 << 30},
      {"vocab_size", 1000000000},             {"intermediate_size", 1 << 29},  {"num_attention_heads", 1 << 20},
      {"rope_theta", 0},                      {"rope_theta", -10000.0},        {"rms_norm_eps", -1e-5},
      {"max_position_embeddings", 0},         {"max_position_embeddings", -5}};
  for (const auto& [key, value] : cases) {
    fs::remove_all(tmp_ / "m");
    const fs::path m = stories_copy([&](nlohmann::json& c) { c[key] = value; });
    std::string err;
    EXPECT_EQ(air({"inspect", "--model", m.string()}, &err), 4) << key << " = " << value;
    EXPECT_NE(err.find(key == "num_attention_heads" ? "q_proj" : key == "intermediate_size" ? "gate_proj"
                       : key == "hidden_size" || key == "vocab_size" ? "embed_tokens" : key),
              std::string::npos)
        << err;
  }
  const fs::path c = corpus(4);
  const std::string M = model_dir("stories260K").string();
  write_text(tmp_ / "ids.jsonl", "{\"ids\": [1, 2, 3]}\n");
  const std::vector<std::string> loss = {"loss", "--model", M, "--input", (tmp_ / "ids.jsonl").string()};
  auto with = [&](std::initializer_list<std::string> extra) {
    auto a = loss;
    a.insert(a.end(), extra);
    return a;
  };
  std::string err;
  // More threads than CPUs: capped with a warning (a shared config runs on smaller nodes).
  EXPECT_EQ(air(with({"--threads", "10000"}), &err), 0) << err;
  EXPECT_NE(err.find("--threads 10000: this process may run on"), std::string::npos) << err;
  EXPECT_NE(err.find("so it uses"), std::string::npos) << err;
  EXPECT_EQ(air(with({"--dtype", "fp16"}), &err), 2);
  EXPECT_NE(err.find("not supported on the CPU"), std::string::npos) << err;
  EXPECT_EQ(air(with({"--max-memory", "1K"}), &err), 2);
  EXPECT_NE(err.find("memory limit"), std::string::npos) << err;
  EXPECT_EQ(air(with({"--max-memory", "lots"}), &err), 2);
  EXPECT_EQ(air(with({"--max-memory", "16g"})), 0);
  EXPECT_EQ(air({"probe", "--model", M, "--data", c.string(), "--out", (tmp_ / "h.json").string(), "--num-items",
                 "100000000"},
                &err),
            2);
  EXPECT_NE(err.find("memory limit"), std::string::npos) << err;
}

// The memory limit per batch: a record estimated above it gets its own error, the rest score.
TEST_F(ReliabilityTest, ARecordOverTheMemoryLimitIsAnErrorLineOfItsOwn) {
  const LoadedModel m = load_model(model_dir("stories260K").string(), RuntimeOptions{});
  std::vector<Sample> samples(3);
  for (int i = 0; i < 3; ++i) {
    samples[i].ids.assign(i == 1 ? 300 : 20, 5);
    samples[i].prompt_tokens = 4;
    samples[i].steps = {{0, 1, 0, samples[i].response_tokens()}};
  }
  ScoreOptions so;
  so.max_memory = scoring_memory(m.model->config, {40});
  ASSERT_LT(so.max_memory, scoring_memory(m.model->config, {300}));
  const Scorer scorer(m.model, HeadSet::parse("0:0"), so);
  const auto r = scorer.score({&samples[0], &samples[1], &samples[2]});
  EXPECT_TRUE(r[0].error.empty());
  EXPECT_NE(r[1].error.find("memory limit"), std::string::npos) << r[1].error;
  EXPECT_TRUE(r[2].error.empty());
}

// 5. Broken numbers are never a success: non-finite weights are found at load; a run in which
// every record failed, and a select with nothing to select, are errors.
TEST_F(ReliabilityTest, BrokenNumbersAreErrorsNotSuccess) {
  const fs::path m = stories_copy();
  auto tensors = read_raw_tensors(m / "model.safetensors");
  for (auto& t : tensors)
    if (t.name == "model.layers.2.mlp.up_proj.weight") {
      const float nan = std::numeric_limits<float>::quiet_NaN();
      std::memcpy(t.bytes.data() + 4 * 17, &nan, 4);
    }
  write_safetensors(m / "model.safetensors", tensors);
  std::string err;
  EXPECT_EQ(air({"inspect", "--model", m.string()}, &err), 4);
  EXPECT_NE(err.find("model.layers.2.mlp.up_proj.weight"), std::string::npos) << err;
  EXPECT_NE(err.find("index 17"), std::string::npos) << err;
  EXPECT_EQ(air([&] {
              auto a = score_args(corpus(3), tmp_ / "nan.jsonl");
              a[2] = m.string();  // --model
              return a;
            }()),
            4);

  // Every record rejected (a typo in the field name): exit 3, and select on it exits 3 too.
  const fs::path c = corpus(4);
  const fs::path s = tmp_ / "s.jsonl";
  auto args = score_args(c, s);
  args.insert(args.end(), {"--response-field", "respnse", "--probe-text", c.string()});
  EXPECT_EQ(air(args, &err), 3);
  EXPECT_NE(err.find("none of its 4 records was scored"), std::string::npos) << err;
  EXPECT_EQ(air({"select", "--data", c.string(), "--scores", s.string(), "--top-k", "2", "--out",
                 (tmp_ / "sel.jsonl").string()}),
            3);
  EXPECT_FALSE(fs::exists(tmp_ / "sel.jsonl"));

  // Losses that overflow in fp32 are an error line that does not suggest fp32.
  const LoadedModel lm = load_model(model_dir("stories260K").string(), RuntimeOptions{});
  for (auto& p : lm.model->named_parameters())
    if (p.key() == "model.norm.weight") p.value().data().fill_(1e38);
  Sample smp;
  smp.ids = {1, 30, 40, 50, 60, 70};
  smp.prompt_tokens = 2;
  smp.steps = {{0, 1, 0, 4}};
  const auto r = Scorer(lm.model, HeadSet::parse("0:0"), ScoreOptions{}).score({&smp});
  EXPECT_NE(r[0].error.find("non-finite"), std::string::npos) << r[0].error;
  EXPECT_EQ(r[0].error.find("fp32 avoids"), std::string::npos) << r[0].error;
}

// 6. A token id past the model's embedding: the tokenizer is refused at load (exit 4), and inside
// the scorer a record that fails is an error of its own, the others scored as if alone.
TEST_F(ReliabilityTest, OneRecordCannotBlockTheCorpus) {
  const fs::path m = stories_copy();
  write_text(m / "tokenizer.json",
             R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 600}, "merges": ["a b"]}})");
  auto args = score_args(corpus(3), tmp_ / "s.jsonl");
  args[2] = m.string();  // --model
  std::string err;
  EXPECT_EQ(air(args, &err), 4);
  EXPECT_NE(err.find("600"), std::string::npos) << err;
  EXPECT_NE(err.find("512 rows"), std::string::npos) << err;

  const LoadedModel lm = load_model(model_dir("stories260K").string(), RuntimeOptions{});
  std::vector<Sample> s(3);
  for (int i = 0; i < 3; ++i) {
    s[i].ids = {1, 30 + i, 40, 50, 60, 70};
    s[i].prompt_tokens = 2;
    s[i].steps = {{0, 1, 0, 4}};
  }
  s[1].ids[3] = 600;  // outside the 512-row embedding
  const Scorer scorer(lm.model, HeadSet::parse("0:0,1:1"), ScoreOptions{});
  const auto together = scorer.score({&s[0], &s[1], &s[2]});
  EXPECT_NE(together[1].error.find("scoring failed"), std::string::npos) << together[1].error;
  for (int i : {0, 2}) {
    ASSERT_TRUE(together[i].error.empty()) << together[i].error;
    EXPECT_NEAR(together[i].influence.score, scorer.score({&s[i]})[0].influence.score, 1e-5);
  }
}

// 7. `air select` takes `air score`'s output whatever was rejected: both give every record,
// rejected ones included, the same id.
TEST_F(ReliabilityTest, SelectAgreesWithScoreOnTheIdsOfRejectedRecords) {
  const auto good = lines_of(stories());
  write_text(tmp_ / "c.jsonl", good[0] + "\n{\"id\": \"no-response\", \"prompt\": \"hi\"}\n" + good[1] + "\n" +
                                   "{\"id\": 7, \"prompt\": \"x\", \"response\": \"\"}\n" + good[2] + "\n");
  const fs::path s = tmp_ / "s.jsonl";
  ASSERT_EQ(air(score_args(tmp_ / "c.jsonl", s)), 0);
  const auto lines = lines_of(s);
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(nlohmann::json::parse(lines[1])["id"], "no-response");
  EXPECT_EQ(nlohmann::json::parse(lines[3])["id"], "7");
  EXPECT_EQ(record_id("{\"id\": \"no-response\"", 2, "id"), "2");  // not JSON: the line number
  std::string err;
  EXPECT_EQ(air({"select", "--data", (tmp_ / "c.jsonl").string(), "--scores", s.string(), "--top-k", "2", "--out",
                 (tmp_ / "sel.jsonl").string()},
                &err),
            0)
      << err;
  EXPECT_EQ(lines_of(tmp_ / "sel.jsonl").size(), 2u);
}

// 8. Token ids in tokenizer files: huge, negative, fractional, wrapping or no vocabulary at all
// are a clear CheckpointError, never a crash or a giant allocation.
TEST_F(ReliabilityTest, TokenizerIdsAreValidated) {
  const fs::path p = tmp_ / "tokenizer.json";
  auto with_vocab = [&](const std::string& vocab, const std::string& added = "[]") {
    write_text(p, R"({"added_tokens": )" + added + R"(, "model": {"type": "BPE", "vocab": )" + vocab +
                      R"(, "merges": []}})");
  };
  for (const std::string v : {R"({"a": 0, "b": 2147483648})", R"({"a": 0, "b": 1000000000000})", R"({"a": -1})",
                              R"({"a": 0, "b": 1.5})", R"({"a": 0, "b": 4294967297})", R"({"a": "0"})", "{}"}) {
    with_vocab(v);
    EXPECT_THROW(load_tokenizer(p), CheckpointError) << v;
  }
  with_vocab(R"({"a": 0})", R"([{"id": 1000000000000, "content": "<x>"}])");
  EXPECT_THROW(load_tokenizer(p), CheckpointError);
  with_vocab(R"({"a": 0})", R"([{"id": -3, "content": "<x>"}])");
  EXPECT_THROW(load_tokenizer(p), CheckpointError);
  with_vocab(R"({"a": 0, "b": 1})", R"([{"id": 2, "content": "<x>"}])");
  EXPECT_EQ(load_tokenizer(p)->vocab_size(), 3);
}

// 9. Data on stdout, human text on stderr; sidecars of a stdout run only where named.
TEST_F(ReliabilityTest, StreamsKeepDataAndTextApart) {
  const fs::path c = corpus(6);
  const fs::path s = tmp_ / "s.jsonl";
  ASSERT_EQ(air(score_args(c, s)), 0);
  testing::internal::CaptureStdout();
  std::string err;
  EXPECT_EQ(air({"select", "--data", c.string(), "--scores", s.string(), "--top-k", "3", "--out", "-", "--show", "2"},
                &err),
            0);
  const std::string out = testing::internal::GetCapturedStdout();
  std::istringstream in(out);
  int n = 0;
  for (std::string l; std::getline(in, l); ++n) EXPECT_NO_THROW(nlohmann::json::parse(l)) << l;
  EXPECT_EQ(n, 3);
  EXPECT_NE(err.find("top 2"), std::string::npos) << err;
  EXPECT_EQ(air({"select", "--data", c.string(), "--scores", s.string(), "--top-k", "3", "--out", "-",
                 "--weights-out", "-"}),
            2);

  const fs::path cwd = fs::current_path();
  fs::create_directories(tmp_ / "wd");
  fs::current_path(tmp_ / "wd");
  testing::internal::CaptureStdout();
  auto args = score_args(c, "-");
  EXPECT_EQ(air(args), 0);
  const std::string scored = testing::internal::GetCapturedStdout();
  EXPECT_EQ(std::count(scored.begin(), scored.end(), '\n'), 6);
  testing::internal::CaptureStdout();
  EXPECT_EQ(air({"probe", "--model", model_dir("stories260K").string(), "--out", "-"}), 0);
  EXPECT_TRUE(nlohmann::json::parse(testing::internal::GetCapturedStdout()).contains("selected"));
  fs::current_path(cwd);
  EXPECT_TRUE(fs::is_empty(tmp_ / "wd")) << "a stdout run left files in the working directory";
}

// 10. The smaller findings.
TEST_F(ReliabilityTest, DuplicatedTensorKeysAreRefused) {
  write_raw_safetensors(tmp_ / "d.safetensors",
                        R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},)"
                        R"( "w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                        std::string(8, '\0'));
  try {
    SafetensorsFile::open(tmp_ / "d.safetensors");
    ADD_FAILURE() << "accepted";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("'w' is listed twice"), std::string::npos) << e.what();
  }
}

// Found by fuzzing: fields of the wrong type in heads and score files escaped as JSON library
// exceptions (exit 1, or an abort where nothing caught them).
TEST_F(ReliabilityTest, FieldsOfTheWrongTypeAreDataErrors) {
  for (const char* text : {R"({"selected": [[0, 1]], "model": {"fingerprint": 5}})",
                           R"({"selected": [[0, 18446744073709551615]]})", R"({"selected": [[0, 1]], "model": {"path": []}})"}) {
    write_text(tmp_ / "h.json", text);
    EXPECT_THROW(read_heads_file((tmp_ / "h.json").string()), DataError) << text;
  }
  std::uintmax_t whole = 0;
  for (const char* text : {R"({"id": "a", "line": 1, "error": "x", "rejected": "yes"})",
                           R"({"id": "a", "line": 1, "n_tokens": 3, "truncated": 1})"}) {
    write_text(tmp_ / "s.jsonl", std::string(text) + "\n" + text + "\n");
    EXPECT_THROW(read_score_lines((tmp_ / "s.jsonl").string(), &whole), DataError) << text;
  }
}

// A corpus line is read up to a cap: the rest of a longer one is skipped, not held in memory, and
// the line after it is read as usual (CRLF and a last line without a newline included).
TEST_F(ReliabilityTest, LongLinesAreCappedAndTheNextLineIsIntact) {
  write_text(tmp_ / "l.jsonl", "short\n" + std::string(1000, 'x') + "\nafter\r\nlast");
  LineReader in((tmp_ / "l.jsonl").string(), false, 100);
  std::string line;
  bool too_long = true;
  ASSERT_TRUE(in.next(line, &too_long));
  EXPECT_EQ(line, "short");
  EXPECT_FALSE(too_long);
  ASSERT_TRUE(in.next(line, &too_long));
  EXPECT_EQ(line, std::string(100, 'x'));
  EXPECT_TRUE(too_long);
  ASSERT_TRUE(in.next(line, &too_long));
  EXPECT_EQ(line, "after\r");
  EXPECT_FALSE(too_long);
  ASSERT_TRUE(in.next(line, &too_long));
  EXPECT_EQ(line, "last");
  EXPECT_EQ(in.line_number(), 4);
  EXPECT_FALSE(in.next(line, &too_long));
}

TEST_F(ReliabilityTest, AMissingOutputDirectoryIsFoundFirst) {
  std::string err;
  EXPECT_EQ(air(score_args(corpus(3), tmp_ / "nodir" / "s.jsonl"), &err), 5);
  EXPECT_NE(err.find("does not exist"), std::string::npos) << err;
  EXPECT_EQ(err.find("probe"), std::string::npos) << "the model ran first: " << err;
  EXPECT_EQ(air(score_args(tmp_, tmp_ / "s.jsonl"), &err), 3);
  EXPECT_NE(err.find("is a directory"), std::string::npos) << err;
}

TEST_F(ReliabilityTest, RejectsKeepTheRawBytes) {
  const std::string bad = "{\"id\": \"b\", \"prompt\": \"caf\xe9\", \"response\": \"x\xff\"}";
  write_text(tmp_ / "c.jsonl", lines_of(stories())[0] + "\n" + bad + "\n");
  const fs::path s = tmp_ / "s.jsonl";
  ASSERT_EQ(air(score_args(tmp_ / "c.jsonl", s)), 0);
  const auto rejects = lines_of(s.string() + ".rejects.jsonl");
  ASSERT_EQ(rejects.size(), 1u);
  const auto j = nlohmann::json::parse(rejects[0]);
  const std::string b64 = j.at("record_base64");
  // Decode and compare with the line as it was.
  std::string raw;
  int bits = 0, acc = 0;
  for (char ch : b64) {
    const size_t v = std::string("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/").find(ch);
    if (v == std::string::npos) break;
    acc = (acc << 6) | static_cast<int>(v);
    if ((bits += 6) >= 8) raw += static_cast<char>((acc >> (bits -= 8)) & 0xFF);
  }
  EXPECT_EQ(raw, bad);
}

TEST_F(ReliabilityTest, SilentFallbacksNowWarn) {
  const fs::path m = stories_copy();
  write_text(m / "tokenizer_config.json", R"({"chat_template": "{% for m in messages %}<<{{ m.content }}>>{% endfor %}"})");
  std::string err;
  EXPECT_EQ(air({"render", "--model", m.string(), "--data", corpus(2).string(), "--out",
                 (tmp_ / "r.jsonl").string()},
                &err),
            0);
  EXPECT_NE(err.find("matches no preset"), std::string::npos) << err;

  write_text(tmp_ / "h.json", R"({"selected": [[0, 1], [2, 3]]})");
  auto args = score_args(corpus(2), tmp_ / "s.jsonl");
  use_heads(args, (tmp_ / "h.json").string());
  EXPECT_EQ(air(args, &err), 0);
  EXPECT_NE(err.find("no model fingerprint"), std::string::npos) << err;
}

TEST_F(ReliabilityTest, AnnotateKeepsIdsVerbatim) {
  const auto all = lines_of(stories());
  std::string text;
  const char* ids[] = {"1e30", "12345678901234567890123", "1.50", "-0"};
  for (int i = 0; i < 4; ++i) {
    auto j = nlohmann::ordered_json::parse(all[i]);
    j.erase("id");
    text += "{\"id\": " + std::string(ids[i]) + ", " + j.dump().substr(1) + "\n";
  }
  write_text(tmp_ / "c.jsonl", text);
  const fs::path s = tmp_ / "s.jsonl";
  ASSERT_EQ(air(score_args(tmp_ / "c.jsonl", s)), 0);
  ASSERT_EQ(air({"select", "--data", (tmp_ / "c.jsonl").string(), "--scores", s.string(), "--top-k", "4", "--annotate",
                 "--out", (tmp_ / "a.jsonl").string()}),
            0);
  const auto out = lines_of(tmp_ / "a.jsonl");
  const auto in = lines_of(tmp_ / "c.jsonl");
  ASSERT_EQ(out.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(out[i].substr(0, in[i].size() - 1), in[i].substr(0, in[i].size() - 1)) << out[i];
    EXPECT_TRUE(nlohmann::json::parse(out[i]).contains("air_step_weights"));
  }
}

TEST_F(ReliabilityTest, ResumeRefusesARecordWhoseTextChanged) {
  const fs::path c = corpus(6);
  const fs::path s = tmp_ / "s.jsonl";
  ASSERT_EQ(air(score_args(c, s)), 0);
  auto lines = lines_of(c);
  const auto at = lines[2].find("ball");
  lines[2].replace(at == std::string::npos ? lines[2].size() - 3 : at, 1, "w");
  std::string text;
  for (const auto& l : lines) text += l + "\n";
  write_text(c, text);
  auto args = score_args(c, s);
  args.push_back("--resume");
  std::string err;
  EXPECT_EQ(air(args, &err), 3);
  EXPECT_NE(err.find("line 3"), std::string::npos) << err;
  EXPECT_NE(err.find("other text"), std::string::npos) << err;
}

// A full disk: exit 5 naming the file, nothing under the final name, and what was written is
// resumed elsewhere into the output an uninterrupted run gives. Needs root to mount a tmpfs.
class DiskFullTest : public ReliabilityTest {
 protected:
  void TearDown() override {
    if (mounted_) ::umount2(mount_.c_str(), MNT_DETACH);
    ReliabilityTest::TearDown();
  }
  fs::path mount_;
  bool mounted_ = false;
};

TEST_F(DiskFullTest, FullDiskIsExitFiveAndResumable) {
  if (::geteuid() != 0) GTEST_SKIP() << "mounting a small tmpfs needs root";
  mount_ = tmp_ / "full";
  fs::create_directories(mount_);
  if (::mount("tmpfs", mount_.c_str(), "tmpfs", 0, "size=48k") != 0)
    GTEST_SKIP() << "cannot mount a tmpfs here: " << std::strerror(errno);
  mounted_ = true;
  const fs::path c = corpus(40, 3);
  const fs::path heads = tmp_ / "heads.json";
  ASSERT_EQ(air({"probe", "--model", model_dir("stories260K").string(), "--data", c.string(), "--out",
                 heads.string(), "--num-heads", "2"}),
            0);
  auto run = [&](const fs::path& out, bool resume, std::string* err) {
    auto a = score_args(c, out);
    use_heads(a, heads.string());
    a.insert(a.end(), {"--window", "4", "--emit-token-scores"});
    if (resume) a.push_back("--resume");
    return air(a, err);
  };
  std::string err;
  const fs::path full = mount_ / "s.jsonl";
  EXPECT_EQ(run(full, false, &err), 5);
  EXPECT_NE(err.find(full.string() + ".partial"), std::string::npos) << err;
  EXPECT_NE(err.find("No space left"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(full));
  ASSERT_TRUE(fs::exists(full.string() + ".partial"));
  EXPECT_GT(fs::file_size(full.string() + ".partial"), 0u);

  // Moved to a disk with room, the same output resumes to what one whole run writes.
  fs::create_directories(tmp_ / "room");
  for (const char* ext : {".partial", ".partial.json"})
    fs::copy_file(full.string() + ext, (tmp_ / "room" / "s.jsonl").string() + ext);
  ASSERT_EQ(run(tmp_ / "room" / "s.jsonl", true, &err), 0) << err;
  ASSERT_EQ(run(tmp_ / "whole.jsonl", false, &err), 0) << err;
  const auto resumed = lines_of(tmp_ / "room" / "s.jsonl"), whole = lines_of(tmp_ / "whole.jsonl");
  ASSERT_EQ(resumed.size(), whole.size());
  for (size_t i = 0; i < whole.size(); ++i) {
    const auto a = nlohmann::json::parse(resumed[i]), b = nlohmann::json::parse(whole[i]);
    EXPECT_EQ(a["id"], b["id"]);
    EXPECT_NEAR(a["air_score"].get<double>(), b["air_score"].get<double>(), 1e-5);
  }
}

// The shared libraries loaded in this process, by path.
std::vector<std::string> loaded_libraries() {
  std::vector<std::string> loaded;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* out) {
        static_cast<std::vector<std::string>*>(out)->push_back(info->dlpi_name ? info->dlpi_name : "");
        return 0;
      },
      &loaded);
  return loaded;
}

// The BLAS Debian's libtorch calls is Debian's OpenMP OpenBLAS, found through the program's RPATH
// whatever the system's libblas.so.3 alternative selects (the pthreads build spins against torch's
// threads). A PyTorch wheel's libtorch brings its own BLAS (MKL, linked in): no system BLAS loads.
TEST(BlasTest, TheProgramsLoadOpenMpOpenBlas) {
  int blas = 0;
#ifdef AIR_DEBIAN_TORCH
  if (!fs::exists(fs::path(AIR_OPENBLAS_DIR) / "libblas.so.3"))
    GTEST_SKIP() << AIR_OPENBLAS_DIR << " is absent (Debian's libopenblas0-openmp is not installed)";
  for (const auto& name : loaded_libraries())
    if (fs::path(name).filename() == "libblas.so.3") {
      ++blas;
      EXPECT_EQ(fs::path(name).parent_path(), fs::path(AIR_OPENBLAS_DIR)) << name;
    }
  EXPECT_EQ(blas, 1);
#else
  for (const auto& name : loaded_libraries()) blas += fs::path(name).filename() == "libblas.so.3";
  EXPECT_EQ(blas, 0);
  EXPECT_EQ(build_info().blas, "mkl");
#endif
}

}  // namespace
}  // namespace air::test
