#include "air/weights_job.h"

#include "air/corpus_setup.h"
#include "air/error.h"
#include "air/output.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

namespace air {
namespace {

// Where the scored response's byte 0 lies in the student's response text: the same text, one
// inside the other (a template that trims, or adds around the content), else none.
bool align(const std::string& scored, const std::string& student, int64_t& shift) {
  if (scored == student) {
    shift = 0;
    return true;
  }
  if (!scored.empty()) {
    const size_t at = student.find(scored);
    if (at != std::string::npos) {
      shift = static_cast<int64_t>(at);
      return true;
    }
  }
  if (!student.empty()) {
    const size_t at = scored.find(student);
    if (at != std::string::npos) {
      shift = -static_cast<int64_t>(at);
      return true;
    }
  }
  return false;
}

double round5(double v) { return std::round(v * 1e5) / 1e5; }

}  // namespace

std::vector<double> token_weights(const std::vector<std::pair<size_t, size_t>>& spans,
                                  const std::vector<ScoredStep>& steps) {
  std::vector<double> w(spans.size(), 1.0);
  size_t s = 0;  // steps and spans are both in byte order
  for (size_t k = 0; k < spans.size(); ++k) {
    const auto [b, e] = spans[k];
    while (s < steps.size() && steps[s].end <= b) ++s;
    double bytes = 0, sum = 0;
    for (size_t t = s; t < steps.size() && steps[t].begin < e; ++t) {
      const size_t lo = std::max(b, steps[t].begin), hi = std::min(e, steps[t].end);
      if (hi <= lo) continue;
      bytes += static_cast<double>(hi - lo);
      sum += static_cast<double>(hi - lo) * steps[t].weight;
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
      const std::string scored = scored_response(scoring, cl);
      Rendered r = render(setup.tmpl, rec.messages);
      const std::string response = r.text.substr(r.response_begin, r.response_end - r.response_begin);
      int64_t shift = 0;
      if (!align(scored, response, shift))
        throw DataError("the student's template renders the response text differently from scoring");
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
      std::vector<std::pair<size_t, size_t>> spans;  // in the scored response's bytes
      const auto rb = static_cast<int64_t>(r.response_begin), re = static_cast<int64_t>(r.response_end);
      for (size_t k = 0; k < enc.ids.size(); ++k) {
        const auto b = static_cast<int64_t>(enc.offsets[k].first), en = static_cast<int64_t>(enc.offsets[k].second);
        if (en > rb && b < re && k > 0) {
          resp.push_back(k);
          const int64_t lo = std::max(b, rb) - rb - shift, hi = std::min(en, re) - rb - shift;
          spans.emplace_back(static_cast<size_t>(std::max<int64_t>(lo, 0)), static_cast<size_t>(std::max<int64_t>(hi, 0)));
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
