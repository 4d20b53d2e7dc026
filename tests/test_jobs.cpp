// The job API: what a front-end other than the command line gets from the library (progress,
// messages, results), and that such a front-end writes exactly what `air score` writes.

#include "air/error.h"
#include "air/line_reader.h"
#include "air/probe_job.h"
#include "air/score_job.h"
#include "air/select_job.h"
#include "cli/cli.h"
#include "test_util.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <limits>

namespace air::test {
namespace {

// Keeps every event of a job.
struct Recorder : JobEvents {
  std::vector<std::string> infos, warnings;
  std::vector<ScoreProgress> progress_seen;
  void info(const std::string& m) override { infos.push_back(m); }
  void warn(const std::string& m) override { warnings.push_back(m); }
  void progress(const ScoreProgress& p) override { progress_seen.push_back(p); }
};

class JobTest : public TempDirTest {
 protected:
  // Messages name options as the library does ("`window`"), whatever an earlier command line
  // run in this process set.
  void SetUp() override {
    TempDirTest::SetUp();
    set_option_spelling(nullptr);
  }
  void TearDown() override {
    set_option_spelling(nullptr);
    TempDirTest::TearDown();
  }
  // The first n records of the GSM8K sample.
  fs::path corpus(size_t n) {
    LineReader in((fs::path(AIR_MODELS_DIR).parent_path() / "data" / "gsm8k-sample.jsonl").string());
    std::string line, text;
    for (size_t i = 0; i < n && in.next_record(line); ++i) text += line + "\n";
    write_text(tmp_ / "c.jsonl", text);
    return tmp_ / "c.jsonl";
  }
  // Probes 3 heads into tmp_/h.json and gives them to `o`.
  void probe_into(ScoreJobOptions& o, JobEvents& ev) {
    o.heads = (tmp_ / "h.json").string();
    ProbeJobOptions po;
    po.model = o.model;
    po.out = o.heads;
    po.probe.selection.num_heads = 3;
    po.runtime.threads = 1;
    run_probe_job(po, ev);
  }

