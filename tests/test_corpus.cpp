// Corpus formats, chat templates, token-exact response spans, steps and rejects.

#include "air/dataset.h"
#include "air/error.h"
#include "test_util.h"

#include <algorithm>

namespace air::test {
namespace {

fs::path tok_dir(const std::string& n) { return fs::path(AIR_TEST_DATA_DIR) / "tokenizers" / n; }

Record parse(const nlohmann::json& j, const CorpusOptions& opt = {}) {
  return parse_record(j.dump(), 7, opt);
}

std::string data_error(const std::string& line, const CorpusOptions& opt = {}) {
  try {
    parse_record(line, 1, opt);
  } catch (const DataError& e) {
    return e.what();
  }
  return "";
}

TEST(CorpusTest, RecognisesEachFormat) {
  Record r = parse({{"messages", {{{"role", "system"}, {"content", "S"}},
                                  {{"role", "user"}, {"content", "U"}},
                                  {{"role", "assistant"}, {"content", "A"}}}}});
  ASSERT_EQ(r.messages.size(), 3u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[2].content, "A");
  EXPECT_EQ(r.id, "7");  // no id field: the line number

  r = parse({{"id", "x1"}, {"conversations", {{{"from", "human"}, {"value", "Q"}}, {{"from", "gpt"}, {"value", "R"}}}}});
  EXPECT_EQ(r.id, "x1");
  EXPECT_EQ(r.messages[0].role, "user");
  EXPECT_EQ(r.messages[1].role, "assistant");

  r = parse({{"instruction", "Do"}, {"input", "this"}, {"output", "done"}});
  EXPECT_EQ(r.messages[0].content, "Do\n\nthis");
  r = parse({{"instruction", "Do"}, {"input", ""}, {"output", "done"}});
  EXPECT_EQ(r.messages[0].content, "Do");

  r = parse({{"question", "q"}, {"answer", "a"}});  // GSM8K
  EXPECT_EQ(r.messages[0].content, "q");
  EXPECT_EQ(r.messages[1].content, "a");
  r = parse({{"problem", "p"}, {"solution", "s"}, {"answer", "x"}});  // MATH: solution wins
  EXPECT_EQ(r.messages[1].content, "s");
  r = parse({{"question", "q"}, {"thinking_trajectories", {"t1"}}, {"attempt", "a"}});  // s1K
  EXPECT_EQ(r.messages[1].content, "t1\n\na");

  CorpusOptions o;  // Sky-T1: response in a one-element list under "code"
  o.prompt_field = "question";
  o.response_fields = {"code"};
  r = parse({{"question", "q"}, {"code", {"trace"}}, {"idx", 3}}, o);
  EXPECT_EQ(r.messages[0].content, "q");
  EXPECT_EQ(r.messages[1].content, "trace");
}

TEST(CorpusTest, BadRecordsAreDataErrors) {
  EXPECT_NE(data_error("{\"question\": \"q\"").find("malformed JSON"), std::string::npos);
  EXPECT_NE(data_error("[1, 2]").find("expected a JSON object"), std::string::npos);
  EXPECT_NE(data_error("{\"foo\": 1}").find("no known record layout"), std::string::npos);
  EXPECT_NE(data_error("{\"question\": \"q\", \"answer\": 5}").find("'answer': expected a string"),
            std::string::npos);
  EXPECT_NE(data_error("{\"question\": \"q\", \"answer\": \"\"}").find("empty response"),
            std::string::npos);
  EXPECT_NE(data_error("{\"question\": \"q\xff\", \"answer\": \"a\"}").find("invalid UTF-8"),
            std::string::npos);
  EXPECT_NE(data_error(R"({"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "u"}]})")
                .find("last message"),
            std::string::npos);
  EXPECT_NE(data_error(R"({"messages": [{"role": "wizard", "content": "a"}]})").find("unknown role"),
            std::string::npos);
  CorpusOptions o;
  o.response_fields = {"missing"};
  EXPECT_NE(data_error("{\"a\": \"b\"}", o).find("missing field 'missing'"), std::string::npos);
}

