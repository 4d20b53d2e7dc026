#include "air/weights_job.h"

#include "air/corpus_setup.h"
#include "air/error.h"
#include "air/output.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <optional>

namespace air {
namespace {

double round5(double v) { return std::round(v * 1e5) / 1e5; }

// The response's texts in a rendering: field, offset from the response's start, size, source.
std::vector<std::array<size_t, 4>> layout(const Rendered& r) {
  std::vector<std::array<size_t, 4>> out;
  for (const auto& p : r.pieces)
    out.push_back({static_cast<size_t>(p.field), p.begin - r.response_begin, p.size, p.source});
  return out;
}

}  // namespace

std::vector<int64_t> response_byte_map(const Rendered& scored, const Rendered& student) {
  std::vector<int64_t> map(student.response_end - student.response_begin, -1);
  for (const auto& sp : student.pieces)
    for (const auto& cp : scored.pieces) {
      if (sp.field != cp.field) continue;
      const size_t lo = std::max(sp.source, cp.source), hi = std::min(sp.source + sp.size, cp.source + cp.size);
      for (size_t x = lo; x < hi; ++x)
        map[sp.begin - student.response_begin + (x - sp.source)] =
            static_cast<int64_t>(cp.begin - scored.response_begin + (x - cp.source));
    }
  return map;
}

std::vector<double> token_weights(const std::vector<std::pair<size_t, size_t>>& spans,
                                  const std::vector<ScoredStep>& steps) {
  std::vector<std::vector<std::pair<size_t, size_t>>> each;
  each.reserve(spans.size());
  for (const auto& s : spans) each.push_back({s});
  return token_weights(each, steps);
}

std::vector<double> token_weights(const std::vector<std::vector<std::pair<size_t, size_t>>>& spans,
                                  const std::vector<ScoredStep>& steps) {
  std::vector<double> w(spans.size(), 1.0);
  for (size_t k = 0; k < spans.size(); ++k) {
    double bytes = 0, sum = 0;
    for (const auto& span : spans[k]) {
      const size_t b = span.first, e = span.second;
      // Steps are in byte order: the first that ends past b, then on while they begin before e.
      auto t = std::partition_point(steps.begin(), steps.end(), [&](const ScoredStep& st) { return st.end <= b; });
      for (; t != steps.end() && t->begin < e; ++t) {
        const size_t lo = std::max(b, t->begin), hi = std::min(e, t->end);
        if (hi <= lo) continue;
        bytes += static_cast<double>(hi - lo);
        sum += static_cast<double>(hi - lo) * t->weight;
      }
    }
    if (bytes > 0) w[k] = sum / bytes;
  }
  double total = 0;
  for (double x : w) total += x;
  if (total > 0)
    for (double& x : w) x *= static_cast<double>(w.size()) / total;
  return w;
}

WeightsJobResult run_weights_job(const WeightsJobOptions& opt, JobEvents& events) {
  if (opt.scores.empty()) throw OptionError("scores", "no score file given (" + option_name("scores") + ")");
  if (opt.tokenizer.empty()) throw OptionError("tokenizer", "no student tokenizer given (" + option_name("tokenizer") + ")");
  if (opt.max_length < 0) throw OptionError("max_length", option_name("max_length") + " must be >= 0 (0: no limit)");
  std::vector<NamedPath> inputs{{"records (" + option_name("data") + ")", opt.data}};
  for (const auto& s : opt.scores) {
    inputs.push_back({"scores file (" + option_name("scores") + ")", s});
    const std::string meta = score_meta_path(s);
    if (!meta.empty()) inputs.push_back({"run description of " + s, meta});
  }
  for (const auto& in : inputs) check_input_file(in);
  CorpusSettings student;
  student.tmpl = opt.tmpl;
  // The student's tokenizer (a folder stands for its files) and template file are inputs too.
  inputs.push_back({"student tokenizer (" + option_name("tokenizer") + ")", opt.tokenizer});
  inputs.push_back({"student chat template (" + option_name("template") + ")", student.template_file()});
  check_outputs({{"output (" + option_name("out") + ")", opt.out}}, inputs);
  check_writable(opt.out);

  student.separator = opt.separator;
  student.max_length = 0;
  const CorpusSetup setup = make_corpus_setup(student, opt.tokenizer);
  for (const auto& w : setup.warnings) events.warn("student: " + w);
  events.info("student: template " + setup.tmpl.name + " (" + setup.template_origin + ")");

  const ScoreFiles scores = read_score_files(opt.scores, events);
  const ScoringSettings scoring = scoring_settings(read_score_metas(opt.scores, opt.allow_mixed, events), opt.fields, events);
  const MatchedCorpus m = match_scores(opt.data, scores, scoring.corpus.id_field, true, events);

  WeightsJobResult res;
  res.records = static_cast<int64_t>(m.lines.size());
  auto skip = [&](const CorpusLine& cl, const std::string& why) {
    if (res.skipped++ < 5) events.warn(opt.data + ":" + std::to_string(cl.line) + " (id '" + cl.id + "'): " + why + "; left out");
  };
  // The response as scored: the steps' byte ranges must fit it. Without the scores' meta the
  // scoring template is not known: the preset whose rendering the steps fit is taken, when all
  // those they fit lay the texts out alike; else the record is left out, saying why.
  bool told_guess = false;
  auto fits = [](const Rendered& r, const ScoreEntry& e) {
    if (e.steps.empty()) return true;
    const size_t size = r.response_end - r.response_begin, end = e.steps.back().end;
    return e.truncated ? end <= size : end == size;
  };
  auto scored_rendering = [&](const Record& rec, const ScoreEntry& e) {
    Rendered r = render(scoring.tmpl, rec.messages);
    if (fits(r, e)) return r;
    const std::string why = "its steps end at byte " + std::to_string(e.steps.back().end) + " of the response, which " +
                            scoring.tmpl.name + " renders in " + std::to_string(r.response_end - r.response_begin) + " bytes";
    if (scoring.template_known) throw DataError(why + " (the record is not the one scored?)");
    std::vector<std::string> fitting;
    std::optional<Rendered> found;
    for (const std::string& name : builtin_templates()) {
      Rendered c = render(load_chat_template(name), rec.messages);
      if (!fits(c, e)) continue;
      fitting.push_back(name);
      if (found && layout(*found) != layout(c))
        throw DataError(why + "; presets that fit lay the reasoning and answer out differently (" + fitting.front() +
                        ", " + name + "): give the scores' meta (FILE.meta.json) that names the template");
      if (!found) found = std::move(c);
    }
    if (!found) throw DataError(why + ", and no preset renders it so: give the scores' meta (FILE.meta.json)");
    if (!told_guess) {
      told_guess = true;
      events.warn(opt.scores.front() + " has no meta naming its template: the step ranges fit the response as " +
                  fitting.front() + " renders it; read so");
    }
    return *found;
  };
  OutputFile out(opt.out);
  for (size_t i = 0; i < m.lines.size(); ++i) {
    const CorpusLine& cl = m.lines[i];
    const ScoreEntry* e = m.score_of[i];
    if (!e) continue;  // warned of by match_scores
    if (!e->ok) {
      skip(cl, "its record was not scored");
      continue;
    }
    if (!e->steps_problem.empty()) {
      skip(cl, "its score record (corpus line " + std::to_string(e->line) + ") has unusable step weights: " + e->steps_problem);
      continue;
    }
    try {
      const Record rec = parse_record(cl.raw, cl.line, scoring.corpus);
      const Rendered scored = scored_rendering(rec, *e);
      Rendered r = render(setup.tmpl, rec.messages);
      // Student bytes to scored bytes, through the reasoning and answer texts themselves.
      const std::vector<int64_t> to_scored = response_byte_map(scored, r);
      if (std::all_of(to_scored.begin(), to_scored.end(), [](int64_t x) { return x < 0; }))
        throw DataError("no text of the scored response is in the student's rendering of it");
      // The end of the turn is trained too (the plain template has none: its separator is not one).
      if (setup.tmpl.name != "plain") r.text += setup.tmpl.assistant.suffix;
      const Encoding enc = setup.tokenizer->encode(r.text, setup.tmpl.add_special_tokens);
      const int64_t n = static_cast<int64_t>(enc.ids.size());
      if (opt.max_length > 0 && n > opt.max_length)
        throw DataError(std::to_string(n) + " student tokens, more than " + option_name("max_length") + " " +
                        std::to_string(opt.max_length));
      // Response tokens: those holding a byte of the response; after them, the turn's end.
      std::vector<int64_t> labels(enc.ids.size(), -100);
      std::vector<double> weights(enc.ids.size(), 0.0);
      std::vector<size_t> resp;
      std::vector<std::vector<std::pair<size_t, size_t>>> spans;  // in the scored response's bytes
      const size_t rb = r.response_begin, re = r.response_end;
      for (size_t k = 0; k < enc.ids.size(); ++k) {
        const auto [b, en] = enc.offsets[k];
        if (en > rb && b < re && k > 0) {
          resp.push_back(k);
          std::vector<std::pair<size_t, size_t>> ranges;
          for (size_t y = std::max(b, rb); y < std::min(en, re); ++y) {
            const int64_t x = to_scored[y - rb];
            if (x < 0) continue;
            if (!ranges.empty() && ranges.back().second == static_cast<size_t>(x)) ++ranges.back().second;
            else ranges.emplace_back(static_cast<size_t>(x), static_cast<size_t>(x) + 1);
          }
          spans.push_back(std::move(ranges));
        } else if (b >= re && !resp.empty()) {
          labels[k] = enc.ids[k];
          weights[k] = 1.0;
        }
      }
      if (resp.empty()) throw DataError("the response has no student tokens");
      const std::vector<double> w = token_weights(spans, e->steps);
      for (size_t j = 0; j < resp.size(); ++j) {
        labels[resp[j]] = enc.ids[resp[j]];
        weights[resp[j]] = w[j];
      }
      nlohmann::json lw = nlohmann::json::array();
      for (double x : weights) lw.push_back(round5(x));
      // The record's id and line as scored (those of the corpus, not of this file's lines).
      nlohmann::ordered_json j{{"id", e->id}, {"line", e->line}};
      if (!e->hash.empty()) j["line_hash"] = e->hash;
      j["input_ids"] = enc.ids;
      j["labels"] = labels;
      j["loss_weights"] = lw;
      out.stream() << j.dump() << "\n";
      ++res.written;
      res.response_tokens += static_cast<int64_t>(resp.size());
    } catch (const Error& err) {
      skip(cl, err.what());
    }
  }
  if (res.skipped > 5) events.warn(std::to_string(res.skipped) + " records left out in all");
  if (res.written == 0)
    throw DataError("no record of " + opt.data + " could be written for the student (" + std::to_string(res.skipped) +
                    " left out, " + std::to_string(m.missing) + " without a score)");
  out.commit();
  return res;
}

}  // namespace air
