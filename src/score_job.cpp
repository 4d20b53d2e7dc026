#include "air/score_job.h"

#include "air/batching.h"
#include "air/build_info.h"
#include "air/error.h"
#include "air/heads_file.h"
#include "air/line_reader.h"
#include "air/output.h"
#include "air/score_output.h"
#include "air/score_record.h"
#include "air/scorer.h"

#include <ATen/Parallel.h>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <variant>

namespace air {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw DataError(path + ": cannot open for reading");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw DataError(path + ": malformed JSON (" + e.what() + ")");
  }
}

void check_options(const ScoreJobOptions& opt, const ScorePaths& paths) {
  if (opt.window < 1) throw OptionError("window", option_name("window") + " must be >= 1");
  if (!(opt.flush_every > 0) || opt.flush_every > 86400)
    throw OptionError("flush_every", option_name("flush_every") + " must be in (0, 86400] seconds");
  if (opt.resume && paths.stream)
    throw OptionError("resume", option_name("resume") + " needs " + option_name("out") + " to be a regular file (it continues OUT.partial)");
  opt.shard.check();
}

// Every path checked before the model loads: inputs readable, outputs writable, no output over
// an input. Returns the lock that keeps a second run off the same output.
OutputLock check_paths(const ScoreJobOptions& opt, const ScorePaths& p) {
  check_input_file({"corpus (" + option_name("data") + ")", opt.data});
  check_input_file({"heads file (" + option_name("heads") + ")", opt.heads});
  check_input_file({"probe items (" + option_name("probe_data") + ")", opt.probe.probe_data});
  check_input_file({"probe text (" + option_name("probe_text") + ")", opt.probe.probe_text});
  const std::vector<NamedPath> inputs = {{"model folder (" + option_name("model") + ")", opt.model},
                                         {"corpus (" + option_name("data") + ")", opt.data},
                                         {"heads file (" + option_name("heads") + ")", opt.heads},
                                         {"probe items (" + option_name("probe_data") + ")", opt.probe.probe_data},
                                         {"probe text (" + option_name("probe_text") + ")", opt.probe.probe_text},
                                         {"chat template (" + option_name("template") + ")", opt.corpus.template_file()}};
  std::vector<NamedPath> outputs = {{"output (" + option_name("out") + ")", opt.out}, {"meta file", p.meta}, {"rejects file", p.rejects}};
  if (!p.stream) {
    outputs.push_back({"partial output", ScoreWriter::partial_path(opt.out)});
    outputs.push_back({"partial output's description", ScoreWriter::sidecar_path(opt.out)});
    if (opt.heads.empty() && !opt.resume) outputs.push_back({"probed heads file", p.heads});
  }
  check_outputs(outputs, inputs);
  for (const auto& o : outputs) check_writable(o.path);
  check_jsonl(opt.data);
  return OutputLock(opt.out);
}

// The heads to weaken: a heads file given (checked to belong to the model), the earlier run's
// (resuming), or a probe run now.
struct Heads {
  HeadSet set;
  std::string file;
};

Heads read_heads(const ScoreJobOptions& opt, const LoadedModel& m, const std::string& path, JobEvents& events) {
  const HeadsFile hf = read_heads_file(path);
  const std::string fp = m.checkpoint.fingerprint();
  if (hf.info.fingerprint.empty())
    events.warn(path + " names no model fingerprint: it cannot be checked to belong to this model");
  if (!hf.info.fingerprint.empty() && hf.info.fingerprint != fp) {
    const std::string msg = path + " was probed on model " + hf.info.fingerprint + " (" + hf.info.model_path +
                            "), not on this one (" + fp + ")";
    if (!opt.allow_heads_mismatch)
      throw OptionError("allow_heads_mismatch", msg + "; pass " + option_name("allow_heads_mismatch") + " to use it anyway");
    events.warn(msg);
  }
  return {hf.selected, path};
}