TEST(TemplateTest, RendersEachPresetWithTheResponseLast) {
  const std::vector<Message> conv = {{"system", "Be brief."}, {"user", "Hi?"}, {"assistant", "Hello."}};
  Rendered r = render(load_chat_template("chatml"), conv);
  EXPECT_EQ(r.text,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n"
            "<|im_start|>assistant\nHello.");
  EXPECT_EQ(r.text.substr(r.response_begin), "Hello.");
  EXPECT_EQ(r.response_end, r.text.size());

  r = render(load_chat_template("qwen2.5"), {{"user", "Hi?"}, {"assistant", "Hello."}});
  EXPECT_EQ(r.text.rfind("<|im_start|>system\nYou are Qwen", 0), 0u);

  r = render(load_chat_template("llama3"), conv);
  EXPECT_EQ(r.text,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello.");

  r = render(load_chat_template("mistral"), conv);
  EXPECT_EQ(r.text, "<s>[INST] Be brief.\n\nHi? [/INST]Hello.");

  // Gemma's and Llama 3's templates trim each message's content (Jinja's | trim); Gemma 3 keeps
  // the system message it puts before the first user message as it is.
  r = render(load_chat_template("gemma"), {{"system", "Sys "}, {"user", "  spaced  \n"}, {"assistant", "\n answer \n"}});
  EXPECT_EQ(r.text, "<bos><start_of_turn>user\nSys \n\nspaced<end_of_turn>\n<start_of_turn>model\nanswer");
  EXPECT_EQ(r.text.substr(r.response_begin), "answer");
  r = render(load_chat_template("llama3"), {{"user", " Hi? "}, {"assistant", "Hello.\n"}});
  EXPECT_EQ(r.text, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi?<|eot_id|>"
                    "<|start_header_id|>assistant<|end_header_id|>\n\nHello.");
  EXPECT_EQ(render(load_chat_template("chatml"), {{"user", " Q "}, {"assistant", "A\n"}}).text,
            "<|im_start|>user\n Q <|im_end|>\n<|im_start|>assistant\nA\n");  // ChatML keeps it

  r = render(load_chat_template("plain", "\n### "), {{"user", "Q"}, {"assistant", "A"}});
  EXPECT_EQ(r.text, "Q\n### A");
  EXPECT_EQ(r.response_begin, 6u);
}

TEST(TemplateTest, DetectsPresetsAndReadsFiles) {
  EXPECT_EQ(detect_template(tok_dir("mistral")), "plain");  // its chat_template is empty
  EXPECT_EQ(detect_template(model_dir("stories260K")), "plain");
  if (fs::exists(tok_dir("qwen3"))) {
    EXPECT_EQ(detect_template(tok_dir("qwen3")), "qwen3");
    EXPECT_EQ(detect_template(tok_dir("qwen2_5")), "qwen2.5");
    EXPECT_EQ(detect_template(tok_dir("llama3_2")), "llama3.1");
  }
  const fs::path file = fs::path(AIR_TEST_DATA_DIR) / ".." / ".." / "configs" / "templates" / "alpaca.json";
  const ChatTemplate t = load_chat_template(file.string());
  const Rendered r = render(t, {{"user", "Add 2 and 2."}, {"assistant", "4"}});
  EXPECT_NE(r.text.find("### Instruction:\nAdd 2 and 2."), std::string::npos);
  EXPECT_EQ(r.text.substr(r.response_begin), "4");
  EXPECT_THROW(load_chat_template("no-such-template"), UsageError);
}

// Tokenizing the whole rendered text once gives the exact response span, also where the
// boundary falls inside a token.
TEST(SampleTest, ResponseSpanIsTokenExact) {
  const StepSplitter steps;
  std::string absent;
  for (const std::string name : {"gpt2", "mistral", "llama2-spm", "qwen3"}) {
    if (!fs::exists(tok_dir(name))) {
      absent += " " + name;
      continue;
    }
    const auto tok = load_tokenizer(tok_dir(name));
    for (const std::string sep : {"\n\n", " ", ""}) {
      Record rec;
      rec.messages = {{"user", "Lily has 3 apples."}, {"assistant", "She gives 1 away.\n\nSo 2 are left."}};
      const Sample s = prepare_sample(rec, load_chat_template("plain", sep), *tok, steps, {});
      const Encoding whole = tok->encode(s.rendered.text, true);
      ASSERT_GE(whole.ids.size(), s.ids.size());
      EXPECT_TRUE(std::equal(s.ids.begin(), s.ids.end(), whole.ids.begin())) << name;
      const size_t rb = s.rendered.response_begin;
      // Every prompt token ends at or before the response; the first response token reaches
      // into it; the response tokens cover the response to its end.
      for (int64_t k = 0; k < s.prompt_tokens; ++k) EXPECT_LE(s.offsets[k].second, rb) << name;
      EXPECT_GT(s.offsets[s.prompt_tokens].second, rb) << name << " sep '" << sep << "'";
      EXPECT_EQ(s.offsets.back().second, s.rendered.response_end) << name;
      ASSERT_FALSE(s.steps.empty());
      EXPECT_EQ(s.steps.front().token_begin, 0);
      EXPECT_EQ(s.steps.back().token_end, s.response_tokens());
    }
  }
  EXPECT_TRUE(absent.empty()) << "tokenizers absent:" << absent << " (the build unpacks them: scripts/unpack-tokenizers.sh)";
}

// The same for the presets of the other families on their tokenizers: the sample's ids are the
// rendered text's (no second BOS), and the response starts exactly where the prompt ends.
TEST(SampleTest, PresetResponseStartIsTokenExact) {
  const StepSplitter steps;
  std::string absent;
  for (const auto& [preset, name] : std::vector<std::pair<std::string, std::string>>{
           {"gemma", "gemma3"}, {"phi3", "mistral"}, {"phi4", "cl100k"}, {"olmo2", "cl100k"},
           {"deepseek", "deepseek_v3"}, {"llama3", "llama3_2"}, {"llama3.1", "llama3_2"}, {"chatml", "qwen3"},
           {"qwen3", "qwen3"}}) {
    if (!fs::exists(tok_dir(name))) {
      absent += " " + name;
      continue;
    }
    const auto tok = load_tokenizer(tok_dir(name));
    const ChatTemplate t = load_chat_template(preset);
    Record rec;
    rec.messages = {{"system", "Be brief."}, {"user", "Lily has 3 apples."}, {"assistant", "She gives 1 away.\n\nSo 2 are left."}};
    const Sample s = prepare_sample(rec, t, *tok, steps, {});
    const Encoding whole = tok->encode(s.rendered.text, t.add_special_tokens);
    ASSERT_GE(whole.ids.size(), s.ids.size()) << preset;
    EXPECT_TRUE(std::equal(s.ids.begin(), s.ids.end(), whole.ids.begin())) << preset;
    const size_t rb = s.rendered.response_begin;
    for (int64_t k = 0; k < s.prompt_tokens; ++k) EXPECT_LE(s.offsets[k].second, rb) << preset;
    EXPECT_EQ(s.offsets[s.prompt_tokens].first, rb) << preset;  // these templates end the prompt on a marker or newline
    EXPECT_EQ(s.offsets.back().second, s.rendered.response_end) << preset;
    EXPECT_EQ(s.rendered.text.substr(rb, s.rendered.response_end - rb), "She gives 1 away.\n\nSo 2 are left.") << preset;
  }
  EXPECT_TRUE(absent.empty()) << "tokenizers absent:" << absent << " (the build unpacks them: scripts/unpack-tokenizers.sh)";
}

std::vector<size_t> starts_every(size_t n, size_t step) {
  std::vector<size_t> v;
  for (size_t i = 0; i < n; i += step) v.push_back(i);
  return v;
}

TEST(StepsTest, EdgeCases) {
  const StepSplitter split("\\n\\s*\\n", 2);
  // No delimiter: one step with every token.
  std::string t = "abcdefgh";
  auto s = split.split(t, starts_every(t.size(), 2));
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].token_end, 4);

  // Two steps; the delimiter ends the first.
  t = "aaaa\n\nbbbb";
  s = split.split(t, starts_every(t.size(), 2));  // tokens at 0,2,4,6,8
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(t.substr(s[0].begin, s[0].end - s[0].begin), "aaaa\n\n");
  EXPECT_EQ(s[0].token_end, 3);  // token at 4 ("\n\n") starts in step 0
  EXPECT_EQ(s[1].token_begin, 3);

  // Leading and trailing delimiters join their neighbours; spans still cover the text.
  t = "\n\naaaa\n\nbbbb\n\n";
  s = split.split(t, starts_every(t.size(), 2));
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].begin, 0u);
  EXPECT_EQ(s[1].end, t.size());
  EXPECT_EQ(s[0].token_begin, 0);
  EXPECT_EQ(s[1].token_end, static_cast<int64_t>(starts_every(t.size(), 2).size()));

  // A token spanning the boundary belongs to the step holding its first byte.
  t = "aaa\n\nbbb";
  s = split.split(t, {0, 2, 6});  // token 1 = "a\n\nb" starts in step 0
  ASSERT_EQ(s.size(), 1u);        // step 1 has one token < 2: merged back
  const StepSplitter split1("\\n\\s*\\n", 1);
  s = split1.split(t, {0, 2, 6});
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].token_end, 2);
  EXPECT_EQ(s[1].token_begin, 2);

  // Very short steps merge into the step before (the first into the next).
  t = "a\n\nbbbbbbbb\n\nc";
  s = split.split(t, {0, 3, 5, 7, 9, 11, 13});
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].token_end, 7);
  s = split.split(t, {0, 1, 3, 5, 7, 9, 11, 13});  // "a" and "\n" make a first step of 2
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[1].token_end, 8);

  // A step whose bytes hold no token start is dropped, its bytes joining the previous one.
  t = "aaaa\n\nb\n\ncccc";
  s = split1.split(t, {0, 2, 9, 11});
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].end, 9u);
  EXPECT_THROW(StepSplitter("(", 2), UsageError);
  EXPECT_THROW(StepSplitter("\\n", 0), UsageError);
}

