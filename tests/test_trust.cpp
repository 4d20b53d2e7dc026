// Outputs users train on and join back: hostile nesting, configs and paths that once crashed or
// hung a command; each case runs the command line as a user would.

#include "air/error.h"
#include "air/line_reader.h"
#include "air/output.h"
#include "air/runtime.h"
#include "air/tokenizer.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <array>
#include <fstream>
#include <numeric>
#include <sstream>

namespace air::test {
namespace {

std::vector<std::string> lines_of(const fs::path& p) {
  std::vector<std::string> out;
  std::ifstream in(p, std::ios::binary);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

std::string nested(size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

class TrustTest : public TempDirTest {
 protected:
  std::string model() const { return model_dir("stories260K").string(); }
};

// Records nested 100,000 deep (in the id, in a field no one reads, in a tool call's arguments) are
// rejected with the limit named; every command goes on with the other records.
TEST_F(TrustTest, DeepRecordsAreRejectedAndTheRunGoesOn) {
  const std::string deep = nested(100000);
  std::string text;
  text += R"({"id": "a", "prompt": "What is 2 + 2?", "response": "Two and two.\n\nIt is 4."})" "\n";
  text += R"({"id": "b", "extra": )" + deep + R"(, "prompt": "Hi", "response": "Hello there."})" "\n";
  text += R"({"id": )" + deep + R"(, "prompt": "Hi", "response": "Hello."})" "\n";
  text += R"({"id": "c", "prompt": "What is 3 + 3?", "response": "Three and three.\n\nIt is 6."})" "\n";
  text += R"({"id": "d", "prompt": "What is 4 + 4?", "response": "Four and four.\n\nIt is 8."})" "\n";
  write_text(tmp_ / "c.jsonl", text);
  const std::string c = (tmp_ / "c.jsonl").string(), s = (tmp_ / "s.jsonl").string();
  std::string err;
  ASSERT_EQ(run_air({"probe", "--model", model(), "--data", c, "--out", (tmp_ / "h.json").string(), "--num-heads", "2",
                     "--threads", "1"},
                    &err),
            0)
      << err;
  ASSERT_EQ(run_air({"score", "--model", model(), "--data", c, "--heads", (tmp_ / "h.json").string(), "--out", s,
                     "--threads", "1"},
                    &err),
            0)
      << err;
  const auto scores = lines_of(s);
  ASSERT_EQ(scores.size(), 5u);
  for (int i : {1, 2}) {
    const auto j = nlohmann::json::parse(scores[i]);
    EXPECT_TRUE(j.value("rejected", false)) << scores[i];
    EXPECT_NE(j["error"].get<std::string>().find("nested deeper than 512"), std::string::npos) << scores[i];
  }
  for (int i : {0, 3, 4}) EXPECT_TRUE(nlohmann::json::parse(scores[i]).contains("air_score")) << scores[i];
  ASSERT_EQ(run_air({"render", "--model", model(), "--data", c, "--out", (tmp_ / "r.jsonl").string()}, &err), 0) << err;
  EXPECT_EQ(lines_of(tmp_ / "r.jsonl").size(), 3u);
  ASSERT_EQ(run_air({"select", "--data", c, "--scores", s, "--top-k", "2", "--annotate", "--out",
                     (tmp_ / "sel.jsonl").string()},
                    &err),
            0)
      << err;
  EXPECT_EQ(lines_of(tmp_ / "sel.jsonl").size(), 2u);
  ASSERT_EQ(run_air({"weights", "--data", c, "--scores", s, "--tokenizer", model(), "--out", (tmp_ / "w.jsonl").string()},
                    &err),
            0)
      << err;
  EXPECT_EQ(lines_of(tmp_ / "w.jsonl").size(), 3u);

  // A tool call whose arguments string nests that deep.
  nlohmann::json call{{"messages",
                       {{{"role", "user"}, {"content", "Call f."}},
                        {{"role", "assistant"},
                         {"content", ""},
                         {"tool_calls", {{{"type", "function"}, {"function", {{"name", "f"}, {"arguments", deep}}}}}}}}}};
  nlohmann::json ok = call;
  ok["messages"][1]["tool_calls"][0]["function"]["arguments"] = "{\"x\": 1}";
  write_text(tmp_ / "t.jsonl", ok.dump() + "\n" + call.dump() + "\n" + ok.dump() + "\n");
  ASSERT_EQ(run_air({"render", "--model", model(), "--data", (tmp_ / "t.jsonl").string(), "--template", "chatml", "--out",
                     (tmp_ / "t.r.jsonl").string()},
                    &err),
            0)
      << err;
  EXPECT_EQ(lines_of(tmp_ / "t.r.jsonl").size(), 2u);
  EXPECT_NE(read_text(tmp_ / "t.r.jsonl.rejects.jsonl").find("nested deeper"), std::string::npos);
}

// A --config whose table header is 100,000 keys deep, or that never ends, is refused with exit 2.
TEST_F(TrustTest, DeepOrEndlessConfigIsRefused) {
  std::string header = "[score";
  for (int i = 0; i < 100000; ++i) header += ".a";
  write_text(tmp_ / "deep.toml", header + "]\nx = 1\n");
  std::string err;
  const std::vector<std::string> render{"render", "--model", model(), "--data", (tmp_ / "none.jsonl").string(),
                                        "--out", (tmp_ / "r.jsonl").string()};
  auto with = [&](const std::string& config) {
    std::vector<std::string> a{"--config", config};
    a.insert(a.end(), render.begin(), render.end());
    return a;
  };
  EXPECT_EQ(run_air(with((tmp_ / "deep.toml").string()), &err), 2);
  EXPECT_NE(err.find("line 1: keys or values nested deeper than 16"), std::string::npos) << err.substr(0, 400);
  EXPECT_LT(err.size(), 2000u);
  write_text(tmp_ / "arrays.toml", "[score]\nx = " + nested(100000) + "\n");
  EXPECT_EQ(run_air(with((tmp_ / "arrays.toml").string()), &err), 2);
  EXPECT_NE(err.find("line 2: keys or values nested deeper"), std::string::npos) << err.substr(0, 400);
  EXPECT_EQ(run_air(with("/dev/zero"), &err), 2);
  EXPECT_NE(err.find("larger than 1 MiB"), std::string::npos) << err;
  // What air writes itself reads back: dotted numbers and quoted dots are not nesting.
  write_text(tmp_ / "fine.toml", "[score]\nmax-memory = \"1.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19G\" # a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r\n"
                                 "delta = 0.05\n");
  EXPECT_EQ(run_air(with((tmp_ / "fine.toml").string()), &err), 2);
  EXPECT_EQ(err.find("nested deeper"), std::string::npos) << err;
}

// A config file's relative paths are relative to its folder, wherever air runs from; a preset's
// name stays a name; an error says which config the settings came from.
TEST_F(TrustTest, ConfigPathsAreRelativeToTheConfigFile) {
  const fs::path cfg = tmp_ / "cfg";
  fs::create_directories(cfg / "in");
  write_text(cfg / "in" / "d.jsonl", R"({"id": "a", "prompt": "What is 2 + 2?", "response": "It is 4."})" "\n");
  write_text(cfg / "t.json", R"({"user": {"prefix": "U: ", "suffix": "\n"}, "assistant": {"prefix": "A: ", "suffix": "\n"}})");
  write_text(cfg / "air.toml", "[render]\nmodel = \"" + model() +
                                   "\"\ndata = \"in/d.jsonl\"\nout = \"r.jsonl\"\ntemplate = \"t.json\"\n");
  std::string err;
  ASSERT_EQ(run_air({"--config", (cfg / "air.toml").string(), "render"}, &err), 0) << err;
  const auto rendered = lines_of(cfg / "r.jsonl");
  ASSERT_EQ(rendered.size(), 1u);
  EXPECT_NE(rendered[0].find("U: What is 2 + 2?"), std::string::npos) << rendered[0];
  EXPECT_FALSE(fs::exists("r.jsonl"));
  // A preset keeps its name although cfg/chatml does not exist.
  write_text(cfg / "preset.toml", "[render]\nmodel = \"" + model() +
                                      "\"\ndata = \"in/d.jsonl\"\nout = \"p.jsonl\"\ntemplate = \"chatml\"\n");
  ASSERT_EQ(run_air({"--config", (cfg / "preset.toml").string(), "render"}, &err), 0) << err;
  EXPECT_NE(read_text(cfg / "p.jsonl").find("<|im_start|>user"), std::string::npos);
  // A file that is not there is named as the config makes it, and so is the config.
  write_text(cfg / "bad.toml", "[render]\nmodel = \"" + model() + "\"\ndata = \"in/none.jsonl\"\nout = \"b.jsonl\"\n");
  EXPECT_NE(run_air({"--config", (cfg / "bad.toml").string(), "render"}, &err), 0);
  EXPECT_NE(err.find((cfg / "in/none.jsonl").string()), std::string::npos) << err;
  EXPECT_NE(err.find("settings were read from --config " + (cfg / "bad.toml").string()), std::string::npos) << err;
  // A config that is missing or a folder is a usage error, not a crash.
  EXPECT_EQ(run_air({"--config", (cfg / "none.toml").string(), "render"}, &err), 2);
  EXPECT_NE(err.find("does not exist"), std::string::npos) << err;
  EXPECT_EQ(run_air({"--config", cfg.string(), "render"}, &err), 2);
  // The config is an input: an output named as it is refused, the file kept.
  const std::string self = "[render]\nmodel = \"" + model() + "\"\ndata = \"in/d.jsonl\"\nout = \"self.toml\"\n";
  write_text(cfg / "self.toml", self);
  EXPECT_EQ(run_air({"--config", (cfg / "self.toml").string(), "render"}, &err), 2);
  EXPECT_NE(err.find("is the --config file"), std::string::npos) << err;
  EXPECT_EQ(read_text(cfg / "self.toml"), self);
}

// `air weights` maps the step weights onto the reasoning and the answer themselves: a student
// template that wraps the reasoning otherwise gets each text's weights, and scores without their
// meta are read in the template their step ranges fit, or the record is left out saying why.
TEST_F(TrustTest, StepWeightsFollowTheReasoningAndTheAnswer) {
  const std::vector<std::array<std::string, 3>> recs = {
      {"Tom has 3 apples and buys 2 more. How many?", "Tom starts with 3.\n\nHe buys 2 more.\n\n3 + 2 = 5.",
       "He has 5 apples."},
      {"A box holds 4 rows of 6 eggs. How many eggs?", "Each row has 6.\n\nThere are 4 rows.\n\n4 x 6 = 24.",
       "There are 24 eggs."},
      {"Lily reads 10 pages a day for 3 days. Pages?", "A day is 10 pages.\n\nThree days.\n\n10 x 3 = 30.",
       "She reads 30 pages."}};
  std::string corpus;
  for (size_t i = 0; i < recs.size(); ++i)
    corpus += nlohmann::json{{"id", "r" + std::to_string(i)},
                             {"messages", {{{"role", "user"}, {"content", recs[i][0]}},
                                           {{"role", "assistant"}, {"content", recs[i][2]}, {"reasoning_content", recs[i][1]}}}}}
                  .dump() +
              "\n";
  write_text(tmp_ / "c.jsonl", corpus);
  const std::string c = (tmp_ / "c.jsonl").string(), s = (tmp_ / "s.jsonl").string();
  std::string err;
  ASSERT_EQ(run_air({"score", "--model", model(), "--data", c, "--template", "chatml", "--out", s, "--threads", "1",
                     "--num-heads", "2"},
                    &err),
            0)
      << err;
  const auto scores = lines_of(s);
  ASSERT_EQ(scores.size(), recs.size());
  // With the meta: the student's plain template writes reasoning, "\n\n", answer.
  const std::vector<std::string> weights{"weights", "--data", c, "--scores", s, "--tokenizer", model(), "--template",
                                         "plain"};
  auto with_out = [&](const std::string& out) {
    std::vector<std::string> a = weights;
    a.insert(a.end(), {"--out", out});
    return a;
  };
  ASSERT_EQ(run_air(with_out((tmp_ / "w.jsonl").string()), &err), 0) << err;
  const auto student = lines_of(tmp_ / "w.jsonl");
  ASSERT_EQ(student.size(), recs.size()) << err;
  const auto tok = load_tokenizer(model());
  for (size_t i = 0; i < recs.size(); ++i) {
    const std::string &q = recs[i][0], &reasoning = recs[i][1], &answer = recs[i][2];
    const nlohmann::json sc = nlohmann::json::parse(scores[i]), st = nlohmann::json::parse(student[i]);
    // Scored as chatml: "<think>\n" reasoning "\n</think>\n\n" answer; the student's plain:
    // prompt "\n\n" reasoning "\n\n" answer.
    const size_t rb = q.size() + 2, reasoning_at = 8, answer_at = 8 + reasoning.size() + 11;
    std::vector<double> byte_weight(answer_at + answer.size(), -1);
    for (const auto& step : sc["steps"])
      for (size_t b = step["begin"]; b < step["end"].get<size_t>(); ++b) byte_weight[b] = step["weight"];
    auto scored_byte = [&](size_t y) -> int64_t {  // y: a byte of the student's response
      if (y < reasoning.size()) return static_cast<int64_t>(reasoning_at + y);
      if (y >= reasoning.size() + 2) return static_cast<int64_t>(answer_at + y - reasoning.size() - 2);
      return -1;
    };
    const std::string text = q + "\n\n" + reasoning + "\n\n" + answer;
    const Encoding enc = tok->encode(text, true);
    ASSERT_EQ(st["input_ids"].get<std::vector<int64_t>>(), enc.ids) << i;
    std::vector<double> raw;
    std::vector<size_t> resp;
    for (size_t k = 1; k < enc.ids.size(); ++k) {
      const auto [b, e] = enc.offsets[k];
      if (e <= rb) continue;
      double sum = 0, n = 0;
      for (size_t y = std::max(b, rb); y < e; ++y) {
        const int64_t x = scored_byte(y - rb);
        if (x >= 0 && byte_weight[x] >= 0) sum += byte_weight[x], ++n;
      }
      raw.push_back(n > 0 ? sum / n : 1.0);
      resp.push_back(k);
    }
    const double scale = static_cast<double>(raw.size()) / std::accumulate(raw.begin(), raw.end(), 0.0);
    const auto w = st["loss_weights"].get<std::vector<double>>();
    for (size_t j = 0; j < resp.size(); ++j) EXPECT_NEAR(w[resp[j]], raw[j] * scale, 2e-5) << i << " token " << resp[j];
    EXPECT_EQ(w[0], 0.0);
  }
  // Without the meta: the steps fit the reasoning-marker presets' rendering, which is read.
  fs::rename(s + ".meta.json", tmp_ / "meta.json");
  ASSERT_EQ(run_air(with_out((tmp_ / "w2.jsonl").string()), &err), 0) << err;
  EXPECT_EQ(read_text(tmp_ / "w2.jsonl"), read_text(tmp_ / "w.jsonl"));
  EXPECT_NE(err.find("has no meta naming its template"), std::string::npos) << err;
  // Scored with a template whose layout no preset has: left out, saying why.
  fs::rename(tmp_ / "meta.json", s + ".meta.json");
  write_text(tmp_ / "t.json", R"({"user": {"prefix": "Q: ", "suffix": "\n"}, "assistant": {"prefix": "A: ", "suffix": "\n"},
    "reasoning": {"prefix": "[thinking] ", "suffix": " [/thinking]\n"}})");
  const std::string s2 = (tmp_ / "s2.jsonl").string();
  ASSERT_EQ(run_air({"score", "--model", model(), "--data", c, "--template", (tmp_ / "t.json").string(), "--out", s2,
                     "--threads", "1", "--num-heads", "2"},
                    &err),
            0)
      << err;
  fs::remove(s2 + ".meta.json");
  std::vector<std::string> a{"weights", "--data", c, "--scores", s2, "--tokenizer", model(), "--template", "plain",
                             "--out", (tmp_ / "w3.jsonl").string()};
  EXPECT_NE(run_air(a, &err), 0);
  EXPECT_NE(err.find("no preset renders it so: give the scores' meta"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(tmp_ / "w3.jsonl"));
}

// File names that are not UTF-8 are written into JSON outputs with the odd bytes escaped, and
// every command that writes them ends well.
TEST_F(TrustTest, PathsThatAreNotUtf8) {
  EXPECT_EQ(escape_invalid_utf8("caf\xC3\xA9\\x.jsonl"), "caf\xC3\xA9\\x.jsonl");  // valid: as it is
  EXPECT_EQ(escape_invalid_utf8("a\\b\xFF\xC3\xA9\xED\xA0\x80"), "a\\\\b\\xFF\xC3\xA9\\xED\\xA0\\x80");
  const std::string dir = (tmp_ / "d\xFE").string();
  fs::create_directories(dir);
  const std::string c = dir + "/c\xFF.jsonl", h = dir + "/h.json", s = dir + "/s\x80.jsonl";
  fs::copy_file(fs::path(AIR_MODELS_DIR) / ".." / "data" / "stories-sample.jsonl", c);
  std::string err;
  ASSERT_EQ(run_air({"probe", "--model", model(), "--data", c, "--out", h, "--num-heads", "2", "--threads", "1"}, &err), 0) << err;
  ASSERT_EQ(run_air({"score", "--model", model(), "--data", c, "--heads", h, "--out", s, "--threads", "1", "--flush-every",
                     "0.01"},
                    &err),
            0)
      << err;
  const nlohmann::json meta = read_json(s + ".meta.json");
  EXPECT_EQ(meta["data"], escape_invalid_utf8(c));
  EXPECT_NE(meta["data"].get<std::string>().find("\\xFF"), std::string::npos);
  ASSERT_EQ(run_air({"compare", s, s, "--out", dir + "/cmp.json"}, &err), 0) << err;
  EXPECT_EQ(read_json(dir + "/cmp.json")["a"][0], escape_invalid_utf8(s));
}

// Every file an output may create (its scratch file, lock, sidecars and their scratch files) is
// compared with every input, tokenizer and template files included: nothing given is written over.
TEST_F(TrustTest, ScratchFilesAndTemplatesAreInputsToKeep) {
  const std::string corpus_text = read_text(fs::path(AIR_MODELS_DIR) / ".." / "data" / "stories-sample.jsonl");
  const std::string d = tmp_.string();
  std::string err;
  auto kept = [&](const std::vector<std::string>& args, const std::string& input) {
    const std::string before = read_text(input);
    EXPECT_EQ(run_air(args, &err), 2) << args[0] << " " << input;
    EXPECT_NE(err.find("would destroy that input"), std::string::npos) << err;
    EXPECT_TRUE(fs::exists(input)) << input;
    if (fs::exists(input)) EXPECT_EQ(read_text(input), before) << input;
  };
  write_text(d + "/sel.jsonl.tmp", corpus_text);
  write_text(d + "/s.jsonl", "{\"id\": \"1\", \"line\": 1, \"air_score\": 0.5}\n");
  kept({"select", "--data", d + "/sel.jsonl.tmp", "--scores", d + "/s.jsonl", "--top-k", "1", "--out", d + "/sel.jsonl"},
       d + "/sel.jsonl.tmp");
  write_text(d + "/t.jsonl.meta.json.tmp", corpus_text);
  kept({"score", "--model", model(), "--data", d + "/t.jsonl.meta.json.tmp", "--out", d + "/t.jsonl", "--num-heads", "2"},
       d + "/t.jsonl.meta.json.tmp");
  write_text(d + "/u.jsonl.partial.json.tmp", corpus_text);
  kept({"score", "--model", model(), "--data", d + "/u.jsonl.partial.json.tmp", "--out", d + "/u.jsonl", "--num-heads", "2"},
       d + "/u.jsonl.partial.json.tmp");
  write_text(d + "/v.jsonl.rejects.jsonl.tmp", corpus_text);
  kept({"render", "--model", model(), "--data", d + "/v.jsonl.rejects.jsonl.tmp", "--out", d + "/v.jsonl"},
       d + "/v.jsonl.rejects.jsonl.tmp");
  // A student's tokenizer folder and chat template files.
  const fs::path student = tmp_ / "student";
  fs::create_directories(student);
  for (const auto& e : fs::directory_iterator(model_dir("stories260K"))) fs::copy_file(e.path(), student / e.path().filename());
  write_text(d + "/c.jsonl", corpus_text);
  kept({"weights", "--data", d + "/c.jsonl", "--scores", d + "/s.jsonl", "--tokenizer", student.string(), "--out",
        (student / "tokenizer_config.json").string()},
       (student / "tokenizer_config.json").string());
  write_text(d + "/t.json", R"({"name": "mine", "user": {"prefix": "U: ", "suffix": "\n"}, "assistant": {"prefix": "A: ", "suffix": "\n"}})");
  kept({"render", "--model", model(), "--data", d + "/c.jsonl", "--template", d + "/t.json", "--out", d + "/t.json"},
       d + "/t.json");
  kept({"weights", "--data", d + "/c.jsonl", "--scores", d + "/s.jsonl", "--tokenizer", model(), "--template",
        d + "/t.json", "--out", d + "/t.json"},
       d + "/t.json");
  kept({"probe", "--model", model(), "--data", d + "/c.jsonl", "--template", d + "/t.json", "--out", d + "/t.json"},
       d + "/t.json");
}

// A link at OUT.partial.json is replaced like those at OUT.partial and OUT.tmp, never written
// through; outputs through /proc/self/cwd or on /dev/shm are files, with a lock and a scratch file.
TEST_F(TrustTest, ScratchLinksAndKernelPaths) {
  write_text(tmp_ / "victim.txt", "keep me\n");
  fs::create_symlink(tmp_ / "victim.txt", tmp_ / "s.jsonl.partial.json");
  const std::string c = (fs::path(AIR_MODELS_DIR) / ".." / "data" / "stories-sample.jsonl").string();
  std::string err;
  ASSERT_EQ(run_air({"score", "--model", model(), "--data", c, "--out", (tmp_ / "s.jsonl").string(), "--num-heads", "2",
                     "--threads", "1"},
                    &err),
            0)
      << err;
  EXPECT_EQ(read_text(tmp_ / "victim.txt"), "keep me\n");

  EXPECT_TRUE(is_stream_output("-"));
  EXPECT_TRUE(is_stream_output("/dev/stdout"));
  EXPECT_TRUE(is_stream_output("/dev/null"));
  EXPECT_TRUE(is_stream_output("/proc/self/fd/1"));
  EXPECT_TRUE(is_stream_output("/dev/fd/2"));
  const std::string via_proc = "/proc/self/cwd/" + fs::relative(tmp_ / "x.jsonl", fs::current_path()).string();
  EXPECT_FALSE(is_stream_output(via_proc)) << via_proc;
  write_text(tmp_ / "y.jsonl", "old\n");
  EXPECT_FALSE(is_stream_output("/proc/self/cwd/" + fs::relative(tmp_ / "y.jsonl", fs::current_path()).string()));
  if (fs::is_directory("/dev/shm")) EXPECT_FALSE(is_stream_output("/dev/shm/air-trust-test.jsonl"));
  // So a second run on such a path meets the first one's lock.
  const OutputLock first = OutputLock::for_output(via_proc);
  EXPECT_TRUE(first.held());
  EXPECT_THROW(OutputLock::for_output((tmp_ / "x.jsonl").string()), IoError);
}

// `select` holds its output's lock from the start: a second select on the same --out is refused
// while the first runs, not both told success.
TEST_F(TrustTest, ASecondSelectOnTheSameOutputIsRefused) {
  const std::string c = (fs::path(AIR_MODELS_DIR) / ".." / "data" / "stories-sample.jsonl").string();
  const std::string s = (tmp_ / "s.jsonl").string(), out = (tmp_ / "sel.jsonl").string();
  std::string err;
  ASSERT_EQ(run_air({"score", "--model", model(), "--data", c, "--out", s, "--num-heads", "2", "--threads", "1"}, &err), 0) << err;
  const OutputLock other = OutputLock::for_output(out);  // as another run would hold it
  EXPECT_EQ(run_air({"select", "--data", c, "--scores", s, "--top-k", "3", "--out", out}, &err), 5);
  EXPECT_NE(err.find("another run"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(out));
}

// A config that leaves weights of its layers unused (a Qwen2-MoE shared expert with
// shared_expert_intermediate_size 0) describes another model: refused naming the field, exit 4.
TEST_F(TrustTest, WeightsTheConfigLeavesUnusedAreRefused) {
  const fs::path dir = tmp_ / "moe";
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(fixture_dir("qwen2-moe"))) fs::copy_file(e.path(), dir / e.path().filename());
  nlohmann::json c = read_json(dir / "config.json");
  c["shared_expert_intermediate_size"] = 0;
  write_text(dir / "config.json", c.dump());
  write_text(tmp_ / "c.jsonl", R"({"prompt": "a b c", "response": "d e f g h"})" "\n");
  std::string err;
  EXPECT_EQ(run_air({"score", "--model", dir.string(), "--data", (tmp_ / "c.jsonl").string(), "--num-heads", "1", "--out",
                     (tmp_ / "s.jsonl").string()},
                    &err),
            4);
  EXPECT_NE(err.find("shared_expert_intermediate_size (0)"), std::string::npos) << err;
  EXPECT_NE(err.find("shared_expert"), std::string::npos) << err;
}

// select says what it selects when --top-k is past the corpus or --top-ratio below one record,
// and points two complete runs of the same records to `air compare`.
TEST_F(TrustTest, SelectSaysWhatItSelects) {
  const std::string c = (fs::path(AIR_MODELS_DIR) / ".." / "data" / "stories-sample.jsonl").string();
  const std::string s = (tmp_ / "s.jsonl").string(), out = (tmp_ / "sel.jsonl").string();
  std::string err;
  ASSERT_EQ(run_air({"score", "--model", model(), "--data", c, "--out", s, "--num-heads", "2", "--threads", "1"}, &err), 0) << err;
  const size_t n = lines_of(c).size();
  ASSERT_EQ(run_air({"select", "--data", c, "--scores", s, "--top-k", "100000", "--out", out}, &err), 0) << err;
  EXPECT_NE(err.find("--top-k 100000 is more than the " + std::to_string(n) + " candidate records: all"), std::string::npos) << err;
  EXPECT_EQ(lines_of(out).size(), n);
  ASSERT_EQ(run_air({"select", "--data", c, "--scores", s, "--top-ratio", "1e-9", "--out", out}, &err), 0) << err;
  EXPECT_NE(err.find("less than one record: the best one is selected"), std::string::npos) << err;
  EXPECT_EQ(lines_of(out).size(), 1u);
  // The corpus written again (keys reordered, other spacing): matched by id on request.
  std::string again;
  for (const auto& l : lines_of(c)) again += nlohmann::json::parse(l).dump(-1, ' ', true) + "\n";  // keys sorted, \u escapes
  write_text(tmp_ / "rewritten.jsonl", again);
  const std::string rw = (tmp_ / "rewritten.jsonl").string();
  EXPECT_NE(run_air({"select", "--data", rw, "--scores", s, "--top-k", "3", "--out", out}, &err), 0);
  EXPECT_NE(err.find("--match id"), std::string::npos) << err;
  ASSERT_EQ(run_air({"select", "--data", rw, "--scores", s, "--top-k", "3", "--match", "id", "--out", out}, &err), 0) << err;
  ASSERT_EQ(run_air({"select", "--data", c, "--scores", s, "--top-k", "3", "--out", (tmp_ / "sel-bytes.jsonl").string()}, &err), 0);
  const auto by_id = lines_of(out), by_bytes = lines_of(tmp_ / "sel-bytes.jsonl");
  ASSERT_EQ(by_id.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(nlohmann::json::parse(by_id[i]), nlohmann::json::parse(by_bytes[i]));
  fs::copy_file(s, tmp_ / "again.jsonl");
  EXPECT_NE(run_air({"select", "--data", c, "--scores", s, (tmp_ / "again.jsonl").string(), "--top-k", "3", "--out", out}, &err), 0);
  EXPECT_NE(err.find("two runs over the same records"), std::string::npos) << err;
  EXPECT_NE(err.find("air compare"), std::string::npos) << err;
}

// The memory this process may take is bounded by its own cgroup and the cgroup's ancestors (a
// Slurm job's --mem sits above the step's group), cgroup v2 and v1, read through a fake /proc
// and /sys tree.
TEST_F(TrustTest, TheProcessesOwnCgroupBoundsItsMemory) {
  constexpr int64_t G = int64_t{1} << 30;
  auto tree = [&](const std::string& name, const std::string& cgroup,
                  const std::vector<std::pair<std::string, std::string>>& files) {
    const fs::path root = tmp_ / name;
    fs::create_directories(root / "proc/self");
    write_text(root / "proc/meminfo", "MemTotal: 33554432 kB\nMemFree: 1000 kB\nMemAvailable: 16777216 kB\n");
    write_text(root / "proc/self/cgroup", cgroup);
    for (const auto& [path, text] : files) {
      fs::create_directories((root / path).parent_path());
      write_text(root / path, text + "\n");
    }
    return available_memory_bytes(root);
  };
  // v2: the job's limit (4G, 1G used) above the step's (none).
  EXPECT_EQ(tree("v2", "0::/system.slice/slurm/job_7/step_0\n",
                 {{"sys/fs/cgroup/system.slice/slurm/job_7/memory.max", std::to_string(4 * G)},
                  {"sys/fs/cgroup/system.slice/slurm/job_7/memory.current", std::to_string(G)},
                  {"sys/fs/cgroup/system.slice/slurm/job_7/step_0/memory.max", "max"},
                  {"sys/fs/cgroup/system.slice/slurm/job_7/step_0/memory.current", std::to_string(G / 2)}}),
            3 * G);
  // No limit anywhere: MemAvailable.
  EXPECT_EQ(tree("none", "0::/user.slice\n",
                 {{"sys/fs/cgroup/user.slice/memory.max", "max"}, {"sys/fs/cgroup/user.slice/memory.current", "5"}}),
            16 * G);
  // A container's namespaced view ("0::/"): the limit at the mount's root.
  EXPECT_EQ(tree("container", "0::/\n", {{"sys/fs/cgroup/memory.max", std::to_string(2 * G)},
                                          {"sys/fs/cgroup/memory.current", "0"}}),
            2 * G);
  // v1: the memory controller's line among others, its "no limit" a number near 2^63 above it.
  EXPECT_EQ(tree("v1", "4:cpu,cpuacct:/slurm/uid_0/job_9\n12:memory:/slurm/uid_0/job_9\n",
                 {{"sys/fs/cgroup/memory/slurm/uid_0/job_9/memory.limit_in_bytes", std::to_string(8 * G)},
                  {"sys/fs/cgroup/memory/slurm/uid_0/job_9/memory.usage_in_bytes", std::to_string(2 * G)},
                  {"sys/fs/cgroup/memory/slurm/uid_0/memory.limit_in_bytes", "9223372036854771712"},
                  {"sys/fs/cgroup/memory/slurm/uid_0/memory.usage_in_bytes", std::to_string(3 * G)}}),
            6 * G);
  // v1 with controllers mounted together ("cpuset,memory"), a group path the mount does not show
  // (another namespace): the limit found at the mount's root.
  EXPECT_EQ(tree("v1-joint", "7:cpuset,memory:/docker/abc\n",
                 {{"sys/fs/cgroup/memory/memory.limit_in_bytes", std::to_string(G)},
                  {"sys/fs/cgroup/memory/memory.usage_in_bytes", std::to_string(G / 4)}}),
            G - G / 4);
  // This machine's own answer is positive and no more than MemAvailable says.
  EXPECT_GT(available_memory_bytes(), 0);
}

}  // namespace
}  // namespace air::test
