// `air score`: Attention Influence Scores of every record of a corpus, as JSONL.

#include "air/error.h"
#include "air/heads_file.h"
#include "air/score_record.h"
#include "air/scorer.h"
#include "cli/cli.h"
#include "cli/io.h"
#include "cli/probe_flags.h"
#include "air/score_output.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <variant>

namespace air::cli {
namespace {

struct ScoreCmdOptions {
  std::string model;
  std::string data;
  std::string out;
  std::string heads;              // heads.json (empty = run the default probe first)
  std::string meta;               // run description (empty = OUT.meta.json; none for a stream OUT)
  std::string score = "relative";  // relative | absolute
  int64_t batch_tokens = 8192;
  int64_t window = 1024;          // samples held in memory at once
  double flush_every = 30;        // seconds: completed records reach OUT at least this often
  bool token_scores = false;
  bool allow_heads_mismatch = false;
  bool resume = false;
  std::string shard = "0/1";      // I/N: every N-th record from the I-th
  ProbeFlags probe;
  CorpusFlags corpus;
  RuntimeOptions runtime;
};

// "I/N" -> (I, N), 0 <= I < N.
std::pair<int64_t, int64_t> parse_shard(const std::string& text) {
  int64_t i = -1, n = 0;
  char slash = 0, rest = 0;
  if (std::sscanf(text.c_str(), "%" SCNd64 "%c%" SCNd64 "%c", &i, &slash, &n, &rest) != 3 || slash != '/' ||
      i < 0 || n < 1 || i >= n)
    throw UsageError("--shard '" + text + "': expected I/N with 0 <= I < N, e.g. 0/8");
  return {i, n};
}

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw DataError(path + ": cannot open for reading");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw DataError(path + ": malformed JSON (" + e.what() + ")");
  }
}

// Records an earlier run of the same scoring already wrote (--resume): the whole lines of
// OUT.partial, or of a complete OUT, when its sidecar shows the same model, heads and options.
struct Resumed {
  std::vector<ScoredLine> lines;
  double seconds = 0;                          // wall time of the earlier runs
  nlohmann::json runs = nlohmann::json::array();  // each earlier run: {wall_seconds, records}
  std::uintmax_t bytes = 0;  // where their whole lines end
  std::string from;          // the file they came from
};

Resumed find_resumable(const std::string& out, const nlohmann::ordered_json& run) {
  namespace fs = std::filesystem;
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
    spdlog::info("--resume: neither {} nor {} exists; scoring from the start", partial, out);
    return r;
  }
  if (!fs::exists(sidecar))
    throw UsageError(r.from + ": no " + sidecar + " beside it tells how it was scored; run without --resume to start over");
  const nlohmann::json before = read_json_file(sidecar);
  const std::string diff = run_difference(before, run);
  if (!diff.empty())
    throw UsageError(r.from + " was scored differently (" + diff + "); run without --resume to start over");
  r.lines = read_score_lines(r.from, &r.bytes, [](const std::string& w) { spdlog::warn("{}; it is scored again", w); });
  if (before.contains("wall_seconds") && before["wall_seconds"].is_number()) r.seconds = before["wall_seconds"].get<double>();
  if (before.contains("runs") && before["runs"].is_array()) r.runs = before["runs"];
  spdlog::info("--resume: {} records already scored in {}", r.lines.size(), r.from);
  return r;
}

// Where a run writes: OUT and its sidecars. A stream OUT ("-", a FIFO, a device) has sidecars
// only where a flag names them.
struct ScorePaths {
  bool stream = false;
  std::string heads;    // where the default probe writes (empty: not kept)
  std::string meta;     // the run's description and counts (empty: not written)
  std::string rejects;  // rejected records (empty: not written)
};

ScorePaths score_paths(const ScoreCmdOptions& opt) {
  ScorePaths p;
  p.stream = is_stream_output(opt.out);
  p.heads = p.stream ? "" : opt.out + ".heads.json";
  p.meta = !opt.meta.empty() ? opt.meta : p.stream ? "" : opt.out + ".meta.json";
  p.rejects = !opt.corpus.rejects.empty() ? opt.corpus.rejects : p.stream ? "" : opt.out + ".rejects.jsonl";
  return p;
}

