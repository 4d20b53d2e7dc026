#include "air/select_job.h"

#include "air/chat_template.h"
#include "air/corpus.h"
#include "air/error.h"
#include "air/line_reader.h"
#include "air/output.h"
#include "air/score_output.h"
#include "air/score_files.h"
#include "air/score_record.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <limits>
#include <numeric>
#include <optional>
#include <set>

namespace air {
namespace {

// The record with air_score, air_step_weights, air_line and air_line_hash (the corpus line it was
// scored from) added. The fields go in front of the closing brace, so that everything else stays
// byte for byte (ids like 1e30 included); a record that already has them (selected before) has
// them replaced.
std::string annotate_record(std::string raw, const ScoreEntry& e, const nlohmann::json& weights) {
  std::string before;
  int64_t line = 0;
  if (strip_annotation(raw, before, line)) raw = before;
  const size_t close = raw.find_last_of('}');
  const bool empty = raw.find_first_not_of(" \t\r\n", raw.find('{') + 1) == close;
  std::string s = raw.substr(0, close) + (empty ? "" : ",") + "\"air_score\":" + nlohmann::json(e.score).dump() +
                  ",\"air_step_weights\":" + weights.dump() + ",\"air_line\":" + std::to_string(e.line);
  if (!e.hash.empty()) s += ",\"air_line_hash\":" + nlohmann::json(e.hash).dump();
  return s + "}";
}

nlohmann::json steps_json(const ScoreEntry& e) {
  nlohmann::json steps = nlohmann::json::array();
  for (const auto& st : e.steps) steps.push_back({{"begin", st.begin}, {"end", st.end}, {"weight", st.weight}});
  return steps;
}

void check_select_options(const SelectJobOptions& opt) {
  if (opt.group_by.find_first_not_of(" \t") == std::string::npos && !opt.group_by.empty())
    throw OptionError("group_by", option_name("group_by") + " needs a field name");
  if ((opt.top_k > 0) == (opt.top_ratio > 0))
    throw OptionError("top_k", "give exactly one of " + option_name("top_k") + " (> 0) and " + option_name("top_ratio") +
                                   " (in (0, 1])");
  if (opt.top_ratio > 1) throw OptionError("top_ratio", option_name("top_ratio") + " must be in (0, 1]");
  if (opt.scores.empty()) throw OptionError("scores", "no score file given (" + option_name("scores") + ")");
  if (opt.min_tokens < 0) throw OptionError("min_tokens", option_name("min_tokens") + " must be >= 0");
  if (opt.max_tokens < 0) throw OptionError("max_tokens", option_name("max_tokens") + " must be >= 0 (0: no limit)");
  if (opt.max_tokens > 0 && opt.max_tokens < opt.min_tokens)
    throw OptionError("max_tokens", option_name("max_tokens") + " " + std::to_string(opt.max_tokens) + " is below " +
                                        option_name("min_tokens") + " " + std::to_string(opt.min_tokens) + ": nothing could pass");
  if (std::isnan(opt.min_score)) throw OptionError("min_score", option_name("min_score") + " must be a number");
  if (is_stream_output(opt.out) && opt.out == opt.weights_out)
    throw OptionError("weights_out", option_name("out") + " and " + option_name("weights_out") + " are both " + opt.out +
                                         ": give " + option_name("weights_out") + " a file");
  std::vector<NamedPath> inputs{{"corpus (" + option_name("data") + ")", opt.data}};
  for (const auto& s : opt.scores) {
    inputs.push_back({"scores file (" + option_name("scores") + ")", s});
    const std::string meta = score_meta_path(s);  // read to know how the records were scored
    if (!meta.empty()) inputs.push_back({"run description of " + s, meta});
  }
  for (const auto& in : inputs) check_input_file(in);
  check_outputs({{"output (" + option_name("out") + ")", opt.out}, {"weights output (" + option_name("weights_out") + ")", opt.weights_out}}, inputs);
  check_writable(opt.out);
  check_writable(opt.weights_out);
}

// Ranks the candidates by score (ties by input order); with dedupe, keeps the best-ranked record
// of each distinct response (copy heads reward repetition, so duplicates would crowd the top;
// records whose response cannot be read are kept). Returns the duplicates left out.
int64_t rank(MatchedCorpus& m, const ScoringSettings& scoring, bool dedupe) {
  std::stable_sort(m.candidates.begin(), m.candidates.end(),
                   [&](size_t a, size_t b) { return m.score_of[a]->score > m.score_of[b]->score; });
  if (!dedupe) return 0;
  int64_t duplicates = 0;
  std::set<std::string> seen;
  std::vector<size_t> kept;
  for (size_t i : m.candidates) {
    const std::string response = scored_response(scoring, m.lines[i]);
    if (response.empty() || seen.insert(response).second) kept.push_back(i);
    else ++duplicates;
  }
  m.candidates.swap(kept);
  return duplicates;
}

// Leaves out the candidates outside the length and score bounds; returns how many.
int64_t apply_filters(MatchedCorpus& m, const SelectJobOptions& opt) {
  std::vector<size_t> kept;
  for (size_t i : m.candidates) {
    const ScoreEntry& e = *m.score_of[i];
    if (e.tokens < opt.min_tokens || (opt.max_tokens > 0 && e.tokens > opt.max_tokens) || e.score < opt.min_score) continue;
    kept.push_back(i);
  }
  const int64_t out = static_cast<int64_t>(m.candidates.size() - kept.size());
  m.candidates.swap(kept);
  return out;
}

// The value of `field` (a dotted path into nested objects) in a record, as JSON (a string keeps
// its quotes, so that "1" and 1 are two groups); none when the record lacks it.
std::optional<std::string> group_of(const std::string& raw, const std::string& field) {
  if (json_too_deep(raw)) return std::nullopt;
  const nlohmann::json j = nlohmann::json::parse(raw, nullptr, false);
  const nlohmann::json* v = &j;
  size_t pos = 0;
  while (true) {
    const size_t dot = field.find('.', pos);
    const std::string key = field.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    if (!v->is_object() || !v->contains(key)) return std::nullopt;
    v = &(*v)[key];
    if (dot == std::string::npos) break;
    pos = dot + 1;
  }
  return v->dump();
}

// A group's name for people: a string value without its quotes.
std::string group_name(const std::string& key) {
  const nlohmann::json j = nlohmann::json::parse(key, nullptr, false);
  return j.is_string() ? j.get<std::string>() : key;
}

// How many of each group's ranked candidates to take so that `k` are taken in all: equal (the
// same number from each group; what a small group cannot give goes to the others) or
// proportional (each group's share k * n_g / n, rounded down). The units left over go one to a
// group: for proportional by the largest remainder, for equal to the groups whose next record
// scores highest (ties to the one whose next record scores highest, too).
std::vector<int64_t> group_quotas(const std::vector<std::vector<size_t>>& groups, const MatchedCorpus& m, int64_t k,
                                  GroupQuota quota) {
  const size_t g = groups.size();
  std::vector<int64_t> q(g, 0);
  std::vector<long double> remainder(g, 0);
  int64_t total = 0;
  for (const auto& grp : groups) total += static_cast<int64_t>(grp.size());
  const int64_t want = std::min(k, total);
  if (quota == GroupQuota::kProportional) {
    for (size_t i = 0; i < g; ++i) {
      const long double exact = static_cast<long double>(want) * static_cast<long double>(groups[i].size()) / total;
      q[i] = static_cast<int64_t>(exact);
      remainder[i] = exact - static_cast<long double>(q[i]);
    }
  } else {
    std::vector<size_t> open(g);
    std::iota(open.begin(), open.end(), 0);
    int64_t rest = want;
    while (!open.empty()) {
      const int64_t share = rest / static_cast<int64_t>(open.size());
      if (share == 0) break;
      std::vector<size_t> still;
      for (size_t i : open) {
        const int64_t take = std::min<int64_t>(share, static_cast<int64_t>(groups[i].size()) - q[i]);
        q[i] += take;
        rest -= take;
        if (q[i] < static_cast<int64_t>(groups[i].size())) still.push_back(i);
      }
      open.swap(still);
    }
  }
  int64_t given = 0;
  for (int64_t x : q) given += x;
  // Fewer units left than groups that can take one: one each, in order.
  std::vector<size_t> order;
  for (size_t i = 0; i < g; ++i)
    if (q[i] < static_cast<int64_t>(groups[i].size())) order.push_back(i);
  auto next_score = [&](size_t i) { return m.score_of[groups[i][q[i]]]->score; };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (remainder[a] != remainder[b]) return remainder[a] > remainder[b];
    return next_score(a) > next_score(b);
  });
  for (size_t j = 0; j < order.size() && given < want; ++j, ++given) ++q[order[j]];
  return q;
}

