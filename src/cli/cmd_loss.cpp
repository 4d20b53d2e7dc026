// `air loss`: per-token next-token losses for token-id sequences, plain or with heads made
// uniform.

#include "air/batching.h"
#include "air/error.h"
#include "air/runtime.h"
#include "cli/cli.h"
#include "cli/io.h"

#include <CLI/CLI.hpp>
#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <cmath>

namespace air::cli {
namespace {

struct LossOptions {
  std::string model;           // model directory
  std::string input;           // JSONL of {"ids": [...]} ("-" = stdin)
  std::string out = "-";       // JSONL of {"per_token_loss": [...]} ("-" = stdout)
  std::string mask_heads;      // "L:H,..." made uniform (empty = plain model)
  int64_t batch_tokens = 8192; // padded tokens per forward batch
  RuntimeOptions runtime;
};

std::vector<int64_t> parse_ids(const std::string& line, const std::string& where,
                               int64_t vocab) {
  const nlohmann::json j = parse_json_line(line, where);
  if (!j.is_object() || !j.contains("ids"))
    throw DataError(where + ": expected an object with field 'ids'");
  const auto& a = j["ids"];
  if (!a.is_array()) throw DataError(where + ": 'ids' must be an array, got " + a.type_name());
  std::vector<int64_t> ids;
  ids.reserve(a.size());
  for (size_t k = 0; k < a.size(); ++k) {
    if (!a[k].is_number_integer() || a[k].get<int64_t>() < 0 || a[k].get<int64_t>() >= vocab)
      throw DataError(where + ": ids[" + std::to_string(k) + "] = " + a[k].dump() +
                      ": expected an integer in [0, " + std::to_string(vocab) + ")");
    ids.push_back(a[k].get<int64_t>());
  }
  return ids;
}

void run_loss(const LossOptions& opt) {
  if (opt.batch_tokens <= 0) throw UsageError("--batch-tokens must be positive");
  check_input_file({"input (--input)", opt.input});
  check_outputs({{"output (--out)", opt.out}}, {{"input (--input)", opt.input}, {"model folder (--model)", opt.model}});
  check_writable(opt.out);
  const LoadedModel m = load_model(opt.model, opt.runtime);
  const ModelConfig& c = m.checkpoint.config();
  const HeadSet heads = HeadSet::parse(opt.mask_heads);
  heads.validate(c.num_hidden_layers, c.num_attention_heads);

  std::vector<std::vector<int64_t>> seqs;
  std::vector<int64_t> line_of;
  for_each_line(opt.input, [&](const std::string& line, int64_t n) {
    seqs.push_back(parse_ids(line, opt.input + ":" + std::to_string(n), c.vocab_size));
    line_of.push_back(n);
  });
  spdlog::info("{} sequences from {}; model {} on {} in {}{}", seqs.size(), opt.input,
               c.architecture_name, m.device.str(), dtype_name(m.dtype),
               heads.empty() ? "" : ", uniform heads " + heads.to_string());

  std::vector<int64_t> lengths;
  for (const auto& s : seqs) lengths.push_back(static_cast<int64_t>(s.size()));
  std::vector<at::Tensor> losses(seqs.size());
  nn::ForwardOptions fwd;
  fwd.uniform_heads = &heads;
  c10::InferenceMode guard;
  for (const auto& rows : plan_batches(lengths, opt.batch_tokens)) {
    std::vector<int64_t> lens;
    for (size_t r : rows) lens.push_back(lengths[r]);
    const auto stats = m.model->next_token_stats(pad_right(seqs, rows), lens, fwd);
    for (size_t b = 0; b < rows.size(); ++b) losses[rows[b]] = stats[b].logprob.neg();
  }

  OutputFile out(opt.out);
  for (size_t i = 0; i < seqs.size(); ++i) {
    const at::Tensor& l = losses[i];
    const float* p = l.data_ptr<float>();
    std::string s = "{\"per_token_loss\":[";
    for (int64_t k = 0; k < l.numel(); ++k) {
      if (!std::isfinite(p[k]))
        throw DataError(opt.input + ":" + std::to_string(line_of[i]) + ": loss at position " +
                        std::to_string(k) + " is not finite");
      if (k) s += ',';
      s += format_float(p[k]);
    }
    s += "]}\n";
    out.stream() << s;
  }
  out.commit();
  spdlog::info("wrote {} lines to {}", seqs.size(), opt.out);
}

}  // namespace

void register_loss(CLI::App& app) {
  auto opt = std::make_shared<LossOptions>();
  CLI::App* cmd = app.add_subcommand(
      "loss", "Per-token next-token losses of token-id sequences, optionally with heads masked");
  cmd->add_option("--model", opt->model, "HuggingFace model directory")->required();
  cmd->add_option("--input", opt->input, "JSONL, one {\"ids\": [...]} a line (- = stdin)")
      ->required();
  cmd->add_option("--out", opt->out, "output JSONL (- = stdout)")->capture_default_str();
  cmd->add_option("--mask-heads", opt->mask_heads,
                  "heads made uniform, LAYER:HEAD,... (0-based query heads)");
  cmd->add_option("--batch-tokens", opt->batch_tokens, "padded tokens per forward batch")
      ->capture_default_str();
  add_runtime_flags(*cmd, opt->runtime);
  cmd->callback([opt] { run_loss(*opt); });
}

}  // namespace air::cli
