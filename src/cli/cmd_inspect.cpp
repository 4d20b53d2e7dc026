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
    const nlohmann::json j = describe_model(m);
    if (opt->json) std::cout << j.dump(2) << "\n";
    else print_text(j);
    std::cout.flush();
  });
}

}  // namespace air::cli