void write_selection(const SelectJobOptions& opt, const MatchedCorpus& m, std::vector<size_t> chosen, OutputLock out_lock,
                     OutputLock weights_lock) {
  std::vector<int64_t> rank_of(m.lines.size(), 0);
  for (size_t r = 0; r < chosen.size(); ++r) rank_of[chosen[r]] = static_cast<int64_t>(r + 1);
  if (opt.order == SelectOrder::kInput) std::sort(chosen.begin(), chosen.end());
  OutputFile out(opt.out, std::move(out_lock));
  for (size_t i : chosen) {
    const ScoreEntry& e = *m.score_of[i];
    if (!opt.annotate) {
      out.stream() << m.lines[i].raw << "\n";  // byte for byte as in the input
      continue;
    }
    nlohmann::json w = nlohmann::json::array();
    for (const auto& s : e.steps) w.push_back(s.weight);
    out.stream() << annotate_record(m.lines[i].raw, e, w) << "\n";
  }
  out.commit();
  if (opt.weights_out.empty()) return;
  OutputFile wf(opt.weights_out, std::move(weights_lock));
  for (size_t i : chosen) {
    const ScoreEntry& e = *m.score_of[i];
    nlohmann::ordered_json j{{"id", e.id}, {"line", e.line}};
    if (!e.hash.empty()) j["line_hash"] = e.hash;
    j["rank"] = rank_of[i];
    j["air_score"] = e.score;
    j["steps"] = steps_json(e);
    wf.stream() << j.dump() << "\n";
  }
  wf.commit();
}