Heads find_heads(const ScoreJobOptions& opt, const ScorePaths& paths, const LoadedModel& m, const CorpusSetup& corpus,
                 JobEvents& events) {
  if (!opt.heads.empty()) return read_heads(opt, m, opt.heads, events);
  if (opt.resume && fs::exists(paths.heads)) {  // the heads the earlier run probed, if probed alike
    const std::string diff = probe_settings_difference(opt.probe, read_json_file(paths.heads));
    if (!diff.empty())
      throw OptionError("resume", paths.heads + " was probed differently (" + diff +
                                      "); run without " + option_name("resume") + " to start over, or give " + option_name("heads"));
    events.info("resuming: using the heads the earlier run probed, " + paths.heads);
    return read_heads(opt, m, paths.heads, events);
  }
  if (opt.data == "-" && opt.probe.probe_text.empty() && opt.probe.probe_data.empty())
    throw OptionError("heads", "the corpus from stdin (" + option_name("data") + " -) can be read only once: give " +
                                 option_name("heads") + ", or " + option_name("probe_text") + " for the probe");
  events.info("no heads given: running the " + probe_kind_name(opt.probe.probe.kind) + " probe first");
  if (opt.shard.count > 1)
    events.warn(option_name("shard") + " without " + option_name("heads") +
                ": every shard probes the same way; probing once and giving its heads file saves that");
  const HeadsFile h = probe_heads(m, opt.probe, corpus, opt.data, events);
  if (!paths.heads.empty()) write_heads_file(paths.heads, h);
  return {h.selected, paths.heads};
}

// What the scores depend on: the sidecar of the output, partial and complete.
nlohmann::ordered_json run_description(const ScoreJobOptions& opt, const LoadedModel& m, const CorpusSetup& corpus,
                                       const Heads& heads, const ScoreOptions& so) {
  const ModelConfig& c = m.checkpoint.config();
  const CorpusSettings& cs = opt.corpus;
  nlohmann::ordered_json run;
  run["tool"] = "air";
  run["version"] = AIR_VERSION;
  run["build"] = build_info_json(build_info());
  run["data"] = opt.data;
  run["model"] = {{"path", opt.model}, {"architecture", c.architecture_name}, {"fingerprint", m.checkpoint.fingerprint()}};
  run["heads"] = {{"file", heads.file}, {"selected", heads.set.to_string()}};
  run["options"] = {{"score", score_mode_name(opt.score)},
                    {"dtype", dtype_name(m.dtype)},
                    {"device", m.layer_devices.empty() ? m.device.str() : devices_string(m.layer_devices)},
                    {"template", corpus.tmpl.name},
                    {"separator", cs.separator},
                    {"format", cs.format},
                    {"prompt_field", cs.prompt_field},
                    {"response_fields", cs.response_fields},
                    {"id_field", cs.id_field},
                    {"step_delimiter", cs.step_delimiter},
                    {"min_step_tokens", cs.min_step_tokens},
                    {"max_length", corpus.options.sample.max_length},
                    {"truncate", cs.truncate},
                    {"emit_token_scores", opt.emit_token_scores},
                    {"shard", opt.shard.str()},
                    {"eps", so.influence.eps},
                    {"batch_tokens", opt.batch_tokens},
                    {"window", opt.window}};
  run["template"] = template_to_json(corpus.tmpl);
  run["template"]["origin"] = corpus.template_origin;
  run["dtype_why"] = m.dtype_why;
  if (!opt.config.empty()) run["config"] = opt.config;
  return run;
}

// Records an earlier run of the same scoring already wrote: the whole lines of OUT.partial, or of
// a complete OUT, when its sidecar shows the same model, heads and options.
struct Resumed {
  std::vector<ScoredLine> lines;
  double seconds = 0;                             // wall time of the earlier runs
  nlohmann::json runs = nlohmann::json::array();  // each earlier run: {wall_seconds, records}
  std::uintmax_t bytes = 0;                       // where their whole lines end
  std::string from;                               // the file they came from
};