// Every path checked before the model loads: inputs readable, outputs writable, no output over
// an input. Returns the lock that keeps a second run off the same output.
OutputLock check_paths(const ScoreCmdOptions& opt, const ScorePaths& p) {
  check_input_file({"corpus (--data)", opt.data});
  check_input_file({"heads file (--heads)", opt.heads});
  check_input_file({"probe items (--probe-data)", opt.probe.probe_data});
  check_input_file({"probe text (--probe-text)", opt.probe.probe_text});
  std::vector<NamedPath> inputs = {{"model folder (--model)", opt.model},
                                   {"corpus (--data)", opt.data},
                                   {"heads file (--heads)", opt.heads},
                                   {"probe items (--probe-data)", opt.probe.probe_data},
                                   {"probe text (--probe-text)", opt.probe.probe_text},
                                   {"chat template (--template)",
                                    std::filesystem::is_regular_file(opt.corpus.tmpl) ? opt.corpus.tmpl : ""}};
  std::vector<NamedPath> outputs = {{"output (--out)", opt.out},
                                    {"meta file", p.meta},
                                    {"rejects file", p.rejects}};
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

void run_score(const ScoreCmdOptions& given) {
  namespace fs = std::filesystem;
  const auto t0 = std::chrono::steady_clock::now();
  if (given.out.empty()) throw UsageError("--out is empty: give a file, or - for stdout");
  ScoreCmdOptions opt = given;
  opt.out = output_target(given.out);  // a symbolic link stays; its target and sidecars are written
  if (opt.window < 1) throw UsageError("--window must be >= 1");
  if (!(opt.flush_every > 0) || opt.flush_every > 86400)
    throw UsageError("--flush-every must be in (0, 86400] seconds");
  const ScorePaths paths = score_paths(opt);
  if (opt.resume && paths.stream)
    throw UsageError("--resume needs --out FILE, a regular file (it continues FILE.partial)");
  const auto [shard_index, shard_count] = parse_shard(opt.shard);
  if (!opt.heads.empty() && !given_probe_flags(opt.probe).empty())
    throw UsageError(given_probe_flags(opt.probe) + ": probe settings, but --heads " + opt.heads +
                     " gives the heads, so no probe runs; leave them out, or leave out --heads to probe with them");
  const OutputLock lock = check_paths(opt, paths);
  const LoadedModel m = load_model(opt.model, opt.runtime);
  const ModelConfig& c = m.checkpoint.config();
  const CorpusSetup corpus = make_corpus_setup(opt.corpus, opt.model);
  check_tokenizer_fits(*corpus.tokenizer, c.vocab_size, opt.model);
  DatasetOptions dopt = corpus.options;
  dopt.shard_index = shard_index;
  dopt.shard_count = shard_count;

  std::string heads_path = opt.heads;
  HeadSet heads;
  const std::string& own_heads = paths.heads;
  const bool probe = heads_path.empty() && !(opt.resume && fs::exists(own_heads));
  if (probe) {
    if (opt.data == "-" && opt.probe.probe_text.empty() && opt.probe.probe_data.empty())
      throw UsageError("--data - (stdin) can be read only once: give --heads, or --probe-text for the probe");
    heads_path = own_heads;
    spdlog::info("no --heads: running the {} probe first", opt.probe.kind);
    if (dopt.shard_count > 1)
      spdlog::warn("--shard without --heads: every shard probes the same way; `air probe` once and --heads saves that");
    heads = probe_and_write(m, opt.probe, corpus, opt.data, heads_path);
  } else {
    if (heads_path.empty()) {  // --resume: the heads the earlier run probed, if probed alike
      heads_path = own_heads;
      const std::string diff = probe_settings_difference(opt.probe, read_json_file(own_heads));
      if (!diff.empty())
        throw UsageError(own_heads + " was probed differently (" + diff +
                         "); run without --resume to start over, or pass --heads");
      spdlog::info("--resume: using the heads the earlier run probed, {}", heads_path);
    }
    const HeadsFile hf = read_heads_file(heads_path);
    heads = hf.selected;
    const std::string fp = m.checkpoint.fingerprint();
    if (hf.info.fingerprint.empty())
      spdlog::warn("{} names no model fingerprint: it cannot be checked to belong to this model", heads_path);
    if (!hf.info.fingerprint.empty() && hf.info.fingerprint != fp) {
      const std::string msg = heads_path + " was probed on model " + hf.info.fingerprint + " (" +
                              hf.info.model_path + "), not on this one (" + fp + ")";
      if (!opt.allow_heads_mismatch) throw UsageError(msg + "; pass --allow-heads-mismatch to use it anyway");
      spdlog::warn("{}", msg);
    }
  }
  heads.validate(c.num_hidden_layers, c.num_attention_heads);

  ScoreOptions so;
  if (opt.score == "relative") so.influence.mode = ScoreMode::kRelative;
  else if (opt.score == "absolute") so.influence.mode = ScoreMode::kAbsolute;
  else throw UsageError("--score '" + opt.score + "': expected relative or absolute");
  so.batch_tokens = opt.batch_tokens;
  so.token_scores = opt.token_scores;
  so.max_memory = m.memory_budget;
  const Scorer scorer(m.model, heads, so);

  // What the scores depend on: the sidecar of the output, partial and complete.
  nlohmann::ordered_json run;
  run["tool"] = "air";
  run["version"] = AIR_VERSION;
  run["data"] = opt.data;
  run["model"] = {{"path", opt.model}, {"architecture", c.architecture_name},
                  {"fingerprint", m.checkpoint.fingerprint()}};
  run["heads"] = {{"file", heads_path}, {"selected", heads.to_string()}};
  run["options"] = {{"score", opt.score},
                    {"dtype", dtype_name(m.dtype)},
                    {"device", m.device.str()},
                    {"template", corpus.tmpl.name},
                    {"separator", opt.corpus.separator},
                    {"format", opt.corpus.format},
                    {"prompt_field", opt.corpus.prompt_field},
                    {"response_fields", opt.corpus.response_fields},
                    {"id_field", opt.corpus.id_field},
                    {"step_delimiter", opt.corpus.step_delimiter},
                    {"min_step_tokens", opt.corpus.min_step_tokens},
                    {"max_length", corpus.options.sample.max_length},
                    {"truncate", opt.corpus.truncate},
                    {"emit_token_scores", opt.token_scores},
                    {"shard", std::to_string(dopt.shard_index) + "/" + std::to_string(dopt.shard_count)},
                    {"eps", so.influence.eps},
                    {"batch_tokens", opt.batch_tokens}};
  run["template"] = template_to_json(corpus.tmpl);
  run["template"]["origin"] = corpus.template_origin;

  Resumed done;
  if (opt.resume) {
    done = find_resumable(opt.out, run);
  } else if (!paths.stream && fs::exists(ScoreWriter::partial_path(opt.out))) {
    spdlog::warn("{} from an earlier run is replaced (--resume would continue it)",
                 ScoreWriter::partial_path(opt.out));
  }
  spdlog::info("scoring {} with {} on {} in {}, heads {}, template {}", opt.data, c.architecture_name,
               m.device.str(), dtype_name(m.dtype), heads.to_string(), corpus.tmpl.name);

  // Records already scored are checked against the corpus (same line, same id) and skipped.
  int64_t scored = 0, errors = 0, tokens = 0, single_step_before = 0;
  size_t next_done = 0;
  auto already_done = [&](int64_t line, const std::string& id, const std::string& hash) {
    if (next_done >= done.lines.size()) return false;
    const ScoredLine& d = done.lines[next_done];
    if (d.line != line || d.id != id)
      throw DataError(done.from + ": its record " + std::to_string(next_done + 1) + " is line " +
                      std::to_string(d.line) + " id '" + d.id + "', but " + opt.data + " has line " +
                      std::to_string(line) + " id '" + id +
                      "' there: the corpus changed since; run without --resume to start over");
    if (!d.hash.empty() && d.hash != hash)
      throw DataError(done.from + ": the record of line " + std::to_string(line) + " id '" + id +
                      "' was scored from other text (line hash " + d.hash + ", now " + hash + ") in " +
                      opt.data + ": the corpus changed since; run without --resume to start over");
    ++next_done;
    if (d.error) ++errors;
    else if (!d.rejected) {
      ++scored;
      tokens += d.tokens;
      single_step_before += d.single_step;
    }
    return true;
  };

  // Records already scored are passed over before they are rendered and tokenized (rejected
  // ones go through, so that the rejects file stays whole).
  int64_t truncated_before = 0;
  if (!done.lines.empty())
    dopt.skip = [&](const Record& r) {
      if (next_done >= done.lines.size() || done.lines[next_done].rejected) return false;
      truncated_before += done.lines[next_done].truncated;
      return already_done(r.line, r.id, r.hash);
    };

  // Records in input order: samples to score, or rejects written as error lines.
  using Entry = std::variant<Sample, Reject>;
  // A window of records is scored and written when it holds --window records, or as many
  // tokens as the scorer gets through in --flush-every seconds (one batch until it is measured),
  // or when --flush-every seconds have passed since the last write: long records reach OUT
  // batch by batch, and a run cut short loses at most that much.
  std::vector<Entry> window;
  int64_t samples_in_window = 0, tokens_in_window = 0, run_tokens = 0;  // tokens through the model in this run
  double scoring_seconds = 0;  // time in scorer.score, for the rate
  int64_t window_token_limit = std::max<int64_t>(opt.batch_tokens, 1);
  using Clock = std::chrono::steady_clock;
  const auto t_scoring = Clock::now();
  auto last_flush = t_scoring;
  const double previous_seconds = done.seconds;
  auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  ScoreWriter out(opt.out, run, done.from, done.bytes);
  out.on_kept = [](const std::string& partial) {
    spdlog::warn("the records scored so far are kept in {}: the same command with --resume continues", partial);
  };
  int64_t written = 0;  // records written in this run
  out.set_time(previous_seconds, done.runs,
               [&] { return nlohmann::json{{"wall_seconds", elapsed()}, {"records", written}}; });
  auto flush = [&] {
    if (window.empty()) return;
    std::vector<const Sample*> batch;
    for (const auto& e : window)
      if (auto* s = std::get_if<Sample>(&e)) batch.push_back(s);
    for (const Sample* b : batch) run_tokens += static_cast<int64_t>(b->ids.size());
    const auto t_batch = Clock::now();
    const std::vector<ScoreResult> results = scorer.score(batch);
    scoring_seconds += std::chrono::duration<double>(Clock::now() - t_batch).count();
    if (scoring_seconds > 0)
      window_token_limit = std::max<int64_t>(
          opt.batch_tokens, static_cast<int64_t>(static_cast<double>(run_tokens) / scoring_seconds * opt.flush_every));
    size_t k = 0;
    for (const auto& e : window) {
      if (const auto* s = std::get_if<Sample>(&e)) {
        const ScoreResult& r = results[k++];
        if (r.error.empty()) {
          ++scored;
          tokens += r.influence.tokens;
        } else {
          ++errors;
          spdlog::warn("{}:{}: {}", opt.data, s->record.line, r.error);
        }
        out.stream() << to_json(score_record(*s, r)).dump() << "\n";
        ++written;
      } else {
        out.stream() << to_json(rejected_record(std::get<Reject>(e))).dump() << "\n";
        ++written;
      }
    }
    out.flush();
    window.clear();
    samples_in_window = 0;
    tokens_in_window = 0;
    last_flush = Clock::now();
    const double secs = std::chrono::duration<double>(last_flush - t_scoring).count();
    spdlog::info("scored {} records ({} response tokens) so far; {:.0f} tokens/s (prompt and response); {:.0f} s",
                 scored, tokens, secs > 0 ? static_cast<double>(run_tokens) / secs : 0.0, secs);
  };
  auto due = [&] {
    return samples_in_window >= opt.window || tokens_in_window >= window_token_limit ||
           std::chrono::duration<double>(Clock::now() - last_flush).count() >= opt.flush_every;
  };
  const CorpusStats st = read_corpus(
      opt.data, corpus.tmpl, *corpus.tokenizer, *corpus.steps, dopt,
      [&](Sample&& s) {
        if (already_done(s.record.line, s.record.id, s.record.hash)) return;
        tokens_in_window += static_cast<int64_t>(s.ids.size());
        ++samples_in_window;
        window.emplace_back(std::move(s));
        if (due()) flush();
      },
      [&](const Reject& r) {
        if (already_done(r.line, r.id, line_hash(r.raw))) return;
        window.emplace_back(r);
        if (due()) flush();
      });
  if (next_done < done.lines.size())
    throw DataError(done.from + " holds a record of line " + std::to_string(done.lines[next_done].line) +
                    " id '" + done.lines[next_done].id + "', which " + opt.data +
                    " does not have: the corpus changed since; run without --resume to start over");
  flush();
  out.commit();

  const std::string& rejects_path = paths.rejects;
  write_rejects(rejects_path, opt.data, st.rejects);
  log_corpus_summary(st, opt.corpus, opt.data);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  nlohmann::ordered_json meta = run;
  meta["counts"] = {{"records", st.lines},
                    {"scored", scored},
                    {"errors", errors},
                    {"skipped", static_cast<int64_t>(st.rejects.size())},
                    {"truncated", st.truncated + truncated_before},
                    {"response_tokens", tokens},
                    {"resumed", static_cast<int64_t>(done.lines.size())},
                    {"single_step", st.single_step + single_step_before}};
  meta["layouts"] = st.layouts;
  if (!st.unused_fields.empty()) meta["unused_fields"] = st.unused_fields;
  meta["wall_seconds"] = previous_seconds + wall;
  nlohmann::json runs = done.runs;
  runs.push_back({{"wall_seconds", wall}, {"records", st.lines - static_cast<int64_t>(done.lines.size())}});
  meta["runs"] = runs;
  if (!paths.meta.empty()) {
    OutputFile mf(paths.meta);
    mf.stream() << meta.dump(2) << "\n";
    mf.commit();
  }
  spdlog::info("{} records: {} scored, {} errors, {} rejected{}, {} truncated{}; {:.1f} s -> {}",
               st.lines, scored, errors, st.rejects.size(),
               st.rejects.empty() || rejects_path.empty() ? "" : " (" + rejects_path + ")", st.truncated + truncated_before,
               done.lines.empty() ? "" : ", " + std::to_string(done.lines.size()) + " of them from " + done.from,
               wall, opt.out);
  if (scored == 0)
    throw DataError(opt.data + ": none of its " + std::to_string(st.lines) + " records was scored (" +
                    std::to_string(errors) + " errors" + (errors ? ", see " + opt.out : "") + "; " +
                    std::to_string(st.rejects.size()) + " rejected" +
                    (st.rejects.empty() || rejects_path.empty() ? "" : ", see " + rejects_path) + ")");
}

}  // namespace

