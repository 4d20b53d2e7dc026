#include "air/heads_file.h"

#include "air/error.h"
#include "air/line_reader.h"
#include "air/output.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace air {

nlohmann::ordered_json to_json(const HeadsFile& h) {
  const HeadsFileInfo& info = h.info;
  const ProbeResult& r = h.result;
  nlohmann::ordered_json j;
  j["format"] = "air-heads/1";
  j["model"] = {{"path", info.model_path},
                {"architecture", info.architecture},
                {"fingerprint", info.fingerprint},
                {"layers", info.layers},
                {"heads_per_layer", info.heads_per_layer}};
  j["probe"] = {{"kind", probe_kind_name(info.probe.kind)},
                {"source", info.probe_source},
                {"num_items", info.probe.num_items},
                {"seed", info.probe.seed},
                {"span_tokens", info.probe.span_tokens},
                {"all_items", info.probe.all_items},
                {"items_total", r.items_total},
                {"items_counted", r.items_counted},
                {"counted_all_items_as_fallback", r.counted_all}};
  j["selection"] = {{"delta", info.selection.delta},
                    {"num_heads", info.selection.num_heads},
                    {"min_score", info.selection.min_score}};
  // Selected heads in rank order.
  nlohmann::json sel = nlohmann::json::array();
  for (const auto& hs : r.ranked)
    if (h.selected.contains(hs.head)) sel.push_back({hs.head.layer, hs.head.head});
  j["selected"] = sel;
  const Separation sep = separation(r, h.selected);
  j["separation"] = {{"weakest_selected", sep.weakest_selected},
                     {"strongest_unselected", sep.strongest_unselected},
                     {"gap", sep.gap},
                     {"median", sep.median},
                     {"spread", sep.spread},
                     {"z_mean_selected", sep.z_mean_selected},
                     {"z_weakest_selected", sep.z_weakest_selected},
                     {"items_counted", sep.items_counted},
                     {"model_could_do_items", sep.model_could_do_items},
                     {"distinct", sep.distinct}};
  nlohmann::json all = nlohmann::json::array();
  for (size_t i = 0; i < r.ranked.size(); ++i)
    all.push_back({{"rank", i + 1},
                   {"layer", r.ranked[i].head.layer},
                   {"head", r.ranked[i].head.head},
                   {"score", r.ranked[i].score},
                   {"items", r.items_counted}});
  j["heads"] = all;
  return j;
}

HeadsFile heads_file_from_json(const nlohmann::json& j, const std::string& path) {
  HeadsFile h;
  if (!j.is_object() || !j.contains("selected") || !j["selected"].is_array())
    throw DataError(path + ": missing array 'selected' (is this a heads file from `air probe`?)");
  std::vector<Head> heads;
  constexpr uint64_t kMaxIndex = 1u << 20;  // far above any model's layers or heads
  auto index = [&](const nlohmann::json& x) { return x.is_number_unsigned() && x.get<uint64_t>() < kMaxIndex; };
  for (const auto& x : j["selected"]) {
    if (!x.is_array() || x.size() != 2 || !index(x[0]) || !index(x[1]))
      throw DataError(path + ": 'selected' entries must be [layer, head] (non-negative integers), got " + x.dump());
    heads.push_back({x[0].get<int64_t>(), x[1].get<int64_t>()});
  }
  if (heads.empty()) throw DataError(path + ": 'selected' is empty");
  h.selected = HeadSet(heads);
  auto obj = [&](const char* key) { return j.contains(key) && j[key].is_object() ? j[key] : nlohmann::json::object(); };
  const nlohmann::json m = obj("model"), p = obj("probe"), sel = obj("selection");
  for (const auto& [key, field] : {std::pair{"fingerprint", &h.info.fingerprint}, std::pair{"path", &h.info.model_path}}) {
    if (!m.contains(key)) continue;
    if (!m[key].is_string()) throw DataError(path + ": model." + key + " must be a string, got " + m[key].dump());
    *field = m[key].get<std::string>();
  }
  auto str = [](const nlohmann::json& o, const char* key) {
    return o.contains(key) && o[key].is_string() ? o[key].get<std::string>() : std::string();
  };
  auto integer = [](const nlohmann::json& o, const char* key, int64_t fallback) {
    return o.contains(key) && o[key].is_number_integer() ? o[key].get<int64_t>() : fallback;
  };
  auto number = [](const nlohmann::json& o, const char* key, double fallback) {
    return o.contains(key) && o[key].is_number() ? o[key].get<double>() : fallback;
  };
  auto boolean = [](const nlohmann::json& o, const char* key) {
    return o.contains(key) && o[key].is_boolean() && o[key].get<bool>();
  };
  h.info.architecture = str(m, "architecture");
  h.info.layers = integer(m, "layers", 0);
  h.info.heads_per_layer = integer(m, "heads_per_layer", 0);
  h.info.probe_source = str(p, "source");
  try {
    if (!str(p, "kind").empty()) h.info.probe.kind = parse_probe_kind(str(p, "kind"));
  } catch (const UsageError&) {
    throw DataError(path + ": probe.kind '" + str(p, "kind") + "' is not a probe kind");
  }
  h.info.probe.num_items = integer(p, "num_items", h.info.probe.num_items);
  h.info.probe.seed = p.contains("seed") && p["seed"].is_number_unsigned() ? p["seed"].get<uint64_t>() : 0;
  h.info.probe.span_tokens = integer(p, "span_tokens", h.info.probe.span_tokens);
  h.info.probe.all_items = boolean(p, "all_items");
  h.result.items_total = integer(p, "items_total", 0);
  h.result.items_counted = integer(p, "items_counted", 0);
  h.result.counted_all = boolean(p, "counted_all_items_as_fallback");
  h.info.selection.delta = number(sel, "delta", h.info.selection.delta);
  h.info.selection.num_heads = integer(sel, "num_heads", 0);
  h.info.selection.min_score = number(sel, "min_score", -1);
  if (j.contains("heads") && j["heads"].is_array())
    for (const auto& x : j["heads"])
      if (x.is_object() && x.contains("layer") && index(x["layer"]) && x.contains("head") && index(x["head"]))
        h.result.ranked.push_back({{x["layer"].get<int64_t>(), x["head"].get<int64_t>()}, number(x, "score", 0)});
  return h;
}

void write_heads_file(const std::string& path, const HeadsFile& h) {
  OutputFile out(path);
  out.stream() << dump_json(to_json(h), 2) << "\n";
  out.commit();
}

HeadsFile read_heads_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw DataError(path + ": cannot open heads file");
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json j;
  if (json_too_deep(ss.str())) throw DataError(path + ": " + json_too_deep_message());
  try {
    j = nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {
    throw DataError(path + ": not valid JSON (" + e.what() + ")");
  }
  return heads_file_from_json(j, path);
}

}  // namespace air
