// What is scored: record layouts of the reasoning-distillation datasets, templates checked
// against the tokenizer, the line reader (gzip, JSON arrays), and how far probed heads stand out.

#include "air/dataset.h"
#include "air/error.h"
#include "air/heads_file.h"
#include "air/line_reader.h"
#include "air/probe.h"
#include "air/score_record.h"
#include "air/steps.h"
#include "test_util.h"

#include <zlib.h>

#include <random>

namespace air::test {
namespace {

using nlohmann::json;

Record parse(const json& j, const CorpusOptions& opt = {}) { return parse_record(j.dump(), 3, opt); }

std::string error_of(const json& j, const CorpusOptions& opt = {}) {
  try {
    parse(j, opt);
  } catch (const DataError& e) {
    return e.what();
  }
  return "";
}

fs::path tok_dir(const std::string& n) { return fs::path(AIR_TEST_DATA_DIR) / "tokenizers" / n; }

class LayoutFileTest : public TempDirTest {};

// Sky-T1 evaluation output: the trace is in `code`, the reference answer a number.
TEST(LayoutTest, SkyT1ScoresTheTraceNotTheReferenceAnswer) {
  const json sky = {{"idx", 0}, {"question", "How far?"}, {"gt_cot", "None"}, {"gt", "27"}, {"answer", 27.0},
                    {"code", {"<|begin_of_thought|>\n\nSo 45 miles...\n\n<|end_of_thought|>"}},
                    {"pred", {"27"}}, {"report", {nullptr}}, {"score", {true}}};
  const Record r = parse(sky);
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[0].content, "How far?");
  EXPECT_EQ(r.messages[1].content, sky["code"][0].get<std::string>());
  EXPECT_NE(r.layout.find("Sky-T1"), std::string::npos) << r.layout;
  EXPECT_TRUE(r.unused.empty());
  // The MATH-500 file has a reference solution longer than some traces: a known field, no warning.
  json math = sky;
  math["solution"] = std::string(500, 's');
  math["answer"] = "27";
  EXPECT_TRUE(parse(math).unused.empty());
}

TEST(LayoutTest, S1kAndS1k11JoinTheThinkingAndTheAttempt) {
  Record r = parse({{"question", "Q"}, {"solution", "ref"}, {"thinking_trajectories", {"think"}}, {"attempt", "final"}});
  EXPECT_EQ(r.messages.back().content, "think\n\nfinal");
  EXPECT_EQ(r.layout.rfind("s1K:", 0), 0u) << r.layout;
  r = parse({{"question", "Q"}, {"solution", "ref"}, {"gemini_thinking_trajectory", "g"}, {"gemini_attempt", "ga"},
             {"deepseek_thinking_trajectory", "long thinking"}, {"deepseek_attempt", "answer"}});
  EXPECT_EQ(r.messages[0].content, "Q");
  EXPECT_EQ(r.messages.back().content, "long thinking\n\nanswer");
  EXPECT_EQ(r.layout.rfind("s1K-1.1:", 0), 0u) << r.layout;
}

// Alternative generations of one prompt are never joined into one response.
TEST(LayoutTest, AlternativeGenerationsAreRefusedOrPicked) {
  const json openr1 = {{"problem", "P"}, {"solution", "S"}, {"answer", "4"},
                       {"generations", {"first try", "second try"}}, {"correctness_math_verify", {true, false}}};
  const std::string e = error_of(openr1);
  EXPECT_NE(e.find("list of 2 texts"), std::string::npos) << e;
  EXPECT_NE(e.find("generations[0]"), std::string::npos) << e;
  CorpusOptions o;
  o.response_fields = {"generations[1]"};
  Record r = parse(openr1, o);
  EXPECT_EQ(r.messages.back().content, "second try");
  EXPECT_EQ(r.messages[0].content, "P");  // the prompt is found without --prompt-field
  o.response_fields = {"generations[2]"};
  EXPECT_NE(error_of(openr1, o).find("has 2 element"), std::string::npos);
  json one = openr1;
  one["generations"] = {"only"};
  EXPECT_EQ(parse(one).messages.back().content, "only");
  EXPECT_NE(parse(one).layout.find("OpenR1"), std::string::npos);
  // Any field: a list of several strings is not a response.
  EXPECT_NE(error_of({{"question", "q"}, {"answer", {"a", "b"}}}).find("list of 2 texts"), std::string::npos);
}

TEST(LayoutTest, TopLevelSystemIsUsed) {
  const Record r = parse({{"system", "Think step by step."},
                          {"conversations", {{{"from", "user"}, {"value", "Q"}}, {{"from", "assistant"}, {"value", "A"}}}}});
  ASSERT_EQ(r.messages.size(), 3u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[0].content, "Think step by step.");
  EXPECT_NE(r.layout.find("+ system"), std::string::npos);
  // A system message in the turns wins; the top-level one is then left, on purpose (no warning).
  const Record m = parse({{"system", std::string(100, 'x')},
                          {"messages", {{{"role", "system"}, {"content", "S"}}, {{"role", "user"}, {"content", "Q"}},
                                        {{"role", "assistant"}, {"content", "A"}}}}});
  EXPECT_EQ(m.messages[0].content, "S");
  EXPECT_TRUE(m.unused.empty());
}

TEST(LayoutTest, MessagesWithReasoningContentPartsAndTools) {
  const Record r = parse({{"messages",
                           {{{"role", "developer"}, {"content", "Be exact."}},
                            {{"role", "user"}, {"content", {{{"type", "text"}, {"text", "What is "}}, {{"type", "text"}, {"text", "2+2?"}}}}},
                            {{"role", "assistant"}, {"content", nullptr},
                             {"tool_calls", {{{"type", "function"}, {"function", {{"name", "calc"}, {"arguments", "{\"x\": \"2+2\"}"}}}}}}},
                            {{"role", "tool"}, {"content", "4"}},
                            {{"role", "assistant"}, {"content", "It is 4."}, {"reasoning_content", "The tool says 4."}}}}});
  ASSERT_EQ(r.messages.size(), 5u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "What is 2+2?");
  EXPECT_EQ(r.messages[2].tool_calls, std::vector<std::string>{R"({"name":"calc","arguments":{"x":"2+2"}})"});
  EXPECT_EQ(r.messages[3].role, "tool");
  EXPECT_EQ(r.messages[4].reasoning, "The tool says 4.");
  const Rendered out = render(load_chat_template("chatml"), r.messages);
  EXPECT_EQ(out.text.substr(out.response_begin), "<think>\nThe tool says 4.\n</think>\n\nIt is 4.");
  EXPECT_NE(out.text.find("<tool_call>\n{\"name\":\"calc\""), std::string::npos) << out.text;
  EXPECT_NE(out.text.find("<tool_response>\n4\n</tool_response>"), std::string::npos) << out.text;
  // Reasoning of earlier turns is left out, as the reasoning models' templates do.
  const Rendered two = render(load_chat_template("chatml"),
                              {{"user", "a"}, {"assistant", "b", "old thoughts"}, {"user", "c"}, {"assistant", "d", "new"}});
  EXPECT_EQ(two.text.find("old thoughts"), std::string::npos);
  EXPECT_NE(error_of({{"messages", {{{"role", "user"}, {"content", {{{"type", "image_url"}, {"image_url", "x"}}}}},
                                    {{"role", "assistant"}, {"content", "A"}}}}})
                .find("type 'image_url', not text"),
            std::string::npos);
}

TEST(LayoutTest, ReasoningTraceFieldsAndSeveralResponseFields) {
  Record r = parse({{"problem", "P"}, {"deepseek_reasoning", "thinking"}, {"deepseek_solution", "final"},
                    {"ground_truth_solution", std::string(200, 'g')}});
  EXPECT_EQ(r.messages.back().content, "thinking\n\nfinal");
  EXPECT_TRUE(r.unused.empty());
  CorpusOptions o;
  o.response_fields = {"trace", "final"};
  r = parse({{"question", "Q"}, {"trace", "t"}, {"final", "f"}}, o);
  EXPECT_EQ(r.messages.size(), 2u);  // the prompt is detected: the response is not left without a user turn
  EXPECT_EQ(r.messages.back().content, "t\n\nf");
  EXPECT_EQ(r.layout, "question -> trace + final");
  r = parse({{"trace", "t"}}, CorpusOptions{CorpusFormat::kAuto, "", {"trace"}, "id"});
  EXPECT_EQ(r.messages.size(), 1u);
  EXPECT_NE(r.layout.find("(no prompt)"), std::string::npos);
}

TEST(LayoutTest, LongerFieldsLeftUnusedAreReported) {
  const Record r = parse({{"id", "x"}, {"question", "Q"}, {"answer", "42"}, {"my_trace", std::string(300, 't')},
                          {"alternatives", {std::string(10, 'a'), std::string(10, 'b')}}, {"n", 12345678}});
  EXPECT_EQ(r.messages.back().content, "42");
  EXPECT_EQ(r.unused, (std::vector<std::string>{"alternatives", "my_trace"}));
}

// Settings that cannot mean what they say are refused, not half-followed.
TEST(LayoutTest, FieldNamesAndFormatsThatCannotWorkAreRefused) {
  const json gsm = {{"question", "Q"}, {"answer", "A"}};
  CorpusOptions o;
  o.prompt_field = "answer";  // the pair's response as the prompt: the answer would predict itself
  EXPECT_NE(error_of(gsm, o).find("both the prompt and the response"), std::string::npos);
  for (const std::vector<std::string>& bad :
       {std::vector<std::string>{"generations["}, {"generations[-1]"}, {""}, {"a", "a"}}) {
    CorpusOptions b;
    b.response_fields = bad;
    EXPECT_THROW(check_corpus_options(b), UsageError) << bad[0];
  }
  CorpusOptions forced;
  forced.format = CorpusFormat::kMessages;
  forced.response_fields = {"answer"};
  EXPECT_THROW(check_corpus_options(forced), UsageError);
  forced.response_fields.clear();
  forced.prompt_field = "question";
  EXPECT_THROW(check_corpus_options(forced), UsageError);
  CorpusOptions fine;
  fine.response_fields = {"generations[0]", "answer"};
  EXPECT_NO_THROW(check_corpus_options(fine));
}

TEST(LayoutTest, MessageFieldsOfTheWrongTypeSayWhich) {
  auto turns = [](const json& assistant) {
    return json{{"messages", {{{"role", "user"}, {"content", "Q"}}, assistant}}};
  };
  // Reasoning alone is a response.
  const Record r = parse(turns({{"role", "assistant"}, {"content", nullptr}, {"reasoning_content", "thinking"}}));
  EXPECT_EQ(r.messages.back().reasoning, "thinking");
  EXPECT_NE(error_of(turns({{"role", "assistant"}, {"content", "A"}, {"reasoning_content", 5}})).find("reasoning_content: expected a string"),
            std::string::npos);
  EXPECT_NE(error_of(turns({{"role", "assistant"}, {"content", {{{"type", "text"}, {"text", 5}}}}})).find("needs a string 'text', got number"),
            std::string::npos);
  EXPECT_NE(error_of(turns({{"role", "assistant"}, {"content", nullptr}})).find("no tool calls or reasoning"), std::string::npos);
}

TEST(StepsZeroWidthTest, ALookaheadAloneCutsBeforeWhatItSees) {
  const std::string t = "First we add. Wait, that is wrong. Alternatively subtract.";
  std::vector<size_t> starts;
  for (size_t i = 0; i < t.size(); i += 3) starts.push_back(i);
  const auto s = StepSplitter("(?=Wait|Alternatively)", 1).split(t, starts);
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(t.substr(s[1].begin, 4), "Wait");
  EXPECT_EQ(t.substr(s[2].begin, 13), "Alternatively");
}

TEST_F(LayoutFileTest, ReadCorpusTellsLayoutsUnusedFieldsAndSingleSteps) {
  const fs::path p = tmp_ / "c.jsonl";
  write_text(p, "{\"question\": \"Q\", \"answer\": \"A one.\", \"trace\": \"" + std::string(80, 't') + "\"}\n"
                "{\"question\": \"Q\", \"answer\": \"A two.\", \"trace\": \"" + std::string(80, 't') + "\"}\n"
                "{\"messages\": [{\"role\": \"user\", \"content\": \"U\"}, {\"role\": \"assistant\", \"content\": \"x\\n\\ny y y y\"}]}\n");
  const auto tok = load_tokenizer(model_dir("stories260K"));
  DatasetOptions opt;
  std::vector<std::pair<bool, std::string>> notices;
  opt.on_notice = [&](bool warning, int64_t, const std::string& text) { notices.emplace_back(warning, text); };
  const CorpusStats st = read_corpus(p.string(), load_chat_template("plain"), *tok, StepSplitter("\\n\\s*\\n", 1),
                                     opt, [](Sample&&) {});
  EXPECT_EQ(st.layouts.at("question -> answer"), 2);
  EXPECT_EQ(st.layouts.at("messages"), 1);
  EXPECT_EQ(st.unused_fields.at("trace"), 2);
  EXPECT_EQ(st.single_step, 2);
  ASSERT_EQ(notices.size(), 3u);  // each layout once, the unused field once
  EXPECT_FALSE(notices[0].first);
  EXPECT_TRUE(notices[1].first);
  EXPECT_NE(notices[1].second.find("'trace'"), std::string::npos);
}

TEST_F(LayoutFileTest, TemplateFilesNeedUserAndAssistantAndRoundTripThroughJson) {
  write_text(tmp_ / "t.json", R"({"user": {"prefix": "Q: "}, "system": {"prefix": "S: "}})");
  try {
    load_chat_template((tmp_ / "t.json").string());
    ADD_FAILURE() << "a template without assistant was accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("\"assistant\""), std::string::npos) << e.what();
  }
  for (const auto& [text, what] : std::vector<std::pair<std::string, std::string>>{
           {R"({"user": {"prefix": "Q: "}, "asistant": {}, "assistant": {}})", "\"asistant\""},
           {R"({"user": {"prefix": 5}, "assistant": {}})", "\"user.prefix\": expected a string, got number"},
           {R"({"user": {}, "assistant": {}, "system_in_user": "yes"})", "\"system_in_user\": expected true or false"}}) {
    write_text(tmp_ / "t.json", text);
    try {
      load_chat_template((tmp_ / "t.json").string());
      ADD_FAILURE() << "accepted: " << text;
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  }
  // No system entry: the system message goes into the first user turn, not glued to its prefix.
  write_text(tmp_ / "t.json", R"({"user": {"prefix": "U: ", "suffix": "\n"}, "assistant": {"prefix": "A: "}})");
  EXPECT_EQ(render(load_chat_template((tmp_ / "t.json").string()), {{"system", "S"}, {"user", "Q"}, {"assistant", "R"}}).text,
            "U: S\n\nQ\nA: R");
  for (const std::string& name : builtin_templates()) {
    const ChatTemplate t = load_chat_template(name, "\n### ");
    const ChatTemplate back = template_from_json(json::parse(template_to_json(t).dump()));
    const std::vector<Message> conv = {{"system", "S"}, {"user", "U"}, {"assistant", "A", "R", {"{}"}}};
    EXPECT_EQ(render(back, conv).text, render(t, conv).text) << name;
    EXPECT_EQ(back.add_special_tokens, t.add_special_tokens);
  }
}

