// `air select`: the top records by Attention Influence Score, written back verbatim.

#include "air/corpus.h"
#include "air/error.h"
#include "cli/cli.h"
#include "cli/io.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <cmath>
#include <fstream>
#include <map>
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
  std::string id_field = "id";
  int64_t show = 0;              // print this many top records with their top step (0 = none)
  std::string prompt_field, response_field;  // record layout, as given to air score
};

struct CorpusLine {
  int64_t line;
  std::string id;
  std::string raw;
  std::string hash;  // line_hash() as air score computed it
};

struct ScoreEntry {
  std::string id;
  std::string hash;  // line_hash of the scored line (empty in files from before it was kept)
  bool ok = false;
  double score = 0;
  nlohmann::json steps;  // [{begin, end, weight}, ...]
};

std::vector<CorpusLine> read_lines(const std::string& path, const std::string& id_field) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(path + ": cannot open for reading");
  std::vector<CorpusLine> out;
  std::string line;
  int64_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    std::string probe = line;
    if (!probe.empty() && probe.back() == '\r') probe.pop_back();
    if (probe.find_first_not_of(" \t") == std::string::npos) continue;
    out.push_back({n, record_id(probe, n, id_field), line, line_hash(probe)});
  }
  return out;
}

// The score records of every file, by corpus line; a line scored twice (in one file or two) is
// an error.
std::map<int64_t, ScoreEntry> read_scores(const std::vector<std::string>& paths) {
  std::map<int64_t, ScoreEntry> out;
  std::map<int64_t, std::string> where;  // line -> file:line of its record
  for (const std::string& path : paths) {
    for_each_line(path, [&](const std::string& line, int64_t n) {
      const std::string at = path + ":" + std::to_string(n);
      const nlohmann::json j = parse_json_line(line, at);
      if (!j.is_object() || !j.contains("line") || !j["line"].is_number_integer() || !j.contains("id") ||
          !(j.contains("air_score") || j.contains("error")))
        throw DataError(at + ": a score record needs 'id', 'line' and 'air_score' or 'error' (is this `air score` output?)");
      ScoreEntry e;
      e.id = j["id"].is_string() ? j["id"].get<std::string>() : j["id"].dump();
      if (j.contains("line_hash") && j["line_hash"].is_string()) e.hash = j["line_hash"].get<std::string>();
      if (j.contains("air_score") && j["air_score"].is_number()) {
        e.score = j["air_score"].get<double>();
        e.ok = std::isfinite(e.score);
        if (j.contains("steps")) {
          e.steps = nlohmann::json::array();
          for (const auto& s : j["steps"])
            e.steps.push_back({{"begin", s.value("begin", 0)}, {"end", s.value("end", 0)}, {"weight", s.value("weight", 1.0)}});
        }
      }
      const int64_t line_no = j["line"].get<int64_t>();
      if (!out.emplace(line_no, std::move(e)).second)
        throw DataError(at + ": corpus line " + std::to_string(line_no) + " is scored twice (also at " +
                        where[line_no] + ")");
      where[line_no] = at;
    });
  }
  return out;
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

  const std::vector<CorpusLine> lines = read_lines(opt.data, opt.id_field);
  // The record layout, for reading responses (--dedupe, --show).
  CorpusOptions co;
  co.prompt_field = opt.prompt_field;
  co.response_field = opt.response_field;
  co.id_field = opt.id_field;
  const std::map<int64_t, ScoreEntry> scores = read_scores(opt.scores);
  std::string scores_name = opt.scores[0];
  for (size_t i = 1; i < opt.scores.size(); ++i) scores_name += ", " + opt.scores[i];

  // Coverage: every record scored (or rejected with a reason), and under the same id.
  int64_t missing = 0, mismatched = 0, errors = 0;
  std::vector<size_t> candidates;  // indices into lines
  std::map<int64_t, size_t> by_line;
  for (size_t i = 0; i < lines.size(); ++i) by_line[lines[i].line] = i;
  for (const auto& [line_no, e] : scores)
    if (!by_line.count(line_no))
      throw DataError(scores_name + ": scores corpus line " + std::to_string(line_no) + ", which " +
                      opt.data + " does not have: the scores belong to another corpus");
  for (size_t i = 0; i < lines.size(); ++i) {
    auto it = scores.find(lines[i].line);
    if (it == scores.end()) {
      if (missing++ < 3) spdlog::warn("{}:{}: no score", opt.data, lines[i].line);
      continue;
    }
    if (it->second.id != lines[i].id) {
      if (mismatched++ < 3)
        spdlog::warn("{}:{}: id '{}' but the score is for id '{}'", opt.data, lines[i].line,
                     lines[i].id, it->second.id);
      continue;
    }
    if (!it->second.hash.empty() && it->second.hash != lines[i].hash) {
      if (mismatched++ < 3)
        spdlog::warn("{}:{}: id '{}' was scored from other text (the line changed since)", opt.data,
                     lines[i].line, lines[i].id);
      continue;
    }
    if (!it->second.ok) {
      ++errors;
      continue;
    }
    candidates.push_back(i);
  }
  if ((missing || mismatched) && !opt.allow_partial)
    throw DataError(scores_name + " does not cover " + opt.data + ": " + std::to_string(missing) +
                    " records without a score, " + std::to_string(mismatched) +
                    " with another id or changed text (use --allow-partial to select among the rest)");

  // Rank by score, ties by input order.
  std::stable_sort(candidates.begin(), candidates.end(), [&](size_t a, size_t b) {
    return scores.at(lines[a].line).score > scores.at(lines[b].line).score;
  });
  // Copy heads reward repetition, so duplicates would crowd the top: keep the best-ranked
  // record of each distinct response (records whose response cannot be read are kept).
  int64_t duplicates = 0;
  if (opt.dedupe) {
    std::set<std::string> seen;
    std::vector<size_t> kept;
    for (size_t i : candidates) {
      std::string response;
      try {
        response = parse_record(lines[i].raw, lines[i].line, co).messages.back().content;
      } catch (const Error&) {
        kept.push_back(i);
        continue;
      }
      if (seen.insert(response).second) kept.push_back(i);
      else ++duplicates;
    }
    candidates.swap(kept);
    spdlog::info("--dedupe: {} records repeat a better-ranked response and are left out", duplicates);
  }
  const int64_t n = static_cast<int64_t>(candidates.size());
  if (n == 0)
    throw DataError(scores_name + ": no record of " + opt.data + " has a score (" + std::to_string(errors) +
                    " could not be scored, " + std::to_string(missing) + " missing, " +
                    std::to_string(mismatched) + " under another id): nothing to select");
  const int64_t k = opt.top_k > 0 ? std::min(opt.top_k, n)
                                  : std::min<int64_t>(n, static_cast<int64_t>(std::ceil(opt.top_ratio * n - 1e-9)));
  std::vector<size_t> chosen(candidates.begin(), candidates.begin() + k);
  std::vector<int64_t> rank_of(lines.size(), 0);
  for (int64_t r = 0; r < k; ++r) rank_of[chosen[r]] = r + 1;
  if (opt.order == "input") std::sort(chosen.begin(), chosen.end());

  OutputFile out(opt.out);
  for (size_t i : chosen) {
    const ScoreEntry& e = scores.at(lines[i].line);
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
      const ScoreEntry& e = scores.at(lines[i].line);
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
      const ScoreEntry& e = scores.at(cl.line);
      std::string response;
      try {
        response = parse_record(cl.raw, cl.line, co).messages.back().content;
      } catch (const Error&) {
      }
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
  spdlog::info("selected {} of {} scored records ({} records, {} not scorable, {} missing, {} id "
               "mismatches) -> {}",
               k, n, lines.size(), errors, missing, mismatched, opt.out);
}

}  // namespace

