// `air inspect`: what a checkpoint holds, after full validation.

#include "air/runtime.h"
#include "cli/cli.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <iostream>
#include <map>
#include <set>

namespace air::cli {
namespace {

struct InspectOptions {
  std::string model;       // model directory
  bool json = false;       // machine-readable output
  RuntimeOptions runtime;  // only --threads matters: inspect loads on the CPU in fp32
};

std::string rope_string(const RopeScaling& r) {
  switch (r.type) {
    case RopeScaling::Type::kNone: return "none";
    case RopeScaling::Type::kLinear: return "linear";
    case RopeScaling::Type::kLlama3: return "llama3";
  }
  return "?";
}

nlohmann::json describe(const LoadedModel& m) {
  const ModelConfig& c = m.checkpoint.config();
  nlohmann::json j;
  j["path"] = m.checkpoint.dir().string();
  j["architecture"] = c.architecture_name;
  j["model_type"] = c.model_type;
  j["layers"] = c.num_hidden_layers;
  j["heads"] = c.num_attention_heads;
  j["kv_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.head_dim;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["vocab_size"] = c.vocab_size;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rope_theta"] = c.rope_theta;
  j["rope_scaling"] = rope_string(c.rope_scaling);
  j["sliding_window"] = c.sliding_window;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["qkv_bias"] = c.qkv_bias;
  j["qk_norm"] = c.qk_norm;
  j["torch_dtype"] = c.torch_dtype;

  int64_t params = 0;
  std::set<std::string> used;
  for (const auto& p : m.model->named_parameters()) {
    params += p.value().numel();
    used.insert(p.key());
  }
  j["parameters"] = params;
  std::map<std::string, int64_t> dtypes;
  nlohmann::json files = nlohmann::json::array();
  uint64_t total = 0;
  for (const auto& f : m.checkpoint.files()) {
    for (const auto& [name, info] : f.tensors()) dtypes[info.dtype] += 1;
    files.push_back({{"name", f.path().filename().string()},
                     {"bytes", f.file_size()},
                     {"tensors", f.tensors().size()}});
    total += f.file_size();
  }
  j["tensor_dtypes"] = dtypes;
  j["files"] = files;
  j["total_bytes"] = total;
  nlohmann::json unused = nlohmann::json::array();
  for (const auto& name : m.checkpoint.tensor_names())
    if (!used.count(name)) unused.push_back(name);
  j["unused_tensors"] = unused;
  return j;
}

void print_text(const nlohmann::json& j) {
  auto& o = std::cout;
  o << "path:            " << j["path"].get<std::string>() << "\n"
    << "architecture:    " << j["architecture"].get<std::string>() << " ("
    << j["model_type"].get<std::string>() << ")\n"
    << "layers:          " << j["layers"] << "\n"
    << "heads:           " << j["heads"] << " query, " << j["kv_heads"] << " key/value, head_dim "
    << j["head_dim"] << "\n"
    << "hidden:          " << j["hidden_size"] << " (mlp " << j["intermediate_size"] << ")\n"
    << "vocab:           " << j["vocab_size"] << "\n"
    << "positions:       " << j["max_position_embeddings"] << " (rope theta " << j["rope_theta"]
    << ", scaling " << j["rope_scaling"].get<std::string>() << ")\n"
    << "tied embeddings: " << (j["tie_word_embeddings"].get<bool>() ? "yes" : "no") << "\n"
    << "parameters:      " << j["parameters"] << "\n"
    << "tensor dtypes:  ";
  for (const auto& [k, v] : j["tensor_dtypes"].items()) o << " " << k << " x" << v;
  o << "\nfiles:\n";
  for (const auto& f : j["files"])
    o << "  " << f["name"].get<std::string>() << "  " << f["bytes"] << " bytes, " << f["tensors"]
      << " tensors\n";
  if (!j["unused_tensors"].empty())
    o << "unused tensors:  " << j["unused_tensors"].size() << "\n";
}

}  // namespace

void register_inspect(CLI::App& app) {
  auto opt = std::make_shared<InspectOptions>();
  CLI::App* cmd = app.add_subcommand("inspect", "Validate a checkpoint and describe it");
  cmd->add_option("--model", opt->model, "HuggingFace model directory")->required();
  cmd->add_flag("--json", opt->json, "print JSON instead of text");
  cmd->add_option("--threads", opt->runtime.threads, "intra-op CPU threads (0 = all CPUs this process may use)");
  cmd->callback([opt] {
    const LoadedModel m = load_model(opt->model, opt->runtime);
    const nlohmann::json j = describe(m);
    if (opt->json) std::cout << j.dump(2) << "\n";
    else print_text(j);
    std::cout.flush();
  });
}

}  // namespace air::cli