TEST(TemplateWarningsTest, AnotherFamilysMarkersAreFound) {
  ASSERT_TRUE(fs::exists(tok_dir("qwen3"))) << "qwen3 absent (the build unpacks it: scripts/unpack-tokenizers.sh)";
  const auto qwen = load_tokenizer(tok_dir("qwen3"));
  EXPECT_TRUE(template_warnings(load_chat_template("qwen3"), *qwen, tok_dir("qwen3")).empty());
  const auto w = template_warnings(load_chat_template("llama3"), *qwen, tok_dir("qwen3"));
  ASSERT_EQ(w.size(), 2u);
  EXPECT_NE(w[0].find("<|start_header_id|>"), std::string::npos) << w[0];
  EXPECT_NE(w[1].find("is qwen3"), std::string::npos) << w[1];
  // ChatML without Qwen3's <think> block is another rendering than the model's own.
  const auto plain_chatml = template_warnings(load_chat_template("chatml"), *qwen, tok_dir("qwen3"));
  ASSERT_EQ(plain_chatml.size(), 1u);
  EXPECT_NE(plain_chatml[0].find("is qwen3"), std::string::npos) << plain_chatml[0];
  const auto llama = load_tokenizer(tok_dir("llama3_2"));
  EXPECT_TRUE(template_warnings(load_chat_template("llama3.1"), *llama, tok_dir("llama3_2")).empty());
  EXPECT_FALSE(template_warnings(load_chat_template("chatml"), *llama, tok_dir("llama3_2")).empty());
  const auto mistral = load_tokenizer(tok_dir("mistral"));
  EXPECT_TRUE(template_warnings(load_chat_template("mistral"), *mistral, tok_dir("mistral")).empty());
}