  ScoreJobOptions score_options(const fs::path& data, const fs::path& out) {
    ScoreJobOptions o;
    o.model = model_dir("stories260K").string();
    o.data = data.string();
    o.out = out.string();
    o.probe.selection.num_heads = 3;
    o.corpus.step_delimiter = "\\n";
    o.corpus.truncate = true;  // some GSM8K records run past stories260K's 512 positions
    o.runtime.threads = 1;
    return o;
  }
};

std::vector<std::string> lines(const fs::path& p) {
  std::vector<std::string> out;
  LineReader in(p.string());
  std::string line;
  while (in.next_record(line)) out.push_back(line);
  return out;
}

// A second front-end (examples/score_corpus.cpp, through run_score_job) writes the records and
// the meta that `air score` writes, byte for byte (times apart).
TEST_F(JobTest, ExampleFrontEndWritesWhatAirScoreWrites) {
  const fs::path c = corpus(24);
  const fs::path heads = tmp_ / "heads.json";
  const std::string model = model_dir("stories260K").string();
  ASSERT_EQ(run_air({"probe", "--model", model, "--data", c.string(), "--out", heads.string(), "--num-heads", "3"}), 0);
  const fs::path a = tmp_ / "a.jsonl", b = tmp_ / "b.jsonl";
  ASSERT_EQ(run_air({"score", "--model", model, "--data", c.string(), "--heads", heads.string(), "--out", a.string()}), 0);
  const std::string cmd = std::string(AIR_SCORE_CORPUS_EXE) + " " + model + " " + c.string() + " " + b.string() + " " +
                          heads.string() + " 2> " + (tmp_ / "example.log").string();
  ASSERT_EQ(std::system(cmd.c_str()), 0) << read_text(tmp_ / "example.log");
  const auto ra = lines(a), rb = lines(b);
  ASSERT_EQ(ra.size(), 24u);
  EXPECT_EQ(ra, rb);
  auto meta = [](const fs::path& p) {
    nlohmann::json j = read_json(p);
    j.erase("wall_seconds");
    j.erase("runs");
    j.erase("config");  // the command line's flags; the example has none
    return j;
  };
  EXPECT_EQ(meta(a.string() + ".meta.json"), meta(b.string() + ".meta.json"));
  EXPECT_NE(read_text(tmp_ / "example.log").find("records"), std::string::npos);  // its progress
}

// Progress arrives after each batch (the probe's after each item), counting up to the corpus
// counted first, with the share of the corpus read; messages name options, never flags.
TEST_F(JobTest, ScoreJobReportsProgressAndResults) {
  const fs::path c = corpus(20);
  ScoreJobOptions o = score_options(c, tmp_ / "s.jsonl");
  o.window = 5;  // the last window fills with the last record: progress then counts it read
  Recorder ev;
  const ScoreJobResult r = run_score_job(o, ev);
  EXPECT_EQ(r.records, 20);
  EXPECT_EQ(r.scored, 20);
  EXPECT_EQ(r.meta["counts"]["scored"], 20);
  std::vector<ScoreProgress> probe, score;
  for (const ScoreProgress& p : ev.progress_seen) (p.stage == "probe" ? probe : score).push_back(p);
  ASSERT_FALSE(probe.empty());
  EXPECT_EQ(probe.back().records, probe.back().total);
  EXPECT_TRUE(probe.back().done);
  ASSERT_GE(score.size(), 5u);  // a batch at least in each of 4 windows, and the end
  int64_t before = 0;
  for (const ScoreProgress& p : score) {
    EXPECT_GE(p.records, before);
    before = p.records;
    EXPECT_EQ(p.total, 20);
    EXPECT_GT(p.tokens_per_second, 0);
    EXPECT_GT(p.fraction, 0);
    EXPECT_LE(p.fraction, 1);
    EXPECT_EQ(p.done, &p == &score.back());
  }
  EXPECT_EQ(ev.progress_seen.back().records, 20);
  EXPECT_EQ(ev.progress_seen.back().scored, 20);
  EXPECT_DOUBLE_EQ(ev.progress_seen.back().fraction, 1.0);
  EXPECT_DOUBLE_EQ(ev.progress_seen.back().eta_seconds, 0.0);
  EXPECT_EQ(lines(o.out).size(), 20u);
  EXPECT_TRUE(fs::exists(o.out + ".heads.json"));  // probed first, kept beside OUT
  for (const auto* list : {&ev.infos, &ev.warnings})
    for (const std::string& m : *list) EXPECT_EQ(m.find("--"), std::string::npos) << m;

  // A bad option is an OptionError naming the option, as the library spells it or as a front-end
  // does (the command line: its flag).
  o.window = 0;
  for (const bool flags : {false, true}) {
    if (flags) set_option_spelling(cli::flag_of);
    try {
      run_score_job(o, ev);
      ADD_FAILURE() << "window 0 accepted";
    } catch (const OptionError& e) {
      EXPECT_EQ(e.option(), "window");
      EXPECT_EQ(std::string(e.what()), flags ? "--window must be >= 1" : "`window` must be >= 1");
    }
  }
  EXPECT_EQ(cli::flag_of("response_fields"), "--response-field");
  EXPECT_EQ(cli::flag_of("max_length"), "--max-length");
}

// A stop request (what a signal handler sets) ends the job after the records in flight: they are
// written, OUT.partial and its sidecar are kept, Interrupted carries 128 + the signal; resumed,
// the job writes exactly what an uninterrupted one writes.
struct StopAfterFirstWindow : Recorder {
  std::atomic<int> stop{0};
  void progress(const ScoreProgress& p) override {
    Recorder::progress(p);
    stop.store(15);
  }
};

TEST_F(JobTest, StopRequestKeepsWhatWasScoredForResume) {
  const fs::path c = corpus(20);
  const fs::path whole = tmp_ / "whole.jsonl", cut = tmp_ / "cut.jsonl";
  ScoreJobOptions o = score_options(c, whole);
  Recorder quiet;
  probe_into(o, quiet);
  o.window = 4;
  run_score_job(o, quiet);

  o.out = cut.string();
  StopAfterFirstWindow ev;
  o.stop = &ev.stop;
  try {
    run_score_job(o, ev);
    ADD_FAILURE() << "the job did not stop";
  } catch (const Interrupted& e) {
    EXPECT_EQ(e.exit_code(), 128 + 15);
    EXPECT_NE(std::string(e.what()).find("`resume`"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(cut));
  const auto kept = lines(cut.string() + ".partial");
  EXPECT_EQ(kept.size(), 4u);  // the window in flight, and nothing after it
  EXPECT_TRUE(fs::exists(cut.string() + ".partial.json"));

  o.stop = nullptr;
  o.resume = true;
  const ScoreJobResult r = run_score_job(o, quiet);
  EXPECT_EQ(r.resumed, 4);
  EXPECT_EQ(lines(cut), lines(whole));
}

// Scores depend on the data alone: flushing every microsecond, and a run stopped inside a window
// (then resumed), write byte for byte what one unbroken run writes.
struct StopAfterReports : Recorder {
  std::atomic<int> stop{0};
  size_t after = 0;
  void progress(const ScoreProgress& p) override {
    Recorder::progress(p);
    if (progress_seen.size() >= after) stop.store(15);
  }
};

TEST_F(JobTest, TimingDoesNotChangeTheBytes) {
  const fs::path c = corpus(40);
  ScoreJobOptions o = score_options(c, tmp_ / "whole.jsonl");
  Recorder quiet;
  probe_into(o, quiet);
  o.window = 16;
  o.batch_tokens = 400;  // several batches in each window
  run_score_job(o, quiet);
  const auto whole = lines(tmp_ / "whole.jsonl");
  ASSERT_EQ(whole.size(), 40u);

  o.out = (tmp_ / "often.jsonl").string();
  o.flush_every = 1e-6;
  run_score_job(o, quiet);
  EXPECT_EQ(lines(o.out), whole);

  bool inside_a_window = false;  // some stop left part of a window written
  for (size_t after : {7u, 16u, 24u, 32u}) {
    o.out = (tmp_ / ("cut" + std::to_string(after) + ".jsonl")).string();
    o.resume = false;
    StopAfterReports ev;
    ev.after = after;
    o.stop = &ev.stop;
    EXPECT_THROW(run_score_job(o, ev), Interrupted);
    const size_t kept = fs::exists(o.out + ".partial") ? lines(o.out + ".partial").size() : 0;
    inside_a_window = inside_a_window || kept % 16 != 0;
    o.stop = nullptr;
    o.resume = true;
    o.window = 16;
    EXPECT_EQ(run_score_job(o, quiet).resumed, static_cast<int64_t>(kept));
    EXPECT_EQ(lines(o.out), whole) << "stopped after " << after << " reports, " << kept << " records kept";
  }
  EXPECT_TRUE(inside_a_window);
}

// A stop request inside a long batch ends it after the layer in flight, not after the batch; the
// progress inside it counts layers; the resumed run writes the same bytes.
TEST_F(JobTest, AStopInsideALongBatchComesAfterALayer) {
  const fs::path c = corpus(16);
  ScoreJobOptions o = score_options(c, tmp_ / "whole.jsonl");
  Recorder quiet;
  probe_into(o, quiet);
  o.window = 64;             // past the corpus's end: the last window is scored after the reading
  o.batch_tokens = 1 << 20;  // the window is one batch
  run_score_job(o, quiet);
  const auto whole = lines(tmp_ / "whole.jsonl");

  o.out = (tmp_ / "cut.jsonl").string();
  o.layer_progress_every = 0;  // a report after every layer
  StopAfterReports ev;
  ev.after = 2;
  o.stop = &ev.stop;
  EXPECT_THROW(run_score_job(o, ev), Interrupted);
  // Reports inside the batch: tokens done grow before any record is written.
  ASSERT_GE(ev.progress_seen.size(), 2u);
  EXPECT_EQ(ev.progress_seen[1].records, 0);
  EXPECT_GT(ev.progress_seen[1].eta_seconds, 0);
  EXPECT_LE(ev.progress_seen.size(), 3u);  // the stop came at the next layer
  EXPECT_EQ(fs::exists(o.out + ".partial") ? lines(o.out + ".partial").size() : 0u, 0u);
  EXPECT_FALSE(fs::exists(o.out));  // never a finished-looking output
  o.stop = nullptr;
  o.resume = true;
  run_score_job(o, quiet);
  EXPECT_EQ(lines(o.out), whole);
}

// A model split over several devices (layer ranges, as device_map="auto") scores exactly as on
// one: two CPU placements here (cuda:0,cuda:0 in scripts/gpu-check.sh on a GPU machine).
TEST_F(JobTest, LayersSplitOverDevicesScoreAsOnOne) {
  const std::vector<c10::Device> two = {c10::Device(c10::kCPU), c10::Device(c10::kCPU)};
  const auto placed = place_layers(5, two);
  ASSERT_EQ(placed.size(), 5u);
  EXPECT_THROW(parse_devices("cpu,gpu"), OptionError);
  EXPECT_EQ(parse_devices("cpu,cpu").size(), 2u);
  EXPECT_EQ(devices_string(parse_devices("cpu,cpu")), "cpu,cpu");

  const fs::path c = corpus(12);
  ScoreJobOptions o = score_options(c, tmp_ / "one.jsonl");
  Recorder ev;
  probe_into(o, ev);
  run_score_job(o, ev);
  o.out = (tmp_ / "split.jsonl").string();
  o.runtime.layer_devices = two;
  const ScoreJobResult r = run_score_job(o, ev);
  EXPECT_EQ(r.meta["options"]["device"], "cpu,cpu");
  EXPECT_EQ(lines(o.out), lines(tmp_ / "one.jsonl"));
  const LoadedModel m = load_model(o.model, o.runtime);
  EXPECT_EQ(m.model->layer_device.size(), static_cast<size_t>(m.checkpoint.config().num_hidden_layers));
  // The command line takes the list.
  ASSERT_EQ(run_air({"score", "--model", o.model, "--heads", o.heads, "--data", c.string(), "--out",
                     (tmp_ / "cli.jsonl").string(), "--device", "cpu,cpu", "--threads", "1", "--step-delimiter", "\\n", "--truncate"}),
            0);
  EXPECT_EQ(lines(tmp_ / "cli.jsonl"), lines(tmp_ / "one.jsonl"));
}

// The probe job returns the whole heads file, settings included, and writes it.
TEST_F(JobTest, ProbeJobReturnsTheHeadsFileWithItsSettings) {
  ProbeJobOptions o;
  o.model = model_dir("stories260K").string();
  o.data = corpus(16).string();
  o.out = (tmp_ / "h.json").string();
  o.probe.probe.seed = 7;
  o.probe.selection.num_heads = 4;
  o.runtime.threads = 1;
  Recorder ev;
  const HeadsFile h = run_probe_job(o, ev);
  EXPECT_EQ(h.selected.size(), 4u);
  EXPECT_EQ(h.info.probe.seed, 7u);
  EXPECT_EQ(h.info.layers * h.info.heads_per_layer, static_cast<int64_t>(h.result.ranked.size()));
  const HeadsFile back = read_heads_file(o.out);
  EXPECT_EQ(back.selected.to_string(), h.selected.to_string());
  EXPECT_EQ(probe_settings_difference(o.probe, read_json(o.out)), "");
  ProbeSettings other = o.probe;
  other.probe.seed = 8;
  EXPECT_EQ(probe_settings_difference(other, read_json(o.out)), "`seed`: 7, now 8");
}

// The select job ranks, writes, and returns the top records with their steps for people.
TEST_F(JobTest, SelectJobReturnsTheTopRecords) {
  const fs::path c = corpus(12);
  ScoreJobOptions so = score_options(c, tmp_ / "s.jsonl");
  Recorder ev;
  run_score_job(so, ev);
  SelectJobOptions o;
  o.data = c.string();
  o.scores = {so.out};
  o.out = (tmp_ / "sel.jsonl").string();
  o.top_k = 5;
  o.show = 3;
  const SelectJobResult r = run_select_job(o, ev);
  EXPECT_EQ(r.selected, 5);
  EXPECT_EQ(r.candidates, 12);
  ASSERT_EQ(r.shown.size(), 3u);
  EXPECT_GE(r.shown[0].score, r.shown[1].score);
  EXPECT_GE(r.shown[1].score, r.shown[2].score);
  EXPECT_FALSE(r.shown[0].step.empty());
  EXPECT_EQ(lines(o.out).size(), 5u);
  // The score file's run description is an input too: never written over.
  const std::string meta = read_text(so.out + ".meta.json");
  o.out = so.out + ".meta.json";
  EXPECT_THROW(run_select_job(o, ev), UsageError);
  EXPECT_EQ(read_text(so.out + ".meta.json"), meta);
  o.top_k = 0;
  EXPECT_THROW(run_select_job(o, ev), OptionError);  // neither top_k nor top_ratio
}

// A record whose losses are non-finite is an error line of its own, counted; a job in which every
// record failed is an error after its outputs are written.
TEST_F(JobTest, NonFiniteLossesAreErrorLinesNotScores) {
  const fs::path m = tmp_ / "m";
  fs::create_directories(m);
  for (const auto& e : fs::directory_iterator(model_dir("stories260K")))
    fs::copy_file(e.path(), m / e.path().filename());
  auto tensors = read_raw_tensors(m / "model.safetensors");
  for (auto& t : tensors)
    if (t.name == "model.norm.weight")
      for (size_t i = 0; i + 4 <= t.bytes.size(); i += 4) {
        const float big = 1e38f;  // finite, so the checkpoint loads; the logits overflow
        std::memcpy(t.bytes.data() + i, &big, 4);
      }
  write_safetensors(m / "model.safetensors", tensors);
  const fs::path c = corpus(3);
  ScoreJobOptions o = score_options(c, tmp_ / "s.jsonl");
  o.model = m.string();
  o.heads = "";
  o.probe.probe.kind = ProbeKind::kRandomRepeat;
  Recorder ev;
  try {
    run_score_job(o, ev);
    ADD_FAILURE() << "a run with no record scored succeeded";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("3 errors"), std::string::npos) << e.what();
  }
  const auto out = lines(o.out);
  ASSERT_EQ(out.size(), 3u);
  for (const auto& l : out) {
    const auto j = nlohmann::json::parse(l);
    EXPECT_FALSE(j.contains("air_score")) << l;
    EXPECT_NE(j.value("error", "").find("non-finite"), std::string::npos) << l;
  }
  EXPECT_EQ(read_json(o.out + ".meta.json")["counts"]["errors"], 3);
  EXPECT_EQ(ev.warnings.size() >= 3, true);
}

}  // namespace
}  // namespace air::test
