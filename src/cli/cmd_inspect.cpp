// `air inspect`: what a checkpoint holds, after full validation.

#include "air/runtime.h"
#include "cli/cli.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <iostream>

namespace air::cli {
namespace {

struct InspectOptions {
  std::string model;       // model directory
  bool json = false;       // machine-readable output
  RuntimeOptions runtime;  // only --threads matters: inspect loads on the CPU in fp32
};

// What sets a family apart, where the checkpoint has it: windowed layers, Gemma's scaling and
// soft-caps, Gemma 3's local RoPE base, the experts.
void print_specifics(const nlohmann::json& j) {
  auto& o = std::cout;
  if (j["sliding_window"].get<int64_t>() > 0) {
    o << "sliding window:  " << j["sliding_window"];
    if (j.contains("window_layers")) {
      o << " on layers";
      for (const auto& l : j["window_layers"]) o << " " << l;
    } else {
      o << " on every layer";
    }
    o << "\n";
  }
  if (j.contains("attention_scale")) o << "attention scale: " << j["attention_scale"] << "\n";
  if (j.contains("attn_logit_softcap") || j.contains("final_logit_softcap"))
    o << "soft-caps:       attention " << (j.contains("attn_logit_softcap") ? j["attn_logit_softcap"].dump() : "none")
      << ", final " << (j.contains("final_logit_softcap") ? j["final_logit_softcap"].dump() : "none") << "\n";
  if (j.contains("embedding_scale")) o << "embeddings:      times " << j["embedding_scale"].get<std::string>() << "\n";
  if (j.contains("rope_local_theta")) o << "local rope:      theta " << j["rope_local_theta"] << " on the sliding-window layers\n";
  if (j.contains("rotary_dim")) o << "rotary dims:     " << j["rotary_dim"] << " of each head\n";
  if (j.contains("experts")) {
    const auto& e = j["experts"];
    o << "experts:         " << e["count"] << " of width " << e["intermediate_size"] << ", top-" << e["per_token"]
      << (e["renormalised"].get<bool>() ? " renormalised" : " not renormalised");
    if (e["shared_expert_intermediate_size"].get<int64_t>() > 0)
      o << ", shared expert of width " << e["shared_expert_intermediate_size"];
    o << "; sparse layers";
    for (const auto& l : e["sparse_layers"]) o << " " << l;
    o << "\n";
  }
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
    << "norms:           " << j["sublayer_norms"].get<std::string>()
    << (j.contains("norm_scale") ? ", scale " + j["norm_scale"].get<std::string>() : std::string())
    << (j["qk_norm"].get<bool>() ? "; q/k norms over " + j["qk_norm_over"].get<std::string>() : std::string()) << "\n"
    << "activation:      " << j["activation"].get<std::string>() << "\n";
  print_specifics(j);
  o << "parameters:      " << j["parameters"] << "\n"
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
    const nlohmann::json j = describe_model(m);
    if (opt->json) std::cout << j.dump(2) << "\n";
    else print_text(j);
    std::cout.flush();
  });
}

}  // namespace air::cli