// DeepSeek's markers spelled out: U+FF5C FULLWIDTH VERTICAL LINE (EF BD 9C in UTF-8) for the
// bars, U+2581 LOWER ONE EIGHTH BLOCK (E2 96 81) for the spaces: <｜begin▁of▁sentence｜>.
const std::string kDsBos = "<\xEF\xBD\x9C" "begin\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>";
const std::string kDsEos = "<\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>";
const std::string kDsUser = "<\xEF\xBD\x9C" "User\xEF\xBD\x9C>";
const std::string kDsAssistant = "<\xEF\xBD\x9C" "Assistant\xEF\xBD\x9C>";

// The models' own chat templates (tokenizer_config.json files, see tests/data/templates/README.md).
fs::path templates_dir() { return fs::path(AIR_TEST_DATA_DIR) / "templates"; }

// Each family's preset writes what the family's HuggingFace chat template writes. `hf` is what
// apply_chat_template(conv, tokenize=False) returns for the template in tests/data/templates/
// named in the comment (worked out from the Jinja, and rendered with jinja2 as transformers
// does: trim_blocks, lstrip_blocks); the template goes on after the response with `closing`
// (end of turn, EOS), which render() leaves out: the response is the last thing rendered.
TEST(PresetTest, RendersWhatTheModelsOwnTemplateRenders) {
  const std::vector<Message> one = {{"system", "Be brief."}, {"user", "Hi?"}, {"assistant", "Hello."}};
  const std::vector<Message> two = {
      {"system", "S"}, {"user", "Q1"}, {"assistant", "A1"}, {"user", "Q2"}, {"assistant", "A2"}};
  const std::vector<Message> one_nosys(one.begin() + 1, one.end());
  const std::vector<Message> two_nosys(two.begin() + 1, two.end());
  struct Case {
    std::string preset;
    std::vector<Message> conv;
    std::string hf;
    std::string closing;
  };
  const std::vector<Case> cases = {
      // gemma-3-it: the system message and "\n\n" open the first user turn.
      {"gemma", one,
       "<bos><start_of_turn>user\nBe brief.\n\nHi?<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n",
       "<end_of_turn>\n"},
      {"gemma", two,
       "<bos><start_of_turn>user\nS\n\nQ1<end_of_turn>\n<start_of_turn>model\nA1<end_of_turn>\n"
       "<start_of_turn>user\nQ2<end_of_turn>\n<start_of_turn>model\nA2<end_of_turn>\n",
       "<end_of_turn>\n"},
      // gemma-2-2b-it (which refuses a system message).
      {"gemma", one_nosys, "<bos><start_of_turn>user\nHi?<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n",
       "<end_of_turn>\n"},
      // Phi-3-mini-4k-instruct and Phi-3.5-mini-instruct: no BOS; EOS after the last turn.
      {"phi3", one, "<|system|>\nBe brief.<|end|>\n<|user|>\nHi?<|end|>\n<|assistant|>\nHello.<|end|>\n<|endoftext|>",
       "<|end|>\n<|endoftext|>"},
      {"phi3", two,
       "<|system|>\nS<|end|>\n<|user|>\nQ1<|end|>\n<|assistant|>\nA1<|end|>\n<|user|>\nQ2<|end|>\n"
       "<|assistant|>\nA2<|end|>\n<|endoftext|>",
       "<|end|>\n<|endoftext|>"},
      // phi-4: no newlines, no BOS.
      {"phi4", one,
       "<|im_start|>system<|im_sep|>Be brief.<|im_end|><|im_start|>user<|im_sep|>Hi?<|im_end|>"
       "<|im_start|>assistant<|im_sep|>Hello.<|im_end|>",
       "<|im_end|>"},
      {"phi4", two_nosys,
       "<|im_start|>user<|im_sep|>Q1<|im_end|><|im_start|>assistant<|im_sep|>A1<|im_end|>"
       "<|im_start|>user<|im_sep|>Q2<|im_end|><|im_start|>assistant<|im_sep|>A2<|im_end|>",
       "<|im_end|>"},
      // OLMo-2-1124-13B-Instruct: BOS and EOS are <|endoftext|>; no "\n" after the last EOS.
      {"olmo2", one, "<|endoftext|><|system|>\nBe brief.\n<|user|>\nHi?\n<|assistant|>\nHello.<|endoftext|>",
       "<|endoftext|>"},
      {"olmo2", two,
       "<|endoftext|><|system|>\nS\n<|user|>\nQ1\n<|assistant|>\nA1<|endoftext|>\n<|user|>\nQ2\n"
       "<|assistant|>\nA2<|endoftext|>",
       "<|endoftext|>"},
      // DeepSeek-R1, DeepSeek-R1-Distill-Qwen-32B and DeepSeek-V3 alike: the system message
      // right after BOS, unmarked.
      {"deepseek", one, kDsBos + "Be brief." + kDsUser + "Hi?" + kDsAssistant + "Hello." + kDsEos, kDsEos},
      {"deepseek", two,
       kDsBos + "S" + kDsUser + "Q1" + kDsAssistant + "A1" + kDsEos + kDsUser + "Q2" + kDsAssistant + "A2" + kDsEos,
       kDsEos},
      {"deepseek", one_nosys, kDsBos + kDsUser + "Hi?" + kDsAssistant + "Hello." + kDsEos, kDsEos},
  };
  for (const Case& c : cases) {
    const ChatTemplate t = load_chat_template(c.preset);
    EXPECT_EQ(t.name, c.preset);
    EXPECT_FALSE(t.add_special_tokens) << c.preset << ": the text holds the BOS, or the template writes none";
    const Rendered r = render(t, c.conv);
    EXPECT_EQ(r.text + c.closing, c.hf) << c.preset;
    EXPECT_EQ(r.text.substr(r.response_begin), c.conv.back().content) << c.preset;
    EXPECT_EQ(r.response_end, r.text.size()) << c.preset;
  }
  // R1's generation prompt ends "<｜Assistant｜><think>\n" (the template's own
  // add_generation_prompt=True rendering of one user turn): where the response's reasoning
  // starts, so the prompt and the reasoning's first token are what R1 saw.
  const Rendered r1 = render(load_chat_template("deepseek"), {{"user", "Q"}, {"assistant", "A", "R"}});
  EXPECT_EQ(r1.text, kDsBos + kDsUser + "Q" + kDsAssistant + "<think>\nR\n</think>\n\nA");
  EXPECT_EQ(r1.text.substr(0, r1.response_begin) + "<think>\n", kDsBos + kDsUser + "Q" + kDsAssistant + "<think>\n");
}

