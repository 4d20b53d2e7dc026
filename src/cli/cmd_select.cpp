// `air select`: the top records by Attention Influence Score, written back verbatim.

#include "air/chat_template.h"
#include "air/corpus.h"
#include "air/score_record.h"
#include "air/score_output.h"
#include "air/error.h"
#include "cli/cli.h"
#include "cli/io.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>

namespace air::cli {
namespace {

struct SelectOptions {
  std::string data;
  std::vector<std::string> scores;  // one file, or the outputs of `air score --shard I/N` runs
  std::string out = "-";
  int64_t top_k = 0;
  double top_ratio = 0;
  std::string order = "input";   // input | rank
  bool annotate = false;
  std::string weights_out;
  bool allow_partial = false;
  bool dedupe = false;           // keep one record per distinct response text (the best ranked)
  std::string id_field;          // empty: as scored (the meta), else "id"
  int64_t show = 0;              // print this many top records with their top step (0 = none)
  bool allow_mixed = false;      // select across score files from runs that differ
  // Record layout, for score files without their meta (else the meta's settings are used).
  std::string prompt_field;
  std::vector<std::string> response_fields;
};

struct CorpusLine {
  int64_t line;
  std::string id;
  std::string raw;
  std::string hash;  // line_hash() as air score computed it
};

struct ScoreEntry {
  int64_t line = 0;  // the corpus line it was scored from
  std::string id;
  std::string hash;  // line_hash of the scored line (empty in files from before it was kept)
  bool ok = false;
  double score = 0;
  nlohmann::json steps;  // [{begin, end, weight}, ...]
};

std::vector<CorpusLine> read_lines(const std::string& path, const std::string& id_field) {
  LineReader in(path);
  std::vector<CorpusLine> out;
  std::string line;
  bool too_long = false;
  while (in.next(line, &too_long)) {
    const int64_t n = in.line_number();
    std::string probe = line;
    if (!probe.empty() && probe.back() == '\r') probe.pop_back();
    if (probe.find_first_not_of(" \t") == std::string::npos) continue;
    if (too_long)
      throw DataError(path + ":" + std::to_string(n) + ": the line is longer than " +
                      std::to_string(kMaxLineBytes >> 20) + " MB");
    out.push_back({n, record_id(probe, n, id_field), line, line_hash(probe)});
  }
  return out;
}

// The run description beside a score file: FILE.meta.json, or the sidecar of FILE.partial.
std::string meta_path_of(const std::string& scores) {
  namespace fs = std::filesystem;
  if (scores == "-") return "";
  if (fs::exists(scores + ".meta.json")) return scores + ".meta.json";
  const std::string partial = ".partial";
  if (scores.size() > partial.size() && scores.compare(scores.size() - partial.size(), partial.size(), partial) == 0 &&
      fs::exists(scores + ".json"))
    return scores + ".json";
  return "";
}

// What a JSON document that is not a score file is, for a message that says so.
std::string what_file_is(const std::string& path) {
  std::ifstream in(path);
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (!j.is_object()) return "";
  if (j.contains("counts") && j.contains("options")) return "the run description (meta) of `air score`";
  if (j.contains("options") && j.contains("model")) return "the description of a partial `air score` output";
  if (j.contains("selected") && j.contains("heads")) return "a heads file of `air probe`";
  return "";
}

// The score records of every file, by corpus line; a line scored twice (in one file or two) is
// an error.
struct ScoreFiles {
  std::vector<ScoreEntry> entries;
  std::map<std::string, std::vector<size_t>> by_hash;  // line_hash -> entries
  std::map<int64_t, size_t> by_line;                    // entries without a hash, by corpus line
};

// The score records of every file. A corpus line scored twice in one file, or in two files of
// one run (its shards), is an error.
ScoreFiles read_scores(const std::vector<std::string>& paths) {
  ScoreFiles out;
  std::map<std::pair<int64_t, std::string>, std::string> where;  // (line, hash) -> file:line of its record
  for (const std::string& path : paths) {
    try {
      // The last line of a partial output that a kill cut short is left out, as --resume does:
      // a line that does not read is an error only when another line follows it.
      const bool partial = path.size() > 8 && path.compare(path.size() - 8, 8, ".partial") == 0;
      std::optional<DataError> torn;
      for_each_line(path, [&](const std::string& line, int64_t n) {
        if (torn) throw *torn;
        const std::string at = path + ":" + std::to_string(n);
        nlohmann::json j;
        try {
          j = parse_json_line(line, at);
        } catch (const DataError& e) {
          if (!partial) throw;
          torn = e;
          return;
        }
        const ScoreRecord rec = score_record_from_json(j, at);
        ScoreEntry e;
        e.line = rec.line;
        e.id = rec.id;
        e.hash = rec.line_hash;
        if (rec.scored()) {
          e.score = rec.influence.score;
          e.ok = std::isfinite(e.score);
          e.steps = nlohmann::json::array();
          for (const auto& st : rec.influence.steps)
            e.steps.push_back({{"begin", st.step.begin}, {"end", st.step.end}, {"weight", st.weight}});
        }
        const auto key = std::make_pair(e.line, e.hash);
        if (!where.emplace(key, at).second)
          throw DataError(at + ": corpus line " + std::to_string(e.line) + " is scored twice (also at " + where[key] + ")");
        const size_t k = out.entries.size();
        if (e.hash.empty()) out.by_line[e.line] = k;
        else out.by_hash[e.hash].push_back(k);
        out.entries.push_back(std::move(e));
      });
      if (torn) spdlog::warn("{} (the last line, incomplete: a run cut short); it is left out", torn->what());
    } catch (const DataError& e) {
      const std::string what = what_file_is(path);
      if (what.empty()) throw;
      throw UsageError(path + " is " + what + ", not a score file: give --scores the JSONL that `air score --out` wrote");
    }
  }
  return out;
}

// The score of a corpus line: the record scored from the same bytes (the same line of the same
// record, wherever it now is: a subset or a reordering of the scored corpus is matched), or,
// for score files without line hashes, the record of the same line and id.
const ScoreEntry* find_score(const ScoreFiles& sf, const CorpusLine& cl) {
  const auto it = sf.by_hash.find(cl.hash);
  if (it != sf.by_hash.end()) {
    for (size_t k : it->second)
      if (sf.entries[k].line == cl.line) return &sf.entries[k];
    return &sf.entries[it->second.front()];
  }
  const auto bl = sf.by_line.find(cl.line);
  if (bl != sf.by_line.end() && sf.entries[bl->second].id == cl.id) return &sf.entries[bl->second];
  return nullptr;
}

// The record with air_score and air_step_weights added. The fields go in front of the closing
// brace, so that everything else stays byte for byte (ids like 1e30 included); a record that
// already has them (selected before) has them replaced.
std::string annotate_record(const std::string& raw, double score, const nlohmann::json& weights) {
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(raw);
  if (j.contains("air_score") || j.contains("air_step_weights")) {
    j["air_score"] = score;
    j["air_step_weights"] = weights;
    return j.dump();
  }
  const size_t close = raw.find_last_of('}');
  return raw.substr(0, close) + (j.empty() ? "" : ",") + "\"air_score\":" + nlohmann::json(score).dump() +
         ",\"air_step_weights\":" + weights.dump() + "}";
}

// At most `max_bytes` of s, cut on a character boundary ("..." marks a cut).
std::string clip_utf8(const std::string& s, size_t max_bytes) {
  if (s.size() <= max_bytes) return s;
  size_t end = max_bytes - 3;
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
  return s.substr(0, end) + "...";
}

// How the records were scored: the layout and template in the score files' metas, which must
// agree with each other (the flags serve score files without one).
struct Scoring {
  CorpusOptions corpus;
  ChatTemplate tmpl;
};

Scoring scoring_settings(const SelectOptions& opt) {
  std::vector<std::pair<std::string, nlohmann::json>> metas;
  for (const std::string& s : opt.scores) {
    const std::string mp = meta_path_of(s);
    if (mp.empty()) {
      const bool partial = s.size() > 8 && s.compare(s.size() - 8, 8, ".partial") == 0;
      spdlog::warn("{}: no {} beside it, so its scoring settings are unknown: records are read with "
                   "--prompt-field/--response-field/--id-field as given here and cannot be checked to come from one run",
                   s, partial ? s + ".json" : s + ".meta.json");
      continue;
    }
    std::ifstream in(mp);
    nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
    if (!j.is_object() || !j.contains("options"))
      throw DataError(mp + ": not the run description of `air score` (no \"options\")");
    metas.emplace_back(mp, std::move(j));
  }
  for (size_t i = 1; i < metas.size(); ++i) {
    const std::string d = run_difference(metas[0].second, metas[i].second, {"shard", "emit_token_scores"});
    if (d.empty()) continue;
    const std::string msg = metas[i].first + " and " + metas[0].first + " come from different scoring runs (" + d +
                            "): their scores are not comparable";
    if (!opt.allow_mixed) throw UsageError(msg + "; pass --allow-mixed to select across them anyway");
    spdlog::warn("{} (--allow-mixed)", msg);
  }
  Scoring sc;
  sc.corpus.id_field = opt.id_field.empty() ? "id" : opt.id_field;
  sc.corpus.prompt_field = opt.prompt_field;
  sc.corpus.response_fields = opt.response_fields;
  sc.tmpl = load_chat_template("plain");
  with_context("--prompt-field/--response-field", [&] { check_corpus_options(sc.corpus); });
  if (metas.empty()) return sc;
  const nlohmann::json& m = metas[0].second;
  const nlohmann::json& o = m["options"];
  auto str = [&](const char* key) { return o.contains(key) && o[key].is_string() ? o[key].get<std::string>() : std::string(); };
  std::vector<std::string> response_fields;
  if (o.contains("response_fields") && o["response_fields"].is_array())
    for (const auto& f : o["response_fields"])
      if (f.is_string()) response_fields.push_back(f.get<std::string>());
  if (!str("response_field").empty()) response_fields = {str("response_field")};  // files of earlier versions
  std::string detected;
  if (m.contains("layouts") && m["layouts"].is_object())
    for (const auto& [layout, n] : m["layouts"].items()) detected += (detected.empty() ? "" : "; ") + layout;
  auto agree = [&](const char* flag, const std::string& given, const std::string& scored) {
    if (given.empty() || given == scored) return;
    throw UsageError(std::string(flag) + " '" + given + "', but " + metas[0].first + " says the records were scored " +
                     (scored.empty() ? "with none (their layout detected" + (detected.empty() ? "" : ": " + detected) + ")"
                                     : "with '" + scored + "'") +
                     "; leave the flag out (select reads the records as scoring did)");
  };
  std::string joined, given;
  for (const auto& f : response_fields) joined += (joined.empty() ? "" : ",") + f;
  for (const auto& f : opt.response_fields) given += (given.empty() ? "" : ",") + f;
  agree("--prompt-field", opt.prompt_field, str("prompt_field"));
  agree("--response-field", given, joined);
  agree("--id-field", opt.id_field, str("id_field").empty() ? "id" : str("id_field"));
  sc.corpus.format = parse_corpus_format(str("format").empty() ? "auto" : str("format"));
  sc.corpus.prompt_field = str("prompt_field");
  sc.corpus.response_fields = response_fields;
  sc.corpus.id_field = str("id_field").empty() ? "id" : str("id_field");
  if (m.contains("template") && m["template"].is_object()) sc.tmpl = template_from_json(m["template"]);
  else if (!str("template").empty() && str("template") != "plain")
    try {
      sc.tmpl = load_chat_template(str("template"), o.value("separator", std::string("\n\n")));
    } catch (const UsageError&) {
      spdlog::warn("{}: template '{}' cannot be loaded here; steps are shown on the response text alone", metas[0].first,
                   str("template"));
    }
  else sc.tmpl = load_chat_template("plain", o.value("separator", std::string("\n\n")));
  return sc;
}

void run_select(const SelectOptions& opt) {
  if ((opt.top_k > 0) == (opt.top_ratio > 0))
    throw UsageError("give exactly one of --top-k K (> 0) and --top-ratio R (in (0, 1])");
  if (opt.top_ratio > 1) throw UsageError("--top-ratio must be in (0, 1]");
  if (opt.order != "input" && opt.order != "rank") throw UsageError("--order must be input or rank");
  if (is_stream_output(opt.out) && opt.out == opt.weights_out)
    throw UsageError("--out and --weights-out are both " + opt.out + ": give --weights-out a file");
  std::vector<NamedPath> inputs{{"corpus (--data)", opt.data}};
  for (const auto& s : opt.scores) inputs.push_back({"scores file (--scores)", s});
  for (const auto& in : inputs) check_input_file(in);
  check_outputs({{"output (--out)", opt.out}, {"weights output (--weights-out)", opt.weights_out}}, inputs);
  check_writable(opt.out);
  check_writable(opt.weights_out);

  const ScoreFiles scores = read_scores(opt.scores);
  const Scoring scoring = scoring_settings(opt);
  const CorpusOptions& co = scoring.corpus;
  const std::vector<CorpusLine> lines = read_lines(opt.data, co.id_field);
  std::string scores_name = opt.scores[0];
  for (size_t i = 1; i < opt.scores.size(); ++i) scores_name += ", " + opt.scores[i];
  // The response text as scored, in which the steps' byte offsets lie.
  auto response_of = [&](const CorpusLine& cl) -> std::string {
    try {
      const std::string raw = !cl.raw.empty() && cl.raw.back() == '\r' ? cl.raw.substr(0, cl.raw.size() - 1) : cl.raw;
      const Rendered r = render(scoring.tmpl, parse_record(raw, cl.line, co).messages);
      return r.text.substr(r.response_begin, r.response_end - r.response_begin);
    } catch (const Error&) {
      return "";
    }
  };

  // Coverage: every record scored (or rejected with a reason), matched by its line's bytes.
  int64_t missing = 0, errors = 0;
  std::vector<size_t> candidates;  // indices into lines
  std::vector<const ScoreEntry*> score_of(lines.size(), nullptr);
  for (size_t i = 0; i < lines.size(); ++i) {
    score_of[i] = find_score(scores, lines[i]);
    if (!score_of[i]) {
      if (missing++ < 3) spdlog::warn("{}:{}: no score for this record (id '{}')", opt.data, lines[i].line, lines[i].id);
      continue;
    }
    if (!score_of[i]->ok) {
      ++errors;
      continue;
    }
    candidates.push_back(i);
  }
  const int64_t matched = static_cast<int64_t>(lines.size()) - missing;
  if (matched == 0 && !lines.empty() && !scores.entries.empty())
    throw DataError(scores_name + " holds no score of any of the " + std::to_string(lines.size()) + " records of " +
                    opt.data + " (none has the text of a scored record): the scores belong to another corpus, or it changed since");
  if (missing && opt.allow_partial)
    spdlog::warn("{} of the {} records of {} have no score and are left out (--allow-partial)", missing, lines.size(),
                 opt.data);
  if (missing && !opt.allow_partial)
    throw DataError(scores_name + " does not cover " + opt.data + ": " + std::to_string(missing) + " of its " +
                    std::to_string(lines.size()) +
                    " records have no score (not scored, or changed since); use --allow-partial to select among the rest");
  if (static_cast<int64_t>(scores.entries.size()) > matched)
    spdlog::info("{} of the {} scored records are not in {} (a subset of the scored corpus is selected from)",
                 static_cast<int64_t>(scores.entries.size()) - matched, scores.entries.size(), opt.data);

  // Rank by score, ties by input order.
  std::stable_sort(candidates.begin(), candidates.end(),
                   [&](size_t a, size_t b) { return score_of[a]->score > score_of[b]->score; });
  // Copy heads reward repetition, so duplicates would crowd the top: keep the best-ranked
  // record of each distinct response (records whose response cannot be read are kept).
  int64_t duplicates = 0;
  if (opt.dedupe) {
    std::set<std::string> seen;
    std::vector<size_t> kept;
    for (size_t i : candidates) {
      const std::string response = response_of(lines[i]);
      if (response.empty() || seen.insert(response).second) kept.push_back(i);
      else ++duplicates;
    }
    candidates.swap(kept);
    spdlog::info("--dedupe: {} records repeat a better-ranked response and are left out", duplicates);
  }
  const int64_t n = static_cast<int64_t>(candidates.size());
  if (n == 0)
    throw DataError(scores_name + ": no record of " + opt.data + " has a score (" + std::to_string(errors) +
                    " could not be scored, " + std::to_string(missing) + " without a score): nothing to select");
  const int64_t k = opt.top_k > 0 ? std::min(opt.top_k, n)
                                  : std::min<int64_t>(n, static_cast<int64_t>(std::ceil(opt.top_ratio * n - 1e-9)));
  std::vector<size_t> chosen(candidates.begin(), candidates.begin() + k);
  std::vector<int64_t> rank_of(lines.size(), 0);
  for (int64_t r = 0; r < k; ++r) rank_of[chosen[r]] = r + 1;
  if (opt.order == "input") std::sort(chosen.begin(), chosen.end());

  OutputFile out(opt.out);
  for (size_t i : chosen) {
    const ScoreEntry& e = *score_of[i];
    if (!opt.annotate) {
      out.stream() << lines[i].raw << "\n";  // byte for byte as in the input
      continue;
    }
    nlohmann::json w = nlohmann::json::array();
    for (const auto& s : e.steps) w.push_back(s["weight"]);
    out.stream() << annotate_record(lines[i].raw, e.score, w) << "\n";
  }
  out.commit();
  if (!opt.weights_out.empty()) {
    OutputFile wf(opt.weights_out);
    for (size_t i : chosen) {
      const ScoreEntry& e = *score_of[i];
      nlohmann::ordered_json j{{"id", lines[i].id}, {"line", lines[i].line}, {"rank", rank_of[i]},
                               {"air_score", e.score}, {"steps", e.steps}};
      wf.stream() << j.dump() << "\n";
    }
    wf.commit();
  }
  if (opt.show > 0) {
    // People-readable: the top records and the step that depends most on the copy heads.
    std::vector<size_t> top(candidates.begin(), candidates.begin() + std::min<int64_t>(k, opt.show));
    std::fprintf(stderr, "top %zu of %lld scored records by air_score:\n", top.size(), static_cast<long long>(n));
    for (size_t r = 0; r < top.size(); ++r) {
      const CorpusLine& cl = lines[top[r]];
      const ScoreEntry& e = *score_of[top[r]];
      const std::string response = response_of(cl);
      std::fprintf(stderr, "%2zu. %-14s air_score %+.4f\n", r + 1, cl.id.c_str(), e.score);
      double best = -1;
      std::string step;
      for (const auto& s : e.steps) {
        const size_t b = s["begin"].get<size_t>(), en = s["end"].get<size_t>();
        if (s["weight"].get<double>() > best && en <= response.size() && b < en) {
          best = s["weight"].get<double>();
          step = response.substr(b, en - b);
        }
      }
      while (!step.empty() && (step.back() == '\n' || step.back() == ' ')) step.pop_back();
      for (char& ch : step)
        if (ch == '\n') ch = ' ';
      step = clip_utf8(step, 160);
      if (!step.empty()) std::fprintf(stderr, "    most influential step (weight %.2f): %s\n", best, step.c_str());
    }
  }
  spdlog::info("selected {} of {} records with a score ({} records in {}, {} not scorable, {} without a score) -> {}",
               k, n, lines.size(), opt.data, errors, missing, opt.out);
}

}  // namespace

void register_select(CLI::App& app) {
  auto opt = std::make_shared<SelectOptions>();
  CLI::App* cmd = app.add_subcommand("select", "Write the top records by Attention Influence Score");
  cmd->add_option("--data", opt->data, "the scored corpus JSONL (or .jsonl.gz; a subset of it is fine)")
      ->required()
      ->group("Input");
  cmd->add_option("--scores", opt->scores,
                  "scores JSONL from `air score` (several: the outputs of its --shard runs)")
      ->required()
      ->group("Input");
  cmd->add_flag("--allow-partial", opt->allow_partial, "select even if the scores do not cover the corpus")
      ->group("Input");
  cmd->add_flag("--allow-mixed", opt->allow_mixed,
                "select across score files whose metas differ in model, heads or scoring options")
      ->group("Input");
  cmd->add_option("--id-field", opt->id_field, "record id field (default: as scored, from the scores' meta; else id)")
      ->group("Input");
  cmd->add_option("--prompt-field", opt->prompt_field,
                  "prompt field, for score files without a meta (default: as scored, from the meta)")
      ->group("Input");
  cmd->add_option("--response-field", opt->response_fields,
                  "response field(s), for score files without a meta (default: as scored, from the meta)")
      ->delimiter(',')
      ->group("Input");
  auto* k = cmd->add_option("--top-k", opt->top_k, "select this many records")->group("Selection");
  auto* r = cmd->add_option("--top-ratio", opt->top_ratio, "select this fraction of the scored records")->group("Selection");
  k->excludes(r);
  cmd->add_flag("--dedupe", opt->dedupe, "keep one record per distinct response text (the best ranked)")
      ->group("Selection");
  cmd->add_option("--order", opt->order, "input or rank")->capture_default_str()->group("Output");
  cmd->add_option("--out", opt->out, "selected records JSONL (- = stdout)")->capture_default_str()->group("Output");
  cmd->add_flag("--annotate", opt->annotate, "add air_score and air_step_weights to each record")->group("Output");
  cmd->add_option("--weights-out", opt->weights_out, "per-record step weights with byte spans (JSONL)")->group("Output");
  cmd->add_option("--show", opt->show, "print the top N records with their most influential step (on stderr)")
      ->group("Output");
  cmd->callback([opt] { run_select(*opt); });
}

}  // namespace air::cli