Resumed find_resumable(const std::string& out, const nlohmann::ordered_json& run, JobEvents& events) {
  Resumed r;
  const std::string partial = ScoreWriter::partial_path(out);
  std::string sidecar;
  if (fs::is_symlink(partial))
    throw IoError(partial + " is a symbolic link, not a partial output of air; remove it to start over");
  if (fs::exists(partial)) {
    r.from = partial;
    sidecar = ScoreWriter::sidecar_path(out);
  } else if (fs::exists(out)) {
    r.from = out;
    sidecar = out + ".meta.json";
  } else {
    events.info("resuming: neither " + partial + " nor " + out + " exists; scoring from the start");
    return r;
  }
  if (!fs::exists(sidecar))
    throw OptionError("resume", r.from + ": no " + sidecar +
                                    " beside it tells how it was scored; run without " + option_name("resume") + " to start over");
  const nlohmann::json before = read_json_file(sidecar);
  const std::string diff = run_difference(before, run);
  if (!diff.empty())
    throw OptionError("resume", r.from + " was scored differently (" + diff + "); run without " + option_name("resume") +
                                    " to start over");
  for (const char* key : {"batch_tokens", "window"}) {
    const nlohmann::json a = before.contains("options") ? before["options"].value(key, nlohmann::json()) : nlohmann::json();
    const nlohmann::json b = run["options"].value(key, nlohmann::json());
    if (a != b)
      events.warn(r.from + " was scored with " + option_name(key) + " " + a.dump() + ", now " + b.dump() +
                  ": records are batched differently, so the scores of this run may differ from an unbroken run's in "
                  "the last digits (give the same value for identical bytes)");
  }
  r.lines = read_score_lines(r.from, &r.bytes, [&](const std::string& w) { events.warn(w + "; it is scored again"); });
  if (before.contains("wall_seconds") && before["wall_seconds"].is_number()) r.seconds = before["wall_seconds"].get<double>();
  if (before.contains("runs") && before["runs"].is_array()) r.runs = before["runs"];
  events.info("resuming: " + std::to_string(r.lines.size()) + " records already scored in " + r.from);
  return r;
}

// The counts of a run: what it scored, and what the resumed records had.
struct Counts {
  int64_t scored = 0, errors = 0, response_tokens = 0, truncated = 0, single_step = 0;
  int64_t resumed_scored = 0;  // of scored, those taken from the earlier run
};

// The records a resumed run already has, met in corpus order: each corpus record is taken from
// it (checked to be the same line, id and text) or scored anew.
class ResumeCursor {
 public:
  ResumeCursor(const Resumed& done, std::string corpus) : done_(done), corpus_(std::move(corpus)) {}

  bool empty() const { return done_.lines.empty(); }
  size_t held() const { return done_.lines.size(); }  // records of the earlier runs
  size_t taken() const { return next_; }              // of those, met so far
  // Whether the next record held is a rejected one (rejects are read again, for the rejects file).
  bool next_is_rejected() const { return next_ < done_.lines.size() && done_.lines[next_].rejected; }
  // True when the corpus record (line, id, hash) is the next one held: it is counted and passed
  // over. Throws DataError when the corpus holds another record there. `read`: the record was
  // read and tokenized again (to be batched as before), which counts its truncation and steps.
  bool take(int64_t line, const std::string& id, const std::string& hash, Counts& counts, bool read = false) {
    if (next_ >= done_.lines.size()) return false;
    const ScoredLine& d = done_.lines[next_];
    if (d.line != line || d.id != id)
      throw DataError(done_.from + ": its record " + std::to_string(next_ + 1) + " is line " + std::to_string(d.line) +
                      " id '" + d.id + "', but " + corpus_ + " has line " + std::to_string(line) + " id '" + id +
                      "' there: the corpus changed since; run without " + option_name("resume") + " to start over");
    if (!d.hash.empty() && d.hash != hash)
      throw DataError(done_.from + ": the record of line " + std::to_string(line) + " id '" + id +
                      "' was scored from other text (line hash " + d.hash + ", now " + hash + ") in " + corpus_ +
                      ": the corpus changed since; run without " + option_name("resume") + " to start over");
    ++next_;
    if (d.error) ++counts.errors;
    if (!d.error && !d.rejected) {
      ++counts.scored;
      ++counts.resumed_scored;
      counts.response_tokens += d.tokens;
      if (!read) {
        counts.truncated += d.truncated;
        counts.single_step += d.single_step;
      }
    }
    return true;
  }
  // At the end of the corpus: every record held must have been met.
  void check_all_taken() const {
    if (next_ >= done_.lines.size()) return;
    const ScoredLine& d = done_.lines[next_];
    throw DataError(done_.from + " holds a record of line " + std::to_string(d.line) + " id '" + d.id + "', which " +
                    corpus_ + " does not have: the corpus changed since; run without " + option_name("resume") + " to start over");
  }

 private:
  const Resumed& done_;
  std::string corpus_;
  size_t next_ = 0;
};

