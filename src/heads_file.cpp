#include "air/heads_file.h"

#include "air/error.h"
#include "air/output.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace air {

void write_heads_file(const std::string& path, const HeadsFileInfo& info, const ProbeResult& r,
                      const HeadSet& selected) {
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
    if (selected.contains(hs.head)) sel.push_back({hs.head.layer, hs.head.head});
  j["selected"] = sel;
  const Separation sep = separation(r, selected);
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

  OutputFile out(path);
  out.stream() << j.dump(2) << "\n";
  out.commit();
}

HeadsFile read_heads_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw DataError(path + ": cannot open heads file");
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {
    throw DataError(path + ": not valid JSON (" + e.what() + ")");
  }
  HeadsFile h;
  if (!j.is_object() || !j.contains("selected") || !j["selected"].is_array())
    throw DataError(path + ": missing array 'selected' (is this a heads file from `air probe`?)");
  std::vector<Head> heads;
  for (const auto& x : j["selected"]) {
    constexpr uint64_t kMaxIndex = 1u << 20;  // far above any model's layers or heads
    if (!x.is_array() || x.size() != 2 || !x[0].is_number_unsigned() || !x[1].is_number_unsigned() ||
        x[0].get<uint64_t>() >= kMaxIndex || x[1].get<uint64_t>() >= kMaxIndex)
      throw DataError(path + ": 'selected' entries must be [layer, head] (non-negative integers), got " + x.dump());
    heads.push_back({x[0].get<int64_t>(), x[1].get<int64_t>()});
  }
  if (heads.empty()) throw DataError(path + ": 'selected' is empty");
  h.selected = HeadSet(heads);
  if (j.contains("model") && j["model"].is_object()) {
    const nlohmann::json& m = j["model"];
    for (const auto& [key, field] : {std::pair{"fingerprint", &h.fingerprint}, std::pair{"path", &h.model_path}}) {
      if (!m.contains(key)) continue;
      if (!m[key].is_string())
        throw DataError(path + ": model." + key + " must be a string, got " + m[key].dump());
      *field = m[key].get<std::string>();
    }
  }
  return h;
}

}  // namespace air