class ReadCorpusTest : public TempDirTest {};

TEST_F(ReadCorpusTest, BadLinesBecomeRejectsWithLineNumbers) {
  const fs::path p = tmp_ / "c.jsonl";
  write_text(p, "{\"question\": \"Once upon a time\", \"answer\": \"there was a cat.\"}\n"
                "{\"question\": \"x\"\n"
                "\n"
                "{\"question\": \"q\", \"answer\": \"\"}\n"
                "{\"id\": 9, \"question\": \"Lily\", \"answer\": \"" + std::string(600, 'a') + "\"}\n"
                "{\"question\": \"q\xfe\", \"answer\": \"a\"}\n");
  const auto tok = load_tokenizer(model_dir("stories260K"));
  DatasetOptions opt;
  opt.sample.max_length = 100;
  std::vector<Sample> got;
  const CorpusStats st = read_corpus(p.string(), load_chat_template("plain"), *tok, StepSplitter(),
                                     opt, [&](Sample&& s) { got.push_back(std::move(s)); });
  EXPECT_EQ(st.lines, 5);
  EXPECT_EQ(st.samples, 1);
  ASSERT_EQ(st.rejects.size(), 4u);
  EXPECT_EQ(st.rejects[0].line, 2);
  EXPECT_NE(st.rejects[0].reason.find("malformed JSON"), std::string::npos);
  EXPECT_EQ(st.rejects[1].line, 4);
  EXPECT_EQ(st.rejects[2].line, 5);
  EXPECT_EQ(st.rejects[2].id, "9");
  EXPECT_NE(st.rejects[2].reason.find(" tokens, more than " + option_name("max_length") + " 100"), std::string::npos);
  EXPECT_EQ(st.rejects[3].line, 6);
  EXPECT_NE(st.rejects[3].raw.find("q\xfe"), std::string::npos);

  opt.sample.truncate = true;
  got.clear();
  const CorpusStats st2 = read_corpus(p.string(), load_chat_template("plain"), *tok, StepSplitter(),
                                      opt, [&](Sample&& s) { got.push_back(std::move(s)); });
  EXPECT_EQ(st2.samples, 2);
  EXPECT_EQ(st2.truncated, 1);
  EXPECT_EQ(got[1].ids.size(), 100u);
  EXPECT_TRUE(got[1].truncated);

  opt.strict = true;
  try {
    read_corpus(p.string(), load_chat_template("plain"), *tok, StepSplitter(), opt, [](Sample&&) {});
    ADD_FAILURE() << "strict did not stop";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find(p.string() + ":2:"), std::string::npos) << e.what();
  }
}