// Records in input order, scored a window at a time. A window is `window` consecutive records
// of the corpus (or shard), counted from its start: what is batched together depends on the data
// alone, never on time, so that a rerun and a resumed run give the same bytes. Inside a window
// the batches are scored one by one; every flush_every seconds, and on a stop request, the
// records done so far in input order are written. A resumed run scores again the window its last
// record was in (those written before are not written twice).
class WindowWriter {
 public:
  WindowWriter(const ScoreJobOptions& opt, const Scorer& scorer, ScoreWriter& out, Counts& counts,
               const ScoreProgress& base, JobEvents& events)
      : opt_(opt), scorer_(scorer), out_(out), counts_(counts), progress_(base), events_(events) {}

  // `written`: the record is in the output already (a resumed run's), scored only to batch alike.
  void add(Sample&& s, bool written = false) {
    tokens_ += static_cast<int64_t>(s.ids.size());
    entries_.push_back({std::move(s), written});
    if (due()) flush();
  }
  void add(const Reject& r, bool written = false) {
    entries_.push_back({r, written});
    if (due()) flush();
  }
  void read_to(double fraction) {
    if (fraction_start_ < 0) fraction_start_ = window_start_ = fraction;
    progress_.fraction = fraction;
  }
  int64_t written() const { return written_; }

  // Scores and writes the window held.
  void flush() {
    if (entries_.empty()) return;
    std::vector<size_t> rows;  // entries to score
    std::vector<int64_t> lengths;
    bool all_written = true;
    for (size_t i = 0; i < entries_.size(); ++i) {
      all_written = all_written && entries_[i].written;
      if (const auto* s = std::get_if<Sample>(&entries_[i].item)) {
        rows.push_back(i);
        lengths.push_back(static_cast<int64_t>(s->ids.size()));
      }
    }
    if (all_written) {
      clear();
      return;
    }
    results_.assign(entries_.size(), std::nullopt);
    int64_t tokens_done = 0;  // of the window
    const auto t_window = Clock::now();
    // The batches the scorer would make of the whole window, scored one at a time.
    for (const auto& batch : plan_batches(lengths, std::max<int64_t>(opt_.batch_tokens, 1))) {
      if (stop_requested()) {  // the caller stops; the rest of the window is scored at resume
        write_done();
        return;
      }
      std::vector<const Sample*> samples;
      int64_t batch_tokens = 0;
      for (size_t b : batch) {
        samples.push_back(&std::get<Sample>(entries_[rows[b]].item));
        batch_tokens += lengths[b];
      }
      // Inside a long batch: progress by layers, and a stop request ends it (its records are
      // scored again at resume), so that a stop comes within a layer's time.
      auto on_layer = [&](int64_t done, int64_t total) {
        if (stop_requested()) throw ScoringStopped();
        if (since(last_report_) >= opt_.layer_progress_every) report(tokens_done + batch_tokens * done / std::max<int64_t>(total, 1));
      };
      std::vector<ScoreResult> results;
      try {
        results = scorer_.score(
            samples,
            [&](int64_t, int64_t tokens) {
              tokens_done += tokens;
              run_tokens_ += tokens;
            },
            on_layer);
      } catch (const ScoringStopped&) {
        write_done();
        return;
      }
      for (size_t k = 0; k < batch.size(); ++k) results_[rows[batch[k]]] = results[k];
      report(tokens_done);
      if (stop_requested() || since(last_write_) >= opt_.flush_every) write_done();
    }
    const double scoring_seconds = since(t_window);
    write_done();
    clear();
    report(0);
    if (scoring_seconds > 0)  // the tokens scored in flush_every seconds, for arriving corpora
      token_limit_ = std::max<int64_t>(opt_.batch_tokens, static_cast<int64_t>(static_cast<double>(tokens_done) /
                                                                                 scoring_seconds * opt_.flush_every));
  }
  bool stop_requested() const { return opt_.stop && opt_.stop->load() != 0; }
  // A corpus that arrives through a pipe, a FIFO or stdin is batched as it arrives: its window
  // also closes at the tokens the run scores in flush_every seconds, or after flush_every
  // seconds, so that a slow writer's records reach OUT while it writes. A file never is.
  bool due() const {
    if (static_cast<int64_t>(entries_.size()) >= opt_.window) return true;
    return arriving_ && (tokens_ >= token_limit_ || since(last_write_) >= opt_.flush_every);
  }
  // The last report: everything read is written.
  void finish() {
    progress_.done = true;
    report(0);
  }