// Each model's own tokenizer_config.json picks its family's preset; a template that no preset
// renders alike picks none (plain, and says so).
TEST(PresetTest, DetectsEachFamilyFromItsOwnTemplate) {
  for (const auto& [model, preset] : std::vector<std::pair<std::string, std::string>>{
           {"gemma-2-2b-it", "gemma"},
           {"gemma-3-it", "gemma"},
           {"Phi-3-mini-4k-instruct", "phi3"},
           {"Phi-3.5-mini-instruct", "phi3"},
           {"phi-4", "phi4"},
           {"OLMo-2-1124-13B-Instruct", "olmo2"},
           {"DeepSeek-R1", "deepseek-r1"},
           {"DeepSeek-R1-Distill-Qwen-32B", "deepseek-r1"},
           {"DeepSeek-V3", "deepseek"}}) {
    bool unrecognised = true;
    EXPECT_EQ(detect_template(templates_dir() / model, &unrecognised), preset) << model;
    EXPECT_FALSE(unrecognised) << model;
  }
  // Zephyr's <|user|> turns end with the EOS token </s>: neither Phi-3's nor OLMo 2's.
  bool unrecognised = false;
  EXPECT_EQ(detect_template(templates_dir() / "zephyr-7b-beta", &unrecognised), "plain");
  EXPECT_TRUE(unrecognised);
}

