#include "air/score_record.h"

#include "air/error.h"

#include <cmath>

namespace air {

ScoreRecord score_record(const Sample& s, const ScoreResult& result) {
  ScoreRecord r;
  r.id = s.record.id;
  r.line = s.record.line;
  r.line_hash = s.record.hash;
  r.error = result.error;
  if (!r.error.empty()) return r;
  r.influence = result.influence;
  r.prompt_tokens = s.prompt_tokens;
  r.truncated = s.truncated;
  r.token_deltas = result.token_deltas;
  return r;
}

ScoreRecord rejected_record(const Reject& reject) {
  ScoreRecord r;
  r.id = reject.id;
  r.line = reject.line;
  r.line_hash = line_hash(reject.raw);
  r.error = reject.reason;
  r.rejected = true;
  return r;
}

nlohmann::ordered_json to_json(const ScoreRecord& r) {
  nlohmann::ordered_json j;
  j["id"] = r.id;
  j["line"] = r.line;
  j["line_hash"] = r.line_hash;
  if (!r.scored()) {
    j["error"] = r.error;
    if (r.rejected) j["rejected"] = true;
    return j;
  }
  const SampleInfluence& in = r.influence;
  j["air_score"] = in.score;
  j["loss_base"] = in.loss_base;
  j["loss_ref"] = in.loss_ref;
  j["n_tokens"] = in.tokens;
  j["n_prompt_tokens"] = r.prompt_tokens;
  j["truncated"] = r.truncated;
  // The heuristic baselines, under the names selection scripts use.
  j["response_length"] = in.tokens;
  j["mean_base_loss"] = in.loss_base;
  j["mean_base_entropy"] = in.entropy;
  nlohmann::ordered_json steps = nlohmann::ordered_json::array();
  for (const auto& st : in.steps)
    steps.push_back(nlohmann::ordered_json{{"begin", st.step.begin},
                                           {"end", st.step.end},
                                           {"n_tokens", st.step.token_end - st.step.token_begin},
                                           {"loss_base", st.loss_base},
                                           {"loss_ref", st.loss_ref},
                                           {"score", st.score},
                                           {"weight", st.weight}});
  j["steps"] = steps;
  if (!r.token_deltas.empty()) j["token_deltas"] = r.token_deltas;
  return j;
}

ScoreRecord score_record_from_json(const nlohmann::json& j, const std::string& at) {
  if (!j.is_object() || !j.contains("line") || !j["line"].is_number_integer() || !j.contains("id") ||
      !(j.contains("air_score") || j.contains("error")))
    throw DataError(at + ": a score record needs 'id', an integer 'line', and 'air_score' or 'error' "
                         "(is this `air score` output?)");
  auto flag = [&](const char* key) {
    if (!j.contains(key)) return false;
    if (!j[key].is_boolean()) throw DataError(at + ": \"" + key + "\" must be true or false, got " + j[key].dump());
    return j[key].get<bool>();
  };
  auto number = [&](const nlohmann::json& o, const char* key, double fallback) {
    return o.contains(key) && o[key].is_number() ? o[key].get<double>() : fallback;
  };
  ScoreRecord r;
  r.line = j["line"].get<int64_t>();
  r.id = j["id"].is_string() ? j["id"].get<std::string>() : j["id"].dump();
  if (j.contains("line_hash") && j["line_hash"].is_string()) r.line_hash = j["line_hash"].get<std::string>();
  r.rejected = flag("rejected");
  if (j.contains("error")) {
    r.error = j["error"].is_string() ? j["error"].get<std::string>() : j["error"].dump();
    if (r.error.empty()) r.error = "error";
    return r;
  }
  if (j.contains("n_tokens") && !j["n_tokens"].is_number_integer())
    throw DataError(at + ": \"n_tokens\" must be an integer, got " + j["n_tokens"].dump());
  SampleInfluence& in = r.influence;
  // A score that is not a finite number is kept as NaN: such a record is never selected.
  in.score = number(j, "air_score", std::nan(""));
  in.loss_base = number(j, "loss_base", 0);
  in.loss_ref = number(j, "loss_ref", 0);
  in.entropy = number(j, "mean_base_entropy", 0);
  in.tokens = j.contains("n_tokens") ? j["n_tokens"].get<int64_t>() : 0;
  r.prompt_tokens = j.contains("n_prompt_tokens") && j["n_prompt_tokens"].is_number_integer()
                        ? j["n_prompt_tokens"].get<int64_t>() : 0;
  r.truncated = flag("truncated");
  if (j.contains("steps") && j["steps"].is_array()) {
    int64_t token = 0;
    for (const auto& s : j["steps"]) {
      if (!s.is_object()) throw DataError(at + ": a step must be an object, got " + std::string(s.type_name()));
      StepInfluence st;
      st.step.begin = s.contains("begin") && s["begin"].is_number_unsigned() ? s["begin"].get<size_t>() : 0;
      st.step.end = s.contains("end") && s["end"].is_number_unsigned() ? s["end"].get<size_t>() : 0;
      const int64_t n = s.contains("n_tokens") && s["n_tokens"].is_number_integer() ? s["n_tokens"].get<int64_t>() : 0;
      st.step.token_begin = token;
      st.step.token_end = token + n;
      token += n;
      st.loss_base = number(s, "loss_base", 0);
      st.loss_ref = number(s, "loss_ref", 0);
      st.score = number(s, "score", 0);
      st.weight = number(s, "weight", 1.0);
      in.steps.push_back(st);
    }
  }
  if (j.contains("token_deltas") && j["token_deltas"].is_array())
    for (const auto& d : j["token_deltas"]) r.token_deltas.push_back(d.is_number() ? d.get<float>() : std::nanf(""));
  return r;
}

}  // namespace air
