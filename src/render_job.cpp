#include "air/render_job.h"

#include "air/error.h"
#include "air/line_reader.h"
#include "air/output.h"

#include <nlohmann/json.hpp>

namespace air {

RenderJobResult run_render_job(const RenderJobOptions& opt, JobEvents& events) {
  RenderJobResult res;
  res.rejects = !opt.rejects.empty() ? opt.rejects : is_stream_output(opt.out) ? std::string() : opt.out + ".rejects.jsonl";
  check_input_file({"corpus (" + option_name("data") + ")", opt.data});
  check_outputs({{"output (" + option_name("out") + ")", opt.out}, {"rejects file", res.rejects}},
                {{"corpus (" + option_name("data") + ")", opt.data},
                 {"tokenizer (" + option_name("model") + ")", opt.tokenizer},
                 {"chat template (" + option_name("template") + ")", opt.corpus.template_file()}});
  check_writable(opt.out);
  check_writable(res.rejects);
  check_jsonl(opt.data);
  CorpusSetup setup = make_corpus_setup(opt.corpus, opt.tokenizer);
  report_corpus_notices(setup, events);
  events.info("template " + setup.tmpl.name + ", tokenizer " + setup.tokenizer->kind());
  OutputFile out(opt.out);
  const CorpusStats st = read_corpus(opt.data, setup.tmpl, *setup.tokenizer, *setup.splitter, setup.options, [&](Sample&& s) {
    nlohmann::json steps = nlohmann::json::array();
    for (const auto& x : s.steps) steps.push_back({{"begin", x.begin}, {"end", x.end}, {"tokens", x.token_end - x.token_begin}});
    nlohmann::json j = {{"id", s.record.id},
                        {"line", s.record.line},
                        {"text", s.rendered.text},
                        {"response_begin", s.rendered.response_begin},
                        {"n_prompt_tokens", s.prompt_tokens},
                        {"n_tokens", s.response_tokens()},
                        {"truncated", s.truncated},
                        {"steps", steps}};
    if (opt.tokens) {
      j["ids"] = s.ids;
      j["offsets"] = s.offsets;
    }
    out.stream() << j.dump() << "\n";
  });
  out.commit();
  write_rejects(res.rejects, opt.data, st.rejects, events);
  report_corpus_summary(st, opt.corpus, opt.data, events);
  res.records = st.lines;
  res.rendered = st.samples;
  res.truncated = st.truncated;
  res.rejected = static_cast<int64_t>(st.rejects.size());
  if (res.rendered == 0)  // as scoring: a run that used no record is an error (its outputs are written)
    throw DataError(opt.data + ": none of its " + std::to_string(res.records) + " records could be rendered (" +
                    std::to_string(res.rejected) + " rejected" +
                    (res.rejected == 0 || res.rejects.empty() ? "" : ", see " + res.rejects) + ")");
  return res;
}

}  // namespace air