class PresetFileTest : public TempDirTest {
 protected:
  // detect_template for a model whose tokenizer_config.json is `config`.
  std::string detect(const json& config, bool* unrecognised) {
    fs::create_directories(tmp_ / "m");
    write_text(tmp_ / "m" / "tokenizer_config.json", config.dump());
    return detect_template(tmp_ / "m", unrecognised);
  }
};

TEST_F(PresetFileTest, TemplatesThatNoPresetRendersAlikePickNone) {
  bool unrecognised = false;
  // ChatML stays ChatML (Phi-4's test for <|im_sep|> comes first).
  EXPECT_EQ(detect({{"chat_template",
                     "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
                     "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
                     "{% endif %}"}},
                   &unrecognised),
            "chatml");
  EXPECT_FALSE(unrecognised);
  // DeepSeek-V3.1 writes </think> (or <think>) after <｜Assistant｜> in each assistant turn
  // (an excerpt of its template, from llama.cpp's models/templates/deepseek-ai-DeepSeek-V3.1.jinja).
  const std::string v31 =
      "{{ bos_token }}{{ ns.system_prompt }}{%- for message in messages -%}{%- if message['role'] == 'user' -%}"
      "{%- set ns.is_last_user = true -%}{{'" + kDsUser + "' + message['content']}}{%- endif -%}"
      "{%- if message['role'] == 'assistant' -%}{%- if ns.is_last_user -%}{{'" + kDsAssistant + "'}}"
      "{%- if message['prefix'] is defined and message['prefix'] and thinking -%}{{'<think>'}}"
      "{%- else -%}{{'</think>'}}{%- endif -%}{%- endif -%}{%- set ns.is_last_user = false -%}"
      "{{message['content'] + '" + kDsEos + "'}}{%- endif -%}{%- endfor -%}";
  EXPECT_EQ(detect({{"chat_template", v31}}, &unrecognised), "plain");
  EXPECT_TRUE(unrecognised);
  // Phi-4-reasoning's template also writes its own long system message (an excerpt).
  EXPECT_EQ(detect({{"chat_template",
                     "{{'<|im_start|>system<|im_sep|>You are Phi, a language model trained by Microsoft to help "
                     "users. Your role as an assistant involves thoroughly exploring questions through a systematic "
                     "thinking process before providing the final precise and accurate solutions.<|im_end|>'}}"
                     "{% for message in messages %}{% if (message['role'] == 'user') %}{{'<|im_start|>user<|im_sep|>' + "
                     "message['content'] + '<|im_end|>'}}{% endif %}{% endfor %}"}},
                   &unrecognised),
            "plain");
  EXPECT_TRUE(unrecognised);
  // OLMo 2's template with other BOS and EOS tokens (Llama 3's) is not OLMo 2's rendering.
  json olmo = read_json(templates_dir() / "OLMo-2-1124-13B-Instruct" / "tokenizer_config.json");
  EXPECT_EQ(detect(olmo, &unrecognised), "olmo2");
  olmo["bos_token"] = "<|begin_of_text|>";
  olmo["eos_token"] = "<|end_of_text|>";
  EXPECT_EQ(detect(olmo, &unrecognised), "plain");
  EXPECT_TRUE(unrecognised);
  // BOS and EOS written as {"content": ...}, as DeepSeek does, are read too.
  olmo["bos_token"] = {{"__type", "AddedToken"}, {"content", "<|endoftext|>"}};
  olmo["eos_token"] = {{"__type", "AddedToken"}, {"content", "<|endoftext|>"}};
  EXPECT_EQ(detect(olmo, &unrecognised), "olmo2");
  EXPECT_FALSE(unrecognised);
}

// The models' own chat templates rendered by jinja2 (tests/render_jinja.py, as transformers'
// apply_chat_template renders them, the template's own default date) against the preset that
// detect_template picks for each: the whole conversation (what the template writes after the
// response is the end of turn), and the generation prompt (the prompt ends where the response
// starts, R1's "<think>\n" inside the response). Conversations with system prompts, several
// turns, reasoning, surrounding spaces and newlines, and non-ASCII text.
class JinjaPresetTest : public TempDirTest {
 protected:
  // What render_jinja.py prints for `cases` rendered with the template in `config`.
  json jinja(const fs::path& config, const json& cases) {
    write_text(tmp_ / "cases.json", cases.dump());
    const std::string cmd = "python3 '" + (fs::path(AIR_TEST_DATA_DIR) / ".." / "render_jinja.py").string() + "' '" +
                            config.string() + "' '" + (tmp_ / "cases.json").string() + "' > '" +
                            (tmp_ / "out.json").string() + "' 2> '" + (tmp_ / "err.txt").string() + "'";
    const int status = std::system(cmd.c_str());
    EXPECT_EQ(status, 0) << read_text(tmp_ / "err.txt") << " (python3 with jinja2: Debian python3-jinja2)";
    return status == 0 ? read_json(tmp_ / "out.json") : json::array();
  }
};

json messages_json(const std::vector<Message>& conv) {
  json out = json::array();
  for (const Message& m : conv) {
    json j = {{"role", m.role}, {"content", m.content}};
    if (!m.reasoning.empty()) j["reasoning_content"] = m.reasoning;
    out.push_back(j);
  }
  return out;
}