 private:
  struct Entry {
    std::variant<Sample, Reject> item;
    bool written = false;
  };
  void clear() {
    window_start_ = std::max(0.0, progress_.fraction);
    tokens_ = 0;
    entries_.clear();
    results_.clear();
    next_write_ = 0;
  }
  // Writes the window's records from the first unwritten one up to the first not yet scored.
  void write_done() {
    const size_t from = next_write_;
    for (; next_write_ < entries_.size(); ++next_write_) {
      const Entry& e = entries_[next_write_];
      const auto* s = std::get_if<Sample>(&e.item);
      if (s && !results_[next_write_]) break;
      if (e.written) continue;
      if (s) {
        const ScoreResult& r = *results_[next_write_];
        if (r.error.empty()) {
          ++counts_.scored;
          counts_.response_tokens += r.influence.tokens;
        } else {
          ++counts_.errors;
          events_.warn(opt_.data + ":" + std::to_string(s->record.line) + ": " + r.error);
        }
        out_.stream() << to_json(score_record(*s, r)).dump() << "\n";
      } else {
        out_.stream() << to_json(rejected_record(std::get<Reject>(e.item))).dump() << "\n";
      }
      ++written_;
    }
    if (next_write_ > from) out_.flush();
    last_write_ = Clock::now();
  }
  // Progress: records written or scored; the ETA from the share of the input through the model,
  // counted in bytes across windows and in tokens inside the window (long traces weigh as much
  // as they cost, not as one record each).
  void report(int64_t window_tokens_done) {
    ScoreProgress& p = progress_;
    last_report_ = Clock::now();
    int64_t pending = 0;
    const int64_t window_tokens = tokens_;
    for (size_t i = next_write_; i < entries_.size(); ++i)
      pending += !entries_[i].written && (!std::holds_alternative<Sample>(entries_[i].item) || (i < results_.size() && results_[i]));
    p.records = base_records_ + written_ + pending;
    p.scored = counts_.scored;
    p.errors = counts_.errors;
    p.response_tokens = counts_.response_tokens;
    p.tokens = run_tokens_;
    p.seconds = since(start_);
    p.tokens_per_second = p.seconds > 0 ? static_cast<double>(run_tokens_) / p.seconds : 0;
    const double window_end = entries_.empty() ? window_start_ : p.fraction;
    const double inside = window_tokens > 0 ? static_cast<double>(window_tokens_done) / static_cast<double>(window_tokens) : 0;
    const double done = window_start_ + inside * std::max(0.0, window_end - window_start_);
    const double through = done - std::max(0.0, fraction_start_);
    p.eta_seconds = p.fraction >= 0 && through > 0 ? p.seconds * std::max(0.0, 1 - done) / through : -1;
    events_.progress(p);
  }

  const ScoreJobOptions& opt_;
  const Scorer& scorer_;
  ScoreWriter& out_;
  Counts& counts_;
  ScoreProgress progress_;
  JobEvents& events_;
  std::vector<Entry> entries_;                       // the window
  std::vector<std::optional<ScoreResult>> results_;  // per entry, once scored
  size_t next_write_ = 0;                            // first entry of the window not yet written
  int64_t tokens_ = 0;                               // of the window's samples
  const bool arriving_ = opt_.data == "-" || !fs::is_regular_file(opt_.data);
  int64_t token_limit_ = std::max<int64_t>(opt_.batch_tokens, 1);  // for arriving corpora
  int64_t run_tokens_ = 0;  // tokens through the model in this run
  int64_t written_ = 0;
  const int64_t base_records_ = progress_.records;  // resumed before this run
  double fraction_start_ = -1;  // of the input read when this run's first record was
  double window_start_ = 0;     // of the input read when the window began
  const Clock::time_point start_ = Clock::now();
  Clock::time_point last_write_ = Clock::now();
  Clock::time_point last_report_ = Clock::now();
};

// OUT.meta.json: the run description, its counts and times.
nlohmann::ordered_json run_meta(const nlohmann::ordered_json& run, const CorpusStats& st, const Counts& c,
                                const Resumed& done, double wall) {
  nlohmann::ordered_json meta = run;
  meta["counts"] = {{"records", st.lines},
                    {"scored", c.scored},
                    {"errors", c.errors},
                    {"skipped", static_cast<int64_t>(st.rejects.size())},
                    {"truncated", st.truncated + c.truncated},
                    {"response_tokens", c.response_tokens},
                    {"resumed", static_cast<int64_t>(done.lines.size())},
                    {"single_step", st.single_step + c.single_step}};
  meta["layouts"] = st.layouts;
  if (!st.unused_fields.empty()) meta["unused_fields"] = st.unused_fields;
  meta["wall_seconds"] = done.seconds + wall;
  nlohmann::json runs = done.runs;
  runs.push_back({{"wall_seconds", wall}, {"records", st.lines - static_cast<int64_t>(done.lines.size())}});
  meta["runs"] = runs;
  return meta;
}