void register_score(CLI::App& app) {
  auto opt = std::make_shared<ScoreCmdOptions>();
  CLI::App* cmd = app.add_subcommand("score", "Attention Influence Scores of a corpus");
  cmd->add_option("--model", opt->model, "HuggingFace model directory")->required()->group("Model");
  cmd->add_option("--data", opt->data, "corpus JSONL, or .jsonl.gz (- = stdin)")->required()->group("Input");
  cmd->add_option("--out", opt->out, "scores JSONL")->required()->group("Output");
  cmd->add_option("--heads", opt->heads, "heads.json from `air probe` (default: probe first)")->group("Probe (without --heads)");
  cmd->add_option("--meta", opt->meta,
                  "run description and counts (default: OUT.meta.json; none when OUT is stdout or a stream)")
      ->group("Output");
  cmd->add_flag("--allow-heads-mismatch", opt->allow_heads_mismatch, "use a heads file probed on another model")
      ->group("Probe (without --heads)");
  cmd->add_option("--score", opt->score, "relative or absolute")->capture_default_str()->group("Scoring");
  cmd->add_option("--batch-tokens", opt->batch_tokens, "padded tokens per forward batch")
      ->capture_default_str()
      ->group("Scoring");
  cmd->add_option("--window", opt->window, "samples held in memory at once")->capture_default_str()->group("Scoring");
  cmd->add_option("--flush-every", opt->flush_every,
                  "seconds: scored records are written (and progress logged) at least this often")
      ->capture_default_str()
      ->group("Output");
  cmd->add_flag("--emit-token-scores", opt->token_scores, "add per-token loss deltas")->group("Output");
  cmd->add_option("--shard", opt->shard,
                  "I/N: score every N-th record from the I-th (0-based), for N processes or GPUs; "
                  "`air select --scores` takes their outputs together")
      ->capture_default_str()
      ->group("Input");
  cmd->add_flag("--resume", opt->resume,
                "continue OUT.partial left by a run cut short (or re-check a complete OUT), "
                "skipping the records it holds")
      ->group("Output");
  add_probe_flags(*cmd, opt->probe);
  add_corpus_flags(*cmd, opt->corpus);
  add_runtime_flags(*cmd, opt->runtime);
  cmd->callback([opt] { run_score(*opt); });
}

}  // namespace air::cli