TEST_F(JinjaPresetTest, PresetsRenderWhatTheModelsOwnTemplatesRender) {
  const fs::path tokenizers = fs::path(AIR_TEST_DATA_DIR) / "tokenizers";
  const std::vector<std::pair<fs::path, std::string>> models = {
      {tokenizers / "llama3_2", "llama3.1"},
      {tokenizers / "qwen3", "qwen3"},
      {tokenizers / "qwen2_5", "qwen2.5"},
      {tokenizers / "gemma3", "gemma"},
      {tokenizers / "deepseek_v3", "deepseek"},
      {templates_dir() / "gemma-2-2b-it", "gemma"},
      {templates_dir() / "Phi-3-mini-4k-instruct", "phi3"},
      {templates_dir() / "Phi-3.5-mini-instruct", "phi3"},
      {templates_dir() / "phi-4", "phi4"},
      {templates_dir() / "OLMo-2-1124-13B-Instruct", "olmo2"},
      {templates_dir() / "DeepSeek-R1", "deepseek-r1"},
      {templates_dir() / "DeepSeek-R1-Distill-Qwen-32B", "deepseek-r1"},
  };
  const std::vector<std::vector<Message>> convs = {
      {{"system", "Be brief."}, {"user", "What is 2 + 2?"}, {"assistant", "It is 4."}},
      {{"user", "What is 2 + 2?"}, {"assistant", "It is 4."}},
      {{"system", "S"}, {"user", "Q1"}, {"assistant", "A1"}, {"user", "Q2"}, {"assistant", "A2"}},
      {{"user", "Q1"}, {"assistant", "A1"}, {"user", "Q2"}, {"assistant", "A2"}},
      {{"system", "  Sois bref.  "},
       {"user", "  Wie viel ist 2 + 2? \xE6\x95\xB0\xE5\xAD\xA6 \xF0\x9F\x99\x82 \n"},
       {"assistant", "\n  Es ist 4. \xE2\x9C\x93 \n"}},
      {{"user", "What is 2 + 2?"}, {"assistant", "The answer is 4.", "Two and two.\n\nThat is four."}},
      {{"system", "S"},
       {"user", "Q1"},
       {"assistant", "A1", "old reasoning"},
       {"user", " Q2 \xC3\xA9 "},
       {"assistant", "\nA2 ", "\nStep one.\n\nStep two.\n"}},
      // Reasoning written in the content (Qwen3's template reads it there too), in the response
      // and in an earlier turn; an empty system message.
      {{"user", "Q"}, {"assistant", "<think>\n\nInline step.\n\n</think>\n\n\nThe answer."}},
      {{"user", "Q1"}, {"assistant", "<think>\nold\n</think>\n\nA1"}, {"user", "Q2"}, {"assistant", "A2"}},
      {{"system", ""}, {"user", "Hi"}, {"assistant", "Hello."}},
  };
  // Reasoning anywhere: templates that do not read reasoning_content leave it out of the whole
  // conversation (R1's cuts what precedes </think>), which the response must keep.
  auto reasons = [](const Message& m) { return !m.reasoning.empty() || m.content.find("</think>") != std::string::npos; };
  for (const auto& [dir, preset] : models) {
    SCOPED_TRACE(dir.filename().string());
    bool unrecognised = true;
    ASSERT_EQ(detect_template(dir, &unrecognised), preset);
    EXPECT_FALSE(unrecognised);
    const ChatTemplate t = load_chat_template(preset);
    const json config = read_json(dir / "tokenizer_config.json");
    const bool reads_reasoning = config["chat_template"].get<std::string>().find("reasoning_content") != std::string::npos;
    std::string eos = config.value("eos_token", json()).is_object() ? config["eos_token"]["content"].get<std::string>()
                      : config.value("eos_token", json()).is_string() ? config["eos_token"].get<std::string>()
                                                                      : std::string();
    json cases = json::array();
    for (const auto& conv : convs) {
      const std::vector<Message> prompt(conv.begin(), conv.end() - 1);
      cases.push_back({{"messages", messages_json(conv)}, {"add_generation_prompt", false}});
      // Without reasoning, the prompt is the non-thinking one (Qwen3 closes an empty <think> block).
      cases.push_back({{"messages", messages_json(prompt)},
                       {"add_generation_prompt", true},
                       {"enable_thinking", reasons(conv.back())}});
    }
    const json out = jinja(dir / "tokenizer_config.json", cases);
    ASSERT_EQ(out.size(), cases.size());
    int whole = 0, prompts = 0;
    for (size_t i = 0; i < convs.size(); ++i) {
      SCOPED_TRACE("conversation " + std::to_string(i));
      const json& full = out[2 * i];
      const json& gen = out[2 * i + 1];
      if (full.contains("error")) continue;  // the template refuses it (Gemma 2: a system message)
      // Phi-3.5-mini's template drops an empty system message, Phi-3-mini's writes it: one preset
      // cannot be both (the only difference between the two).
      if (dir.filename() == "Phi-3.5-mini-instruct" && convs[i][0].role == "system" && convs[i][0].content.empty())
        continue;
      const Rendered r = render(t, convs[i]);
      // The whole conversation, where the template writes the response's reasoning (or there is none).
      if (reads_reasoning || std::none_of(convs[i].begin(), convs[i].end(), reasons)) {
        const std::string hf = full["text"];
        ASSERT_EQ(hf.compare(0, r.text.size(), r.text), 0) << "preset:\n" << r.text << "\ntemplate:\n" << hf;
        const std::string closing = hf.substr(r.text.size());
        std::string suffix = t.assistant.suffix, bare = suffix;
        while (!bare.empty() && bare.back() == '\n') bare.pop_back();
        EXPECT_TRUE(closing == suffix || closing == bare || closing == suffix + eos)
            << "after the response the template writes '" << closing << "'";
        ++whole;
      }
      // The prompt: what the template writes to ask for this response. It may open the
      // reasoning (R1's "<think>\n"): with reasoning, the response does too.
      const std::string g = gen["text"];
      ASSERT_GE(g.size(), r.response_begin) << r.text;
      EXPECT_EQ(r.text.substr(0, r.response_begin), g.substr(0, r.response_begin)) << "generation prompt:\n" << g;
      const std::string opened = g.substr(r.response_begin);
      EXPECT_TRUE(opened.empty() || opened == t.reasoning.prefix) << opened;
      if (reasons(convs[i].back()))
        EXPECT_EQ(r.text.compare(0, g.size(), g), 0) << "preset:\n" << r.text << "\ngeneration prompt:\n" << g;
      ++prompts;
    }
    EXPECT_GE(whole, 2);    // Gemma 2 refuses system messages: 4 of the 10 conversations
    EXPECT_GE(prompts, 5);
  }
}