// The top records with the step that depends most on the copy heads.
std::vector<ShownRecord> shown_records(const MatchedCorpus& m, const std::vector<size_t>& ranked,
                                       const ScoringSettings& scoring, size_t count) {
  std::vector<ShownRecord> out;
  for (size_t r = 0; r < std::min(count, ranked.size()); ++r) {
    const CorpusLine& cl = m.lines[ranked[r]];
    const ScoreEntry& e = *m.score_of[ranked[r]];
    const std::string response = scored_response(scoring, cl);
    ShownRecord s{cl.id, e.score, -1, ""};
    for (const auto& st : e.steps) {
      if (st.weight > s.step_weight && st.end <= response.size() && st.begin < st.end) {
        s.step_weight = st.weight;
        s.step = response.substr(st.begin, st.end - st.begin);
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

// The records to write, best first: the top k overall, or with group_by the top of each group by
// its quota (then ranked together).
std::vector<size_t> choose(const SelectJobOptions& opt, const MatchedCorpus& m, int64_t k, SelectJobResult& res,
                           JobEvents& events) {
  if (opt.group_by.empty()) return std::vector<size_t>(m.candidates.begin(), m.candidates.begin() + k);
  std::map<std::string, std::vector<size_t>> by_group;  // by the value as JSON ("" for none); ranked within each
  int64_t no_field = 0;
  for (size_t i : m.candidates) {
    const std::optional<std::string> key = group_of(m.lines[i].raw, opt.group_by);
    if (!key) ++no_field;
    by_group[key ? *key : ""].push_back(i);
  }
  if (no_field == static_cast<int64_t>(m.candidates.size()))
    throw OptionError("group_by", option_name("group_by") + " '" + opt.group_by + "': no candidate record has this field" +
                                      " (a nested field is written a.b)");
  if (no_field)
    events.warn(std::to_string(no_field) + " candidate records have no field '" + opt.group_by +
                "' (" + option_name("group_by") + "): they form the group (missing)");
  std::vector<std::vector<size_t>> groups;
  for (auto& [name, rows] : by_group) groups.push_back(rows);
  const std::vector<int64_t> q = group_quotas(groups, m, k, opt.per_group);
  std::vector<size_t> chosen;
  size_t g = 0;
  for (const auto& [name, rows] : by_group) {
    res.groups.push_back({name.empty() ? "(missing)" : group_name(name), static_cast<int64_t>(rows.size()), q[g]});
    chosen.insert(chosen.end(), rows.begin(), rows.begin() + q[g]);
    ++g;
  }
  std::vector<size_t> order(m.lines.size(), 0);
  for (size_t r = 0; r < m.candidates.size(); ++r) order[m.candidates[r]] = r;
  std::sort(chosen.begin(), chosen.end(), [&](size_t a, size_t b) { return order[a] < order[b]; });
  return chosen;
}

}  // namespace

SelectOrder parse_select_order(const std::string& name) {
  if (name == "input") return SelectOrder::kInput;
  if (name == "rank") return SelectOrder::kRank;
  throw OptionError("order", option_name("order") + " '" + name + "': expected input or rank");
}

GroupQuota parse_group_quota(const std::string& name) {
  if (name == "equal") return GroupQuota::kEqual;
  if (name == "proportional") return GroupQuota::kProportional;
  throw OptionError("per_group", option_name("per_group") + " '" + name + "': expected equal or proportional");
}

SelectJobResult run_select_job(const SelectJobOptions& opt, JobEvents& events) {
  check_select_options(opt);
  // Held from the start: a second run on the same output is refused before either writes.
  OutputLock out_lock = OutputLock::for_output(opt.out), weights_lock = OutputLock::for_output(opt.weights_out);
  const ScoreFiles scores = read_score_files(opt.scores, events);
  const ScoringSettings scoring =
      scoring_settings(read_score_metas(opt.scores, opt.allow_mixed, events),
                       RecordFields{opt.id_field, opt.prompt_field, opt.response_fields}, events);
  MatchedCorpus m = match_scores(opt.data, scores, scoring.corpus.id_field, opt.allow_partial, events, opt.match_by_id);
  SelectJobResult res;
  res.filtered = apply_filters(m, opt);
  if (res.filtered)
    events.info(std::to_string(res.filtered) + " scored records are outside the length and score bounds and left out");
  res.duplicates = rank(m, scoring, opt.dedupe);
  if (opt.dedupe)
    events.info(option_name("dedupe") + ": " + std::to_string(res.duplicates) +
                " records repeat a better-ranked response and are left out");
  const int64_t n = static_cast<int64_t>(m.candidates.size());
  if (n == 0)
    throw DataError(scores.name + ": no record of " + opt.data + " is left to select (" + std::to_string(m.errors) +
                    " could not be scored, " + std::to_string(m.missing) + " without a score, " +
                    std::to_string(res.filtered) + " outside the length and score bounds)");
  const int64_t k = opt.top_k > 0 ? std::min(opt.top_k, n)
                                  : std::max<int64_t>(1, std::min<int64_t>(n, static_cast<int64_t>(std::ceil(opt.top_ratio * n - 1e-9))));
  if (opt.top_k > n)
    events.warn(option_name("top_k") + " " + std::to_string(opt.top_k) + " is more than the " + std::to_string(n) +
                " candidate records: all " + std::to_string(n) + " are selected");
  if (opt.top_ratio > 0 && opt.top_ratio * static_cast<double>(n) < 1)
    events.warn(option_name("top_ratio") + " " + nlohmann::json(opt.top_ratio).dump() + " of " + std::to_string(n) +
                " candidate records is less than one record: the best one is selected");
  const std::vector<size_t> chosen = choose(opt, m, k, res, events);
  write_selection(opt, m, chosen, std::move(out_lock), std::move(weights_lock));
  res.records = static_cast<int64_t>(m.lines.size());
  res.candidates = n;
  res.selected = static_cast<int64_t>(chosen.size());
  res.errors = m.errors;
  res.missing = m.missing;
  res.shown = shown_records(m, chosen, scoring, static_cast<size_t>(std::min<int64_t>(res.selected, std::max<int64_t>(opt.show, 0))));
  return res;
}

}  // namespace air
