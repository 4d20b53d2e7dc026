#include "air/select_job.h"

#include "air/chat_template.h"
#include "air/corpus.h"
#include "air/error.h"
#include "air/line_reader.h"
#include "air/output.h"
#include "air/score_output.h"
#include "air/score_record.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>

namespace air {
namespace {

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
  while (in.next_record(line, &too_long)) {
    if (too_long) throw DataError(in.too_long_message());
    const int64_t n = in.line_number();
    out.push_back({n, record_id(line, n, id_field), line, line_hash(line)});
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
ScoreFiles read_scores(const std::vector<std::string>& paths, JobEvents& events) {
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
      if (torn) events.warn(std::string(torn->what()) + " (the last line, incomplete: a run cut short); it is left out");
    } catch (const DataError& e) {
      const std::string what = what_file_is(path);
      if (what.empty()) throw;
      throw OptionError("scores", path + " is " + what + ", not a score file: " + option_name("scores") +
                                      " takes the JSONL a scoring run wrote to its output");
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

// The metas of the score files (a file without one is warned of), checked to come from one run
// unless allow_mixed.
std::vector<std::pair<std::string, nlohmann::json>> read_metas(const SelectJobOptions& opt, JobEvents& events) {
  std::vector<std::pair<std::string, nlohmann::json>> metas;
  for (const std::string& s : opt.scores) {
    const std::string mp = meta_path_of(s);
    if (mp.empty()) {
      const bool partial = s.size() > 8 && s.compare(s.size() - 8, 8, ".partial") == 0;
      events.warn(s + ": no " + (partial ? s + ".json" : s + ".meta.json") +
                  " beside it, so its scoring settings are unknown: records are read with " + option_name("prompt_field") +
                  ", " + option_name("response_fields") + " and " + option_name("id_field") +
                  " as given here and cannot be checked to come from one run");
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
    if (!opt.allow_mixed)
      throw OptionError("allow_mixed", msg + "; pass " + option_name("allow_mixed") + " to select across them anyway");
    events.warn(msg + " (" + option_name("allow_mixed") + ")");
  }
  return metas;
}

Scoring scoring_settings(const SelectJobOptions& opt, JobEvents& events) {
  const std::vector<std::pair<std::string, nlohmann::json>> metas = read_metas(opt, events);
  Scoring sc;
  sc.corpus.id_field = opt.id_field.empty() ? "id" : opt.id_field;
  sc.corpus.prompt_field = opt.prompt_field;
  sc.corpus.response_fields = opt.response_fields;
  sc.tmpl = load_chat_template("plain");
  check_corpus_options(sc.corpus);
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
  auto agree = [&](const char* option, const std::string& given, const std::string& scored) {
    if (given.empty() || given == scored) return;
    throw OptionError(option, option_name(option) + " '" + given + "', but " + metas[0].first + " says the records were scored " +
                     (scored.empty() ? "with none (their layout detected" + (detected.empty() ? "" : ": " + detected) + ")"
                                     : "with '" + scored + "'") +
                     "; leave it out (select reads the records as scoring did)");
  };
  std::string joined, given;
  for (const auto& f : response_fields) joined += (joined.empty() ? "" : ",") + f;
  for (const auto& f : opt.response_fields) given += (given.empty() ? "" : ",") + f;
  agree("prompt_field", opt.prompt_field, str("prompt_field"));
  agree("response_fields", given, joined);
  agree("id_field", opt.id_field, str("id_field").empty() ? "id" : str("id_field"));
  sc.corpus.format = parse_corpus_format(str("format").empty() ? "auto" : str("format"));
  sc.corpus.prompt_field = str("prompt_field");
  sc.corpus.response_fields = response_fields;
  sc.corpus.id_field = str("id_field").empty() ? "id" : str("id_field");
  if (m.contains("template") && m["template"].is_object()) sc.tmpl = template_from_json(m["template"]);
  else if (!str("template").empty() && str("template") != "plain")
    try {
      sc.tmpl = load_chat_template(str("template"), o.value("separator", std::string("\n\n")));
    } catch (const UsageError&) {
      events.warn(metas[0].first + ": template '" + str("template") +
                  "' cannot be loaded here; steps are shown on the response text alone");
    }
  else sc.tmpl = load_chat_template("plain", o.value("separator", std::string("\n\n")));
  return sc;
}

void check_select_options(const SelectJobOptions& opt) {
  if ((opt.top_k > 0) == (opt.top_ratio > 0))
    throw OptionError("top_k", "give exactly one of " + option_name("top_k") + " (> 0) and " + option_name("top_ratio") +
                                   " (in (0, 1])");
  if (opt.top_ratio > 1) throw OptionError("top_ratio", option_name("top_ratio") + " must be in (0, 1]");
  if (opt.scores.empty()) throw OptionError("scores", "no score file given (" + option_name("scores") + ")");
  if (is_stream_output(opt.out) && opt.out == opt.weights_out)
    throw OptionError("weights_out", option_name("out") + " and " + option_name("weights_out") + " are both " + opt.out +
                                         ": give " + option_name("weights_out") + " a file");
  std::vector<NamedPath> inputs{{"corpus (" + option_name("data") + ")", opt.data}};
  for (const auto& s : opt.scores) {
    inputs.push_back({"scores file (" + option_name("scores") + ")", s});
    const std::string meta = meta_path_of(s);  // read to know how the records were scored
    if (!meta.empty()) inputs.push_back({"run description of " + s, meta});
  }
  for (const auto& in : inputs) check_input_file(in);
  check_outputs({{"output (" + option_name("out") + ")", opt.out}, {"weights output (" + option_name("weights_out") + ")", opt.weights_out}}, inputs);
  check_writable(opt.out);
  check_writable(opt.weights_out);
}

// The corpus and its scores, matched: every record scored (or rejected with a reason), matched by
// its line's bytes.
struct Matched {
  std::vector<CorpusLine> lines;
  std::vector<const ScoreEntry*> score_of;  // per line (null: none)
  std::vector<size_t> candidates;           // lines with a finite score
  int64_t errors = 0, missing = 0;
};

Matched match_scores(const SelectJobOptions& opt, const ScoreFiles& scores, const CorpusOptions& co,
                     const std::string& scores_name, JobEvents& events) {
  Matched m;
  m.lines = read_lines(opt.data, co.id_field);
  m.score_of.assign(m.lines.size(), nullptr);
  for (size_t i = 0; i < m.lines.size(); ++i) {
    m.score_of[i] = find_score(scores, m.lines[i]);
    if (!m.score_of[i]) {
      if (m.missing++ < 3)
        events.warn(opt.data + ":" + std::to_string(m.lines[i].line) + ": no score for this record (id '" +
                    m.lines[i].id + "')");
      continue;
    }
    if (!m.score_of[i]->ok) {
      ++m.errors;
      continue;
    }
    m.candidates.push_back(i);
  }
  const int64_t n_lines = static_cast<int64_t>(m.lines.size());
  const int64_t matched = n_lines - m.missing;
  if (matched == 0 && n_lines > 0 && !scores.entries.empty())
    throw DataError(scores_name + " holds no score of any of the " + std::to_string(n_lines) + " records of " + opt.data +
                    " (none has the text of a scored record): the scores belong to another corpus, or it changed since");
  if (m.missing && opt.allow_partial)
    events.warn(std::to_string(m.missing) + " of the " + std::to_string(n_lines) + " records of " + opt.data +
                " have no score and are left out (" + option_name("allow_partial") + ")");
  if (m.missing && !opt.allow_partial)
    throw DataError(scores_name + " does not cover " + opt.data + ": " + std::to_string(m.missing) + " of its " +
                    std::to_string(n_lines) +
                    " records have no score (not scored, or changed since); pass " + option_name("allow_partial") +
                    " to select among the rest");
  if (static_cast<int64_t>(scores.entries.size()) > matched)
    events.info(std::to_string(static_cast<int64_t>(scores.entries.size()) - matched) + " of the " +
                std::to_string(scores.entries.size()) + " scored records are not in " + opt.data +
                " (a subset of the scored corpus is selected from)");
  return m;
}

// The response text as scored, in which the steps' byte offsets lie ("" when it cannot be read).
std::string response_of(const Scoring& scoring, const CorpusLine& cl) {
  try {
    const Rendered r = render(scoring.tmpl, parse_record(cl.raw, cl.line, scoring.corpus).messages);
    return r.text.substr(r.response_begin, r.response_end - r.response_begin);
  } catch (const Error&) {
    return "";
  }
}

// Ranks the candidates by score (ties by input order); with dedupe, keeps the best-ranked record
// of each distinct response (copy heads reward repetition, so duplicates would crowd the top;
// records whose response cannot be read are kept). Returns the duplicates left out.
int64_t rank(Matched& m, const Scoring& scoring, bool dedupe) {
  std::stable_sort(m.candidates.begin(), m.candidates.end(),
                   [&](size_t a, size_t b) { return m.score_of[a]->score > m.score_of[b]->score; });
  if (!dedupe) return 0;
  int64_t duplicates = 0;
  std::set<std::string> seen;
  std::vector<size_t> kept;
  for (size_t i : m.candidates) {
    const std::string response = response_of(scoring, m.lines[i]);
    if (response.empty() || seen.insert(response).second) kept.push_back(i);
    else ++duplicates;
  }
  m.candidates.swap(kept);
  return duplicates;
}

void write_selection(const SelectJobOptions& opt, const Matched& m, std::vector<size_t> chosen) {
  std::vector<int64_t> rank_of(m.lines.size(), 0);
  for (size_t r = 0; r < chosen.size(); ++r) rank_of[chosen[r]] = static_cast<int64_t>(r + 1);
  if (opt.order == SelectOrder::kInput) std::sort(chosen.begin(), chosen.end());
  OutputFile out(opt.out);
  for (size_t i : chosen) {
    const ScoreEntry& e = *m.score_of[i];
    if (!opt.annotate) {
      out.stream() << m.lines[i].raw << "\n";  // byte for byte as in the input
      continue;
    }
    nlohmann::json w = nlohmann::json::array();
    for (const auto& s : e.steps) w.push_back(s["weight"]);
    out.stream() << annotate_record(m.lines[i].raw, e.score, w) << "\n";
  }
  out.commit();
  if (opt.weights_out.empty()) return;
  OutputFile wf(opt.weights_out);
  for (size_t i : chosen) {
    const ScoreEntry& e = *m.score_of[i];
    nlohmann::ordered_json j{{"id", m.lines[i].id}, {"line", m.lines[i].line}, {"rank", rank_of[i]},
                             {"air_score", e.score}, {"steps", e.steps}};
    wf.stream() << j.dump() << "\n";
  }
  wf.commit();
}

// The top records with the step that depends most on the copy heads.
std::vector<ShownRecord> shown_records(const Matched& m, const Scoring& scoring, size_t count) {
  std::vector<ShownRecord> out;
  for (size_t r = 0; r < std::min(count, m.candidates.size()); ++r) {
    const CorpusLine& cl = m.lines[m.candidates[r]];
    const ScoreEntry& e = *m.score_of[m.candidates[r]];
    const std::string response = response_of(scoring, cl);
    ShownRecord s{cl.id, e.score, -1, ""};
    for (const auto& st : e.steps) {
      const size_t b = st["begin"].get<size_t>(), en = st["end"].get<size_t>();
      if (st["weight"].get<double>() > s.step_weight && en <= response.size() && b < en) {
        s.step_weight = st["weight"].get<double>();
        s.step = response.substr(b, en - b);
      }
    }
    while (!s.step.empty() && (s.step.back() == '\n' || s.step.back() == ' ')) s.step.pop_back();
    for (char& ch : s.step)
      if (ch == '\n') ch = ' ';
    s.step = clip_utf8(s.step, 160);
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace

SelectOrder parse_select_order(const std::string& name) {
  if (name == "input") return SelectOrder::kInput;
  if (name == "rank") return SelectOrder::kRank;
  throw OptionError("order", option_name("order") + " '" + name + "': expected input or rank");
}

SelectJobResult run_select_job(const SelectJobOptions& opt, JobEvents& events) {
  check_select_options(opt);
  const ScoreFiles scores = read_scores(opt.scores, events);
  const Scoring scoring = scoring_settings(opt, events);
  std::string scores_name = opt.scores[0];
  for (size_t i = 1; i < opt.scores.size(); ++i) scores_name += ", " + opt.scores[i];
  Matched m = match_scores(opt, scores, scoring.corpus, scores_name, events);
  SelectJobResult res;
  res.duplicates = rank(m, scoring, opt.dedupe);
  if (opt.dedupe)
    events.info(option_name("dedupe") + ": " + std::to_string(res.duplicates) +
                " records repeat a better-ranked response and are left out");
  const int64_t n = static_cast<int64_t>(m.candidates.size());
  if (n == 0)
    throw DataError(scores_name + ": no record of " + opt.data + " has a score (" + std::to_string(m.errors) +
                    " could not be scored, " + std::to_string(m.missing) + " without a score): nothing to select");
  const int64_t k = opt.top_k > 0 ? std::min(opt.top_k, n)
                                  : std::min<int64_t>(n, static_cast<int64_t>(std::ceil(opt.top_ratio * n - 1e-9)));
  write_selection(opt, m, std::vector<size_t>(m.candidates.begin(), m.candidates.begin() + k));
  res.records = static_cast<int64_t>(m.lines.size());
  res.candidates = n;
  res.selected = k;
  res.errors = m.errors;
  res.missing = m.missing;
  res.shown = shown_records(m, scoring, static_cast<size_t>(std::min<int64_t>(k, std::max<int64_t>(opt.show, 0))));
  return res;
}

}  // namespace air