// The presets' markers against the real tokenizers (unpacked by the build from
// tests/data/tokenizers): one token each for the model's own family; several, and a warning, for another's;
// none for text markers that the model's own template writes (OLMo 2's <|user|>).
TEST(PresetTest, MarkersAreCheckedAgainstTheTokenizer) {
  std::string absent;
  if (fs::exists(tok_dir("qwen3"))) {
    // DeepSeek's fullwidth markers are found like the ASCII ones.
    const auto qwen = load_tokenizer(tok_dir("qwen3"));
    const auto w = template_warnings(load_chat_template("deepseek"), *qwen, tok_dir("qwen3"));
    ASSERT_EQ(w.size(), 2u);
    EXPECT_NE(w[0].find(kDsUser), std::string::npos) << w[0];
    EXPECT_NE(w[0].find(kDsBos), std::string::npos) << w[0];
    EXPECT_NE(w[1].find("is qwen3"), std::string::npos) << w[1];
  } else {
    absent += " qwen3";
  }
  if (fs::exists(tok_dir("deepseek_v3"))) {
    const auto ds = load_tokenizer(tok_dir("deepseek_v3"));
    EXPECT_EQ(detect_template(tok_dir("deepseek_v3")), "deepseek");
    EXPECT_TRUE(template_warnings(load_chat_template("deepseek"), *ds, tok_dir("deepseek_v3")).empty());
    EXPECT_TRUE(template_warnings(load_chat_template("deepseek-r1"), *ds, templates_dir() / "DeepSeek-R1").empty());
    const auto w = template_warnings(load_chat_template("chatml"), *ds, tok_dir("deepseek_v3"));
    ASSERT_FALSE(w.empty());
    EXPECT_NE(w.back().find("is deepseek"), std::string::npos) << w.back();
    // Each marker one token; the response (from R1's opening <think>) starts after <｜Assistant｜>.
    Record rec;
    rec.messages = {{"user", "Q"}, {"assistant", "A", "R"}};
    const Sample s = prepare_sample(rec, load_chat_template("deepseek"), *ds, StepSplitter(), {});
    ASSERT_GE(s.prompt_tokens, 4);
    EXPECT_EQ(s.ids[0], 0);                             // <｜begin▁of▁sentence｜>, once
    EXPECT_EQ(s.ids[1], 128803);                        // <｜User｜>
    EXPECT_EQ(s.ids[s.prompt_tokens - 1], 128804);      // <｜Assistant｜>
    EXPECT_EQ(s.offsets[s.prompt_tokens].first, s.rendered.response_begin);
  } else {
    absent += " deepseek_v3";
  }
  if (fs::exists(tok_dir("gemma3"))) {
    const auto gemma = load_tokenizer(tok_dir("gemma3"));
    const ChatTemplate t = load_chat_template("gemma");
    EXPECT_EQ(detect_template(tok_dir("gemma3")), "gemma");
    EXPECT_TRUE(template_warnings(t, *gemma, tok_dir("gemma3")).empty());
    // One BOS: the one in the text (the tokenizer's post-processor would add a second).
    Record rec;
    rec.messages = {{"user", "Hi?"}, {"assistant", "Hello."}};
    const Sample s = prepare_sample(rec, t, *gemma, StepSplitter(), {});
    ASSERT_GE(s.ids.size(), 3u);
    EXPECT_EQ(s.ids[0], 2);    // <bos>
    EXPECT_EQ(s.ids[1], 105);  // <start_of_turn>
  } else {
    absent += " gemma3";
  }
  if (fs::exists(tok_dir("cl100k"))) {
    // cl100k_base, which OLMo 2's tokenizer extends: <|endoftext|> is one token, <|user|> text.
    const auto cl = load_tokenizer(tok_dir("cl100k"));
    EXPECT_TRUE(template_warnings(load_chat_template("olmo2"), *cl, templates_dir() / "OLMo-2-1124-13B-Instruct").empty());
    const auto w = template_warnings(load_chat_template("olmo2"), *cl, tok_dir("cl100k"));
    ASSERT_EQ(w.size(), 1u);
    EXPECT_NE(w[0].find("<|user|>"), std::string::npos) << w[0];
    EXPECT_EQ(w[0].find("<|endoftext|>"), std::string::npos) << w[0];
  } else {
    absent += " cl100k";
  }
  EXPECT_TRUE(absent.empty()) << "tokenizers absent:" << absent << " (the build unpacks them: scripts/unpack-tokenizers.sh)";
}

void write_gzip(const fs::path& p, const std::string& text, size_t keep = std::string::npos) {
  const fs::path full = p.string() + ".full";
  gzFile gz = gzopen(full.c_str(), "wb");
  gzwrite(gz, text.data(), static_cast<unsigned>(text.size()));
  gzclose(gz);
  const std::string bytes = read_text(full);
  write_text(p, bytes.substr(0, std::min(keep, bytes.size())));
}

TEST_F(LayoutFileTest, LineReaderReadsGzipAndRefusesJsonArrays) {
  std::string text;
  for (int i = 0; i < 3000; ++i) text += "{\"i\": " + std::to_string(i) + ", \"pad\": \"" + std::string(i % 97, 'x') + "\"}\n";
  write_gzip(tmp_ / "c.jsonl.gz", text);
  LineReader in((tmp_ / "c.jsonl.gz").string());
  std::string line, got;
  while (in.next(line)) got += line + "\n";
  EXPECT_TRUE(in.compressed());
  EXPECT_EQ(got, text);
  EXPECT_EQ(in.line_number(), 3000);

  write_gzip(tmp_ / "cut.gz", text, 5000);
  try {
    LineReader cut((tmp_ / "cut.gz").string());
    while (cut.next(line)) {
    }
    ADD_FAILURE() << "a truncated gzip file read to the end";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("cut.gz"), std::string::npos) << e.what();
  }
  for (const std::string doc : {"[{\"question\": \"q\", \"answer\": \"a\"}]\n", "[\n  {\"question\": \"q\"}\n]\n",
                                "\n{\n  \"question\": \"q\"\n}\n"}) {
    write_text(tmp_ / "a.json", doc);
    try {
      LineReader a((tmp_ / "a.json").string());
      ADD_FAILURE() << "not JSON Lines, but read: " << doc;
    } catch (const DataError& e) {
      EXPECT_NE(std::string(e.what()).find("not JSON Lines"), std::string::npos) << e.what();
    }
  }
  write_text(tmp_ / "ids.jsonl", "[1, 2, 3]\n[4]\n");  // lines that are arrays of ids are JSON Lines
  LineReader ids((tmp_ / "ids.jsonl").string());
  EXPECT_TRUE(ids.next(line));
  EXPECT_EQ(line, "[1, 2, 3]");
}