// Scores the corpus into OUT: records already resumed are taken from the earlier run, the others
// scored a window at a time; OUT.partial becomes OUT at the end.
CorpusStats score_corpus(const ScoreJobOptions& opt, const CorpusSetup& corpus, const Scorer& scorer,
                         const nlohmann::ordered_json& run, const Resumed& done, Counts& counts, JobEvents& events,
                         Clock::time_point t0) {
  ResumeCursor cursor(done, opt.data);
  ScoreWriter out(opt.out, run, done.from, done.bytes);
  out.on_kept = [&](const std::string& partial) {
    events.warn("the records scored so far are kept in " + partial + ": the same job resumed continues");
  };
  ScoreProgress base;
  base.records = static_cast<int64_t>(done.lines.size());
  // The records of this shard, counted first for the progress (cheap next to scoring them).
  const int64_t lines = count_records(opt.data);
  if (lines >= 0)
    base.total = lines > opt.shard.index ? (lines - opt.shard.index + opt.shard.count - 1) / opt.shard.count : 0;
  WindowWriter window(opt, scorer, out, counts, base, events);
  out.set_time(done.seconds, done.runs,
               [&] { return nlohmann::json{{"wall_seconds", since(t0)}, {"records", window.written()}}; });
  DatasetOptions dopt = corpus.options;
  dopt.shard = opt.shard;
  // Records already scored are passed over before they are rendered and tokenized (rejected ones
  // go through, so that the rejects file stays whole), up to the start of the window the last of
  // them was in: that window is scored again as a whole, so that its batches are those of a run
  // never stopped, and only its records not yet written are written.
  const size_t window_start = cursor.held() / static_cast<size_t>(opt.window) * static_cast<size_t>(opt.window);
  if (!cursor.empty())
    dopt.skip = [&](const Record& r) {
      return cursor.taken() < window_start && !cursor.next_is_rejected() && cursor.take(r.line, r.id, r.hash, counts);
    };
  dopt.on_progress = [&](double fraction) { window.read_to(fraction); };
  // On a stop request: the records of the window scored so far are written (from its first
  // unwritten one up to the first not scored), OUT.partial is kept.
  auto stop_if_asked = [&] {
    if (!opt.stop || opt.stop->load() == 0) return;
    window.flush();
    const int sig = opt.stop->load();
    throw Interrupted("stopped on request (signal " + std::to_string(sig) + ") after writing " +
                          std::to_string(window.written() + static_cast<int64_t>(done.lines.size())) +
                          " records; the same command with " + option_name("resume") + " continues",
                      128 + sig);
  };
  const CorpusStats st = read_corpus(
      opt.data, corpus.tmpl, *corpus.tokenizer, *corpus.splitter, dopt,
      [&](Sample&& s) {
        const bool written = cursor.take(s.record.line, s.record.id, s.record.hash, counts, /*read=*/true);
        if (!written || cursor.taken() > window_start) window.add(std::move(s), written);
        stop_if_asked();
      },
      [&](const Reject& r) {
        const bool written = cursor.take(r.line, r.id, line_hash(r.raw), counts);
        if (!written || cursor.taken() > window_start) window.add(r, written);
        stop_if_asked();
      });
  cursor.check_all_taken();
  window.flush();
  stop_if_asked();  // a stop inside the last window's batches: OUT stays partial
  window.finish();
  out.commit();
  return st;
}

// The job's counts; DataError when no record could be scored (the outputs are written by then).
ScoreJobResult result(ScoreJobResult res, const ScoreJobOptions& opt, const CorpusStats& st, const Counts& counts,
                      const Resumed& done) {
  res.records = st.lines;
  res.scored = counts.scored;
  res.errors = counts.errors;
  res.rejected = static_cast<int64_t>(st.rejects.size());
  res.truncated = st.truncated + counts.truncated;
  res.resumed = static_cast<int64_t>(done.lines.size());
  res.resumed_from = done.from;
  if (res.scored == 0)
    throw DataError(opt.data + ": none of its " + std::to_string(st.lines) + " records was scored (" +
                    std::to_string(res.errors) + " errors" + (res.errors ? ", see " + opt.out : "") + "; " +
                    std::to_string(res.rejected) + " rejected" +
                    (res.rejected == 0 || res.paths.rejects.empty() ? "" : ", see " + res.paths.rejects) + ")");
  return res;
}

}  // namespace

