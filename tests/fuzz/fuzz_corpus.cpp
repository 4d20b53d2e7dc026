// A corpus line: parsing in every format, the record id, then rendering, tokenizing (the
// bundled stories260K tokenizer) and cutting into steps.

#include "air/chat_template.h"
#include "air/corpus.h"
#include "air/dataset.h"
#include "air/steps.h"
#include "air/tokenizer.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace air;
  static const auto tok = load_tokenizer(AIR_FUZZ_MODEL_DIR);
  static const ChatTemplate chatml = load_chat_template("chatml");
  static const StepSplitter steps("\\n\\s*\\n", 2);
  const std::string line(reinterpret_cast<const char*>(data), size);
  (void)record_id(line, 7, "id");
  (void)line_hash(line);
  for (const CorpusFormat f : {CorpusFormat::kAuto, CorpusFormat::kMessages, CorpusFormat::kShareGpt,
                               CorpusFormat::kAlpaca, CorpusFormat::kPromptResponse}) {
    fuzz::expect_only_air_errors([&] {
      CorpusOptions opt;
      opt.format = f;
      if (f == CorpusFormat::kPromptResponse) {
        opt.prompt_field = "question";
        opt.response_fields = {"answer", "code[0]"};
      }
      Record r = parse_record(line, 7, opt);
      SampleOptions so;
      so.max_length = 256;
      so.truncate = true;
      (void)prepare_sample(std::move(r), chatml, *tok, steps, so);
    });
  }
  return 0;
}
