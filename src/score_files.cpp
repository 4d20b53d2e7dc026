#include "air/score_files.h"

#include "air/error.h"
#include "air/line_reader.h"
#include "air/score_output.h"
#include "air/score_record.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <optional>
#include <sstream>

namespace air {
namespace {

bool is_partial(const std::string& path) {
  return path.size() > 8 && path.compare(path.size() - 8, 8, ".partial") == 0;
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

// Why a record's steps cannot be used as step weights ("" when they can): AIR-METHOD §5 keeps
// each weight in [0.25, 4], and the steps are byte ranges of the response in order.
std::string steps_problem(const std::vector<ScoredStep>& steps) {
  const InfluenceOptions clip;
  size_t end = 0;
  for (size_t k = 0; k < steps.size(); ++k) {
    const ScoredStep& st = steps[k];
    const std::string which = "step " + std::to_string(k + 1) + " of " + std::to_string(steps.size());
    if (!std::isfinite(st.weight) || st.weight < clip.min_weight * (1 - 1e-6) || st.weight > clip.max_weight * (1 + 1e-6)) {
      std::ostringstream w;
      w.precision(17);
      w << st.weight;
      return which + " has weight " + w.str() + ", outside the [0.25, 4] that `air score` writes";
    }
    if (st.end < st.begin || st.begin < end)
      return which + " spans bytes [" + std::to_string(st.begin) + ", " + std::to_string(st.end) +
             "), not after the step before it (which ends at " + std::to_string(end) + ")";
    end = st.end;
  }
  return "";
}

ScoreEntry entry_of(const ScoreRecord& rec) {
  ScoreEntry e;
  e.line = rec.line;
  e.id = rec.id;
  e.hash = rec.line_hash;
  if (!rec.scored()) return e;
  const SampleInfluence& in = rec.influence;
  e.score = in.score;
  e.ok = std::isfinite(e.score);
  e.loss_base = in.loss_base;
  e.loss_ref = in.loss_ref;
  e.entropy = in.entropy;
  e.tokens = in.tokens;
  e.prompt_tokens = rec.prompt_tokens;
  e.truncated = rec.truncated;
  e.steps.reserve(in.steps.size());
  for (const auto& st : in.steps)
    e.steps.push_back({st.step.begin, st.step.end, st.step.token_end - st.step.token_begin, st.score, st.weight});
  e.steps_problem = steps_problem(e.steps);
  return e;
}

std::vector<double> ranks(const std::vector<double>& v) {
  std::vector<size_t> order(v.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
  std::vector<double> r(v.size());
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j + 1 < order.size() && v[order[j + 1]] == v[order[i]]) ++j;
    const double avg = 0.5 * static_cast<double>(i + j) + 1;
    for (size_t k = i; k <= j; ++k) r[order[k]] = avg;
    i = j + 1;
  }
  return r;
}

}  // namespace

bool strip_annotation(const std::string& raw, std::string& before, int64_t& line) {
  const std::string key = "\"air_score\":";
  const size_t at = raw.rfind(key);
  if (at == std::string::npos || raw.size() < 2 || raw.back() != '}') return false;
  nlohmann::ordered_json tail;
  if (json_too_deep(raw)) return false;
  try {
    tail = nlohmann::ordered_json::parse("{" + raw.substr(at, raw.size() - at));
  } catch (const nlohmann::json::exception&) {
    return false;
  }
  if (!tail.is_object() || !tail.contains("air_step_weights") || !tail["air_score"].is_number()) return false;
  for (const auto& [k, v] : tail.items())
    if (k != "air_score" && k != "air_step_weights" && k != "air_line" && k != "air_line_hash") return false;
  std::string b = raw.substr(0, at);
  if (!b.empty() && b.back() == ',') b.pop_back();
  else if (b.empty() || b.back() != '{') return false;
  before = b + "}";
  line = tail.contains("air_line") && tail["air_line"].is_number_integer() ? tail["air_line"].get<int64_t>() : 0;
  return true;
}

std::string score_meta_path(const std::string& scores) {
  namespace fs = std::filesystem;
  if (scores == "-") return "";
  if (fs::exists(scores + ".meta.json")) return scores + ".meta.json";
  if (is_partial(scores) && fs::exists(scores + ".json")) return scores + ".json";
  return "";
}

ScoreFiles read_score_files(const std::vector<std::string>& paths, JobEvents& events) {
  ScoreFiles out;
  out.paths = paths;
  for (const auto& p : paths) out.name += (out.name.empty() ? "" : ", ") + p;
  std::map<std::pair<int64_t, std::string>, std::string> where;  // (line, hash) -> file:line of its record
  for (const std::string& path : paths) {
    try {
      // The last line of a partial output that a kill cut short is left out, as --resume does:
      // a line that does not read is an error only when another line follows it.
      const bool partial = is_partial(path);
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
        ScoreEntry e = entry_of(score_record_from_json(j, at));
        const auto key = std::make_pair(e.line, e.hash);
        const auto [it, fresh] = where.emplace(key, at);
        if (!fresh) {
          const std::string other = it->second.substr(0, it->second.rfind(':'));
          throw DataError(at + ": corpus line " + std::to_string(e.line) + " is scored twice (also at " + it->second + ")" +
                          (other != path ? ": " + other + " and " + path + " are two runs over the same records, not "
                                           "shards of one; to compare runs use `air compare " + other + " " + path +
                                           "`, to select give one run's scores"
                                         : ""));
        }
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

std::vector<std::pair<std::string, nlohmann::json>> read_score_metas(const std::vector<std::string>& paths,
                                                                      bool allow_mixed, JobEvents& events) {
  std::vector<std::pair<std::string, nlohmann::json>> metas;
  for (const std::string& s : paths) {
    const std::string mp = score_meta_path(s);
    if (mp.empty()) {
      events.warn(s + ": no " + (is_partial(s) ? s + ".json" : s + ".meta.json") +
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
    if (!allow_mixed)
      throw OptionError("allow_mixed", msg + "; pass " + option_name("allow_mixed") + " to use them together anyway");
    events.warn(msg + " (" + option_name("allow_mixed") + ")");
  }
  return metas;
}

std::vector<CorpusLine> read_corpus_lines(const std::string& path, const std::string& id_field) {
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

ScoringSettings scoring_settings(const std::vector<std::pair<std::string, nlohmann::json>>& metas,
                                 const RecordFields& given, JobEvents& events) {
  ScoringSettings sc;
  sc.corpus.id_field = given.id_field.empty() ? "id" : given.id_field;
  sc.corpus.prompt_field = given.prompt_field;
  sc.corpus.response_fields = given.response_fields;
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
  auto agree = [&](const char* option, const std::string& value, const std::string& scored) {
    if (value.empty() || value == scored) return;
    throw OptionError(option, option_name(option) + " '" + value + "', but " + metas[0].first + " says the records were scored " +
                                  (scored.empty() ? "with none (their layout detected" + (detected.empty() ? "" : ": " + detected) + ")"
                                                  : "with '" + scored + "'") +
                                  "; leave it out (records are read as scoring read them)");
  };
  std::string joined, asked;
  for (const auto& f : response_fields) joined += (joined.empty() ? "" : ",") + f;
  for (const auto& f : given.response_fields) asked += (asked.empty() ? "" : ",") + f;
  agree("prompt_field", given.prompt_field, str("prompt_field"));
  agree("response_fields", asked, joined);
  agree("id_field", given.id_field, str("id_field").empty() ? "id" : str("id_field"));
  sc.corpus.format = parse_corpus_format(str("format").empty() ? "auto" : str("format"));
  sc.corpus.prompt_field = str("prompt_field");
  sc.corpus.response_fields = response_fields;
  sc.corpus.id_field = str("id_field").empty() ? "id" : str("id_field");
  sc.template_known = true;
  if (m.contains("template") && m["template"].is_object()) sc.tmpl = template_from_json(m["template"]);
  else if (!str("template").empty() && str("template") != "plain")
    try {
      sc.tmpl = load_chat_template(str("template"), o.value("separator", std::string("\n\n")));
    } catch (const UsageError&) {
      sc.template_known = false;
      events.warn(metas[0].first + ": template '" + str("template") +
                  "' cannot be loaded here; steps are shown on the response text alone");
    }
  else sc.tmpl = load_chat_template("plain", o.value("separator", std::string("\n\n")));
  return sc;
}

std::string scored_response(const ScoringSettings& scoring, const CorpusLine& cl) {
  try {
    const Rendered r = render(scoring.tmpl, parse_record(cl.raw, cl.line, scoring.corpus).messages);
    return r.text.substr(r.response_begin, r.response_end - r.response_begin);
  } catch (const Error&) {
    return "";
  }
}

MatchedCorpus match_scores(const std::string& data, const ScoreFiles& scores, const std::string& id_field,
                           bool allow_partial, JobEvents& events, bool by_id) {
  MatchedCorpus m;
  m.lines = read_corpus_lines(data, id_field);
  m.score_of.assign(m.lines.size(), nullptr);
  std::unordered_map<std::string, const ScoreEntry*> of_id;
  if (by_id)
    for (const ScoreEntry& e : scores.entries)
      if (!of_id.emplace(e.id, &e).second)
        throw DataError(scores.name + ": id '" + e.id + "' is scored twice (lines " + std::to_string(of_id[e.id]->line) +
                        " and " + std::to_string(e.line) + "): records cannot be matched by id");
  for (size_t i = 0; i < m.lines.size(); ++i) {
    if (by_id) {
      const auto it = of_id.find(m.lines[i].id);
      m.score_of[i] = it == of_id.end() ? nullptr : it->second;
    } else {
      m.score_of[i] = find_score(scores, m.lines[i]);
    }
    if (!m.score_of[i] && !by_id) {  // a record of `air select --annotate`: matched as it was scored
      std::string before;
      int64_t line = 0;
      if (strip_annotation(m.lines[i].raw, before, line)) {
        CorpusLine as_scored = m.lines[i];
        as_scored.hash = line_hash(before);
        if (line > 0) as_scored.line = line;
        m.score_of[i] = find_score(scores, as_scored);
      }
    }
    if (!m.score_of[i]) {
      if (m.missing++ < 3)
        events.warn(data + ":" + std::to_string(m.lines[i].line) + ": no score for this record (id '" + m.lines[i].id + "')");
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
    throw DataError(scores.name + " holds no score of any of the " + std::to_string(n_lines) + " records of " + data +
                    (by_id ? " (none has the id of a scored record): the scores belong to another corpus"
                           : " (none has the text of a scored record): the scores belong to another corpus, or it changed "
                             "since; a corpus written again (pandas, jq, json.dumps) keeps its ids but not its bytes: "
                             "match by id with " + option_name("match") + " id"));
  if (m.missing && allow_partial)
    events.warn(std::to_string(m.missing) + " of the " + std::to_string(n_lines) + " records of " + data +
                " have no score and are left out");
  if (m.missing && !allow_partial)
    throw DataError(scores.name + " does not cover " + data + ": " + std::to_string(m.missing) + " of its " +
                    std::to_string(n_lines) + " records have no score (not scored, or changed since); pass " +
                    option_name("allow_partial") + " to use the rest");
  if (static_cast<int64_t>(scores.entries.size()) > matched)
    events.info(std::to_string(static_cast<int64_t>(scores.entries.size()) - matched) + " of the " +
                std::to_string(scores.entries.size()) + " scored records are not in " + data +
                " (a subset of the scored corpus is used)");
  return m;
}

double spearman(const std::vector<double>& a, const std::vector<double>& b) {
  const size_t n = std::min(a.size(), b.size());
  if (n < 2) return std::nan("");
  const std::vector<double> ra = ranks(std::vector<double>(a.begin(), a.begin() + n));
  const std::vector<double> rb = ranks(std::vector<double>(b.begin(), b.begin() + n));
  const double mean = 0.5 * static_cast<double>(n + 1);
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < n; ++i) {
    sab += (ra[i] - mean) * (rb[i] - mean);
    saa += (ra[i] - mean) * (ra[i] - mean);
    sbb += (rb[i] - mean) * (rb[i] - mean);
  }
  if (saa == 0 || sbb == 0) return std::nan("");
  return sab / std::sqrt(saa * sbb);
}

std::string clip_utf8(const std::string& s, size_t max_bytes) {
  if (s.size() <= max_bytes) return s;
  size_t end = max_bytes - 3;
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
  return s.substr(0, end) + "...";
}

}  // namespace air