std::string score_mode_name(ScoreMode mode) { return mode == ScoreMode::kAbsolute ? "absolute" : "relative"; }

ScoreMode parse_score_mode(const std::string& name) {
  if (name == "relative") return ScoreMode::kRelative;
  if (name == "absolute") return ScoreMode::kAbsolute;
  throw OptionError("score", option_name("score") + " '" + name + "': expected relative or absolute");
}

ScorePaths score_paths(const ScoreJobOptions& opt) {
  ScorePaths p;
  p.stream = is_stream_output(opt.out);
  p.heads = p.stream ? "" : opt.out + ".heads.json";
  p.meta = !opt.meta.empty() ? opt.meta : p.stream ? "" : opt.out + ".meta.json";
  p.rejects = !opt.rejects.empty() ? opt.rejects : p.stream ? "" : opt.out + ".rejects.jsonl";
  return p;
}

ScoreJobResult run_score_job(const ScoreJobOptions& given, JobEvents& events) {
  const auto t0 = Clock::now();
  if (given.out.empty()) throw OptionError("out", option_name("out") + " is empty: give a file, or - for stdout");
  ScoreJobOptions opt = given;
  opt.out = output_target(given.out);  // a symbolic link stays; its target and sidecars are written
  ScoreJobResult res;
  res.paths = score_paths(opt);
  check_options(opt, res.paths);
  const OutputLock lock = check_paths(opt, res.paths);
  const LoadedModel m = load_model(opt.model, opt.runtime);
  events.info("dtype " + dtype_name(m.dtype) + " (" + m.dtype_why + ")");
  for (const auto& note : m.notes) events.warn(note);
  const ModelConfig& c = m.checkpoint.config();
  CorpusSetup corpus = make_corpus_setup(opt.corpus, opt.model);
  report_corpus_notices(corpus, events);
  check_tokenizer_fits(*corpus.tokenizer, c.vocab_size, opt.model);
  const Heads heads = find_heads(opt, res.paths, m, corpus, events);
  heads.set.validate(c.num_hidden_layers, c.num_attention_heads);
  ScoreOptions so;
  so.influence.mode = opt.score;
  so.batch_tokens = opt.batch_tokens;
  so.token_scores = opt.emit_token_scores;
  so.max_memory = m.memory_budget;
  const Scorer scorer(m.model, heads.set, so);
  const nlohmann::ordered_json run = run_description(opt, m, corpus, heads, so);

  Resumed done;
  if (opt.resume) done = find_resumable(opt.out, run, events);
  else if (!res.paths.stream && fs::exists(ScoreWriter::partial_path(opt.out)))
    events.warn(ScoreWriter::partial_path(opt.out) + " from an earlier run is replaced (" + option_name("resume") + " would continue it)");
  events.info("scoring " + opt.data + " with " + c.architecture_name + " on " +
              (m.layer_devices.empty() ? m.device.str() : devices_string(m.layer_devices) + " (layers split)") + " in " +
              dtype_name(m.dtype) + ", heads " + heads.set.to_string() + ", template " + corpus.tmpl.name +
              (m.device.is_cpu() ? ", " + std::to_string(at::get_num_threads()) + " threads (" +
                                       std::to_string(available_cpus()) + " CPUs in this process's affinity)"
                                 : ""));
  Counts counts;
  const CorpusStats st = score_corpus(opt, corpus, scorer, run, done, counts, events, t0);

  write_rejects(res.paths.rejects, opt.data, st.rejects, events);
  CorpusStats whole = st;  // the summary counts the records resumed too
  whole.samples += counts.resumed_scored;
  whole.single_step += counts.single_step;
  report_corpus_summary(whole, opt.corpus, opt.data, events);
  res.seconds = since(t0);
  res.meta = run_meta(run, st, counts, done, res.seconds);
  if (!res.paths.meta.empty()) {
    OutputFile mf(res.paths.meta);
    mf.stream() << dump_json(res.meta, 2) << "\n";
    mf.commit();
  }
  return result(std::move(res), opt, st, counts, done);
}

}  // namespace air