void register_select(CLI::App& app) {
  auto opt = std::make_shared<SelectOptions>();
  CLI::App* cmd = app.add_subcommand("select", "Write the top records by Attention Influence Score");
  cmd->add_option("--data", opt->data, "the scored corpus JSONL")->required();
  cmd->add_option("--scores", opt->scores,
                  "scores JSONL from `air score` (several: the outputs of its --shard runs)")
      ->required();
  cmd->add_option("--out", opt->out, "selected records JSONL (- = stdout)")->capture_default_str();
  auto* k = cmd->add_option("--top-k", opt->top_k, "select this many records");
  auto* r = cmd->add_option("--top-ratio", opt->top_ratio, "select this fraction of the scored records");
  k->excludes(r);
  cmd->add_option("--order", opt->order, "input or rank")->capture_default_str();
  cmd->add_flag("--annotate", opt->annotate, "add air_score and air_step_weights to each record");
  cmd->add_option("--weights-out", opt->weights_out, "per-record step weights with byte spans (JSONL)");
  cmd->add_flag("--allow-partial", opt->allow_partial, "select even if the scores do not cover the corpus");
  cmd->add_option("--id-field", opt->id_field, "record id field, as given to air score")->capture_default_str();
  cmd->add_flag("--dedupe", opt->dedupe, "keep one record per distinct response text (the best ranked)");
  cmd->add_option("--show", opt->show, "print the top N records with their most influential step");
  cmd->add_option("--prompt-field", opt->prompt_field, "prompt field, as given to air score (for --show)");
  cmd->add_option("--response-field", opt->response_field, "response field, as given to air score (for --show)");
  cmd->callback([opt] { run_select(*opt); });
}

}  // namespace air::cli
