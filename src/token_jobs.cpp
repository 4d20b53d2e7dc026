#include "air/token_jobs.h"

#include "air/batching.h"
#include "air/error.h"
#include "air/line_reader.h"
#include "air/output.h"
#include "air/tokenizer.h"

#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>

#include <charconv>
#include <cmath>

namespace air {
namespace {

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

}  // namespace

std::string format_float(float v) {
  char buf[32];
  auto res = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, res.ptr);
}

int64_t run_tokenize_job(const TokenizeJobOptions& opt, JobEvents& events) {
  (void)events;
  check_input_file({"input (" + option_name("input") + ")", opt.input});
  check_outputs({{"output (" + option_name("out") + ")", opt.out}}, {{"input (" + option_name("input") + ")", opt.input}, {"tokenizer (" + option_name("tokenizer") + ")", opt.tokenizer}});
  const auto tok = load_tokenizer(opt.tokenizer);
  OutputFile out(opt.out);
  int64_t n = 0;
  for_each_line(opt.input, [&](const std::string& line, int64_t line_no) {
    const std::string where = opt.input + ":" + std::to_string(line_no);
    const nlohmann::json j = parse_json_line(line, where);
    std::string text;
    if (j.is_string()) text = j.get<std::string>();
    else if (j.is_object() && j.contains("text") && j["text"].is_string()) text = j["text"].get<std::string>();
    else throw DataError(where + ": expected a JSON string or an object with a string 'text'");
    const Encoding enc = with_context(where, [&] { return tok->encode(text, opt.special); });
    nlohmann::json o = {{"ids", enc.ids}};
    if (opt.offsets) o["offsets"] = enc.offsets;
    out.stream() << o.dump() << "\n";
    ++n;
  });
  out.commit();
  return n;
}


int64_t run_loss_job(const LossJobOptions& opt, JobEvents& events) {
  if (opt.batch_tokens <= 0) throw OptionError("batch_tokens", option_name("batch_tokens") + " must be positive");
  check_input_file({"input (" + option_name("input") + ")", opt.input});
  check_outputs({{"output (" + option_name("out") + ")", opt.out}}, {{"input (" + option_name("input") + ")", opt.input}, {"model folder (" + option_name("model") + ")", opt.model}});
  check_writable(opt.out);
  const LoadedModel m = load_model(opt.model, opt.runtime);
  for (const auto& note : m.notes) events.warn(note);
  const ModelConfig& c = m.checkpoint.config();
  const HeadSet heads = HeadSet::parse(opt.mask_heads);
  heads.validate(c.num_hidden_layers, c.num_attention_heads);

  std::vector<std::vector<int64_t>> seqs;
  std::vector<int64_t> line_of;
  for_each_line(opt.input, [&](const std::string& line, int64_t n) {
    seqs.push_back(parse_ids(line, opt.input + ":" + std::to_string(n), c.vocab_size));
    line_of.push_back(n);
  });
  events.info(std::to_string(seqs.size()) + " sequences from " + opt.input + "; model " + c.architecture_name + " on " +
              m.device.str() + " in " + dtype_name(m.dtype) + (heads.empty() ? "" : ", uniform heads " + heads.to_string()));

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
  return static_cast<int64_t>(seqs.size());
}

}  // namespace air