ProbeResult ranking(const std::vector<double>& scores, int64_t items = 32, bool counted_all = false) {
  ProbeResult p;
  for (size_t i = 0; i < scores.size(); ++i)
    p.ranked.push_back({{static_cast<int64_t>(i / 8), static_cast<int64_t>(i % 8)}, scores[i]});
  std::sort(p.ranked.begin(), p.ranked.end(), [](const HeadScore& a, const HeadScore& b) { return a.score > b.score; });
  p.items_total = 32;
  p.items_counted = items;
  p.counted_all = counted_all;
  return p;
}

// Heads whose scores come from one bell-shaped distribution are noise, whatever the top few
// are; a few heads far above the rest are not.
TEST(SeparationTest, TellsNoiseFromCopyHeads) {
  std::mt19937 rng(1);
  std::normal_distribution<double> noise(0.03, 0.005);
  std::vector<double> scores;
  for (int i = 0; i < 448; ++i) scores.push_back(noise(rng));
  auto r = ranking(scores);
  HeadSet top = select_heads(r.ranked, 448, HeadSelection{});
  Separation s = separation(r, top);
  EXPECT_FALSE(s.distinct) << s.z_mean_selected;
  EXPECT_GT(s.z_mean_selected, 1.0);
  for (int i = 0; i < 6; ++i) scores[i * 50] = 0.6 + 0.05 * i;
  r = ranking(scores);
  HeadSelection six;
  six.num_heads = 6;
  const HeadSet chosen = select_heads(r.ranked, 448, six);
  s = separation(r, chosen);
  EXPECT_TRUE(s.distinct) << s.z_mean_selected;
  EXPECT_NEAR(s.weakest_selected, 0.6, 1e-12);
  EXPECT_GT(s.gap, 0.4);
  // The same scores from items the model could not do, or from a handful, are not evidence.
  EXPECT_FALSE(separation(ranking(scores, 32, true), chosen).distinct);
  EXPECT_FALSE(separation(ranking(scores, 3), chosen).distinct);
  // Selection rules that cannot be met are refused, not bent.
  HeadSelection many;
  many.num_heads = 449;
  EXPECT_THROW(select_heads(r.ranked, 448, many), UsageError);
  HeadSelection high;
  high.min_score = 0.9;
  EXPECT_THROW(select_heads(r.ranked, 448, high), UsageError);
  high.min_score = 0.0;  // every head reaches 0
  EXPECT_EQ(select_heads(r.ranked, 448, high).size(), 448u);
}

}  // namespace
}  // namespace air::test

namespace air::test {
namespace {

// One schema: a record written and read back is written the same, scored or rejected.
TEST(ScoreRecordTest, WhatIsWrittenReadsBackTheSame) {
  ScoreRecord r;
  r.id = "x-1";
  r.line = 12;
  r.line_hash = line_hash("{}");
  r.influence.score = 0.1875;
  r.influence.loss_base = 1.25;
  r.influence.loss_ref = 1.484375;
  r.influence.entropy = 2.5;
  r.influence.tokens = 7;
  r.prompt_tokens = 5;
  r.truncated = true;
  StepInfluence a, b;
  a.step = {0, 10, 0, 3};
  a.loss_base = 1.0, a.loss_ref = 1.5, a.score = 0.5, a.weight = 1.5;
  b.step = {10, 24, 3, 7};
  b.loss_base = 2.0, b.loss_ref = 2.0, b.score = 0.0, b.weight = 0.5;
  r.influence.steps = {a, b};
  r.token_deltas = {0.25f, -0.5f, 1e-3f, 0, 0, 0, 0.125f};
  const std::string once = to_json(r).dump();
  EXPECT_EQ(to_json(score_record_from_json(json::parse(once), "here")).dump(), once);
  const ScoreRecord rej = rejected_record({3, "7", "malformed JSON", "{\"a\":"});
  const std::string line = to_json(rej).dump();
  EXPECT_NE(line.find("\"rejected\":true"), std::string::npos);
  EXPECT_EQ(to_json(score_record_from_json(json::parse(line), "here")).dump(), line);
  try {
    score_record_from_json(json::parse(R"({"id": "a", "line": 1, "error": "x", "rejected": "yes"})"), "f.jsonl:9");
    ADD_FAILURE() << "a non-boolean \"rejected\" was read";
  } catch (const DataError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("f.jsonl:9: ", 0), 0u) << e.what();
  }
}

}  // namespace
}  // namespace air::test

namespace air::test {
namespace {

TEST(HeadsFileTest, WhatIsWrittenReadsBackTheSame) {
  HeadsFile h;
  h.info.model_path = "models/m";
  h.info.architecture = "LlamaForCausalLM";
  h.info.fingerprint = "0123abcd";
  h.info.probe.kind = ProbeKind::kKvRetrieval;
  h.info.probe.num_items = 12;
  h.info.probe.seed = 7;
  h.info.probe.span_tokens = 20;
  h.info.probe_source = "text.txt";
  h.info.selection.num_heads = 2;
  h.info.layers = 2;
  h.info.heads_per_layer = 2;
  h.result.ranked = {{{1, 0}, 0.75}, {{0, 1}, 0.5}, {{0, 0}, 0.0625}, {{1, 1}, 0.0}};
  h.result.items_total = 12;
  h.result.items_counted = 9;
  h.selected = HeadSet({{1, 0}, {0, 1}});
  const std::string once = to_json(h).dump(2);
  const HeadsFile back = heads_file_from_json(json::parse(once), "h.json");
  EXPECT_EQ(to_json(back).dump(2), once);
  EXPECT_EQ(back.info.probe.kind, ProbeKind::kKvRetrieval);
  EXPECT_EQ(back.selected.to_string(), h.selected.to_string());
  EXPECT_THROW(heads_file_from_json(json::parse(R"({"selected": [[0, 1]], "probe": {"kind": "telepathy"}})"), "h.json"),
               DataError);
}

}  // namespace
}  // namespace air::test