// Shards split the records (non-blank lines, good or bad) among themselves: each record in
// exactly one, every count-th from the index-th; an error thrown by the sample callback is its
// own, not a reject of the line.
TEST_F(ReadCorpusTest, ShardsPartitionTheRecordsAndMaxSamplesStops) {
  const fs::path p = tmp_ / "c.jsonl";
  std::string text;
  for (int i = 0; i < 11; ++i) {
    if (i == 4) text += "\n";  // a blank line: no record
    text += i == 7 ? std::string("{\"question\": \"x\"\n")
                   : "{\"id\": \"r" + std::to_string(i) + "\", \"question\": \"Once\", \"answer\": \"a cat.\"}\n";
  }
  write_text(p, text);
  const auto tok = load_tokenizer(model_dir("stories260K"));
  for (int64_t count : {1, 2, 3, 20}) {
    std::vector<int64_t> seen;
    int64_t lines = 0;
    for (int64_t index = 0; index < count; ++index) {
      DatasetOptions opt;
      opt.shard = {index, count};
      std::vector<int64_t> mine;
      const CorpusStats st = read_corpus(
          p.string(), load_chat_template("plain"), *tok, StepSplitter(), opt,
          [&](Sample&& s) { mine.push_back(s.record.line); },
          [&](const Reject& r) { mine.push_back(r.line); });
      std::sort(mine.begin(), mine.end());
      EXPECT_EQ(st.lines, static_cast<int64_t>(mine.size()));
      lines += st.lines;
      for (int64_t l : mine) {
        const int64_t record = l <= 4 ? l - 1 : l - 2;  // line 5 is blank
        EXPECT_EQ(record % count, index) << "line " << l << " in shard " << index << "/" << count;
      }
      seen.insert(seen.end(), mine.begin(), mine.end());
    }
    std::sort(seen.begin(), seen.end());
    std::vector<int64_t> all{1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12};
    EXPECT_EQ(seen, all) << count;
    EXPECT_EQ(lines, 11);
  }
  DatasetOptions bad;
  bad.shard = {2, 2};
  EXPECT_THROW(read_corpus(p.string(), load_chat_template("plain"), *tok, StepSplitter(), bad,
                           [](Sample&&) {}),
               OptionError);
  // "I/N" is parsed in one place, and every malformed or out-of-range form is refused.
  EXPECT_EQ(Shard::parse("3/8").index, 3);
  EXPECT_EQ(Shard::parse("3/8").count, 8);
  for (const char* t : {"8/8", "-1/2", "1/0", "1", "1/2x", "a/b", "1-2", ""})
    EXPECT_THROW(Shard::parse(t), OptionError) << t;
  // max_samples stops the reading after that many good samples (the probe reads only its share).
  {
    DatasetOptions opt;
    opt.max_samples = 7;  // records 0-6 are good; the bad record 7 is never reached
    std::vector<int64_t> lines;
    const CorpusStats st = read_corpus(p.string(), load_chat_template("plain"), *tok, StepSplitter(), opt,
                                       [&](Sample&& s) { lines.push_back(s.record.line); });
    EXPECT_EQ(lines, (std::vector<int64_t>{1, 2, 3, 4, 6, 7, 8}));
    EXPECT_EQ(st.lines, 7);
    EXPECT_TRUE(st.rejects.empty());
  }
  // skip passes over records after parsing (counted as read and skipped, never tokenized); its
  // own errors are not taken for rejects.
  {
    DatasetOptions opt;
    opt.skip = [](const Record& r) { return r.id == "r1" || r.id == "r2"; };
    std::vector<std::string> ids;
    const CorpusStats st = read_corpus(p.string(), load_chat_template("plain"), *tok, StepSplitter(), opt,
                                       [&](Sample&& s) { ids.push_back(s.record.id); });
    EXPECT_EQ(st.passed_over, 2);
    EXPECT_EQ(st.lines, 11);
    EXPECT_EQ(st.rejects.size(), 1u);
    EXPECT_EQ(ids, (std::vector<std::string>{"r0", "r3", "r4", "r5", "r6", "r8", "r9", "r10"}));
    opt.skip = [](const Record&) -> bool { throw DataError("from skip"); };
    EXPECT_THROW(read_corpus(p.string(), load_chat_template("plain"), *tok, StepSplitter(), opt, [](Sample&&) {}),
                 DataError);
  }
  // The callback's own DataError reaches the caller as it was, not as a reject of the line.
  DatasetOptions opt;
  try {
    read_corpus(p.string(), load_chat_template("plain"), *tok, StepSplitter(), opt,
                [](Sample&&) { throw DataError("from the callback"); });
    ADD_FAILURE() << "the callback's error was swallowed";
  } catch (const DataError& e) {
    EXPECT_STREQ(e.what(), "from the callback");
  }
}

}  // namespace
}  // namespace air::test
