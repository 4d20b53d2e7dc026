// Loader validation: every broken-input case must be a CheckpointError that names the file or
// tensor, what was expected and what was found.

#include "air/checkpoint.h"
#include "air/error.h"
#include "air/runtime.h"
#include "air/safetensors.h"
#include "test_util.h"

#include <ATen/ATen.h>

namespace air::test {
namespace {

std::string f32_bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

// Expects fn to throw CheckpointError whose message contains every fragment.
template <class Fn>
void expect_checkpoint_error(Fn&& fn, const std::vector<std::string>& fragments) {
  try {
    fn();
    ADD_FAILURE() << "no error thrown";
  } catch (const CheckpointError& e) {
    for (const auto& f : fragments)
      EXPECT_NE(std::string(e.what()).find(f), std::string::npos)
          << "message '" << e.what() << "' lacks '" << f << "'";
  }
}

class SafetensorsTest : public TempDirTest {};

TEST_F(SafetensorsTest, ReadsTensorsWithoutCopying) {
  const fs::path p = tmp_ / "a.safetensors";
  write_safetensors(p, {{"x", "F32", {2, 3}, f32_bytes({1, 2, 3, 4, 5, 6})},
                        {"s", "F32", {}, f32_bytes({7})}});
  const SafetensorsFile f = SafetensorsFile::open(p);
  ASSERT_TRUE(f.contains("x"));
  at::Tensor x = f.tensor("x");
  EXPECT_EQ(x.sizes(), (std::vector<int64_t>{2, 3}));
  EXPECT_FLOAT_EQ(x[1][2].item<float>(), 6.0f);
  EXPECT_EQ(f.tensor("s").dim(), 0);
  // A view of the mapping: two reads share the same bytes.
  EXPECT_EQ(f.tensor("x").data_ptr(), x.data_ptr());
}

TEST_F(SafetensorsTest, RoundTripsBf16AndF16) {
  const fs::path p = tmp_ / "h.safetensors";
  at::Tensor src = at::arange(6, at::TensorOptions().dtype(at::kFloat)).div(3);
  at::Tensor b = src.to(at::kBFloat16).contiguous(), h = src.to(at::kHalf).contiguous();
  write_safetensors(p, {{"b", "BF16", {6}, std::string(static_cast<char*>(b.data_ptr()), 12)},
                        {"h", "F16", {6}, std::string(static_cast<char*>(h.data_ptr()), 12)}});
  const SafetensorsFile f = SafetensorsFile::open(p);
  EXPECT_TRUE(f.tensor("b").equal(b));
  EXPECT_TRUE(f.tensor("h").equal(h));
}

TEST_F(SafetensorsTest, TruncatedFile) {
  const fs::path p = tmp_ / "t.safetensors";
  write_text(p, "abc");
  expect_checkpoint_error([&] { SafetensorsFile::open(p); }, {p.string(), "truncated", "3 bytes"});
}

TEST_F(SafetensorsTest, HeaderLengthPastEnd) {
  const fs::path p = tmp_ / "t.safetensors";
  write_raw_safetensors(p, "{}", "");
  std::string bytes = read_text(p);
  bytes[0] = 100;  // claims a 100-byte header in a 10-byte file
  write_text(p, bytes);
  expect_checkpoint_error([&] { SafetensorsFile::open(p); },
                          {p.string(), "header length 100", "past the end"});
}

TEST_F(SafetensorsTest, TruncatedData) {
  const fs::path p = tmp_ / "t.safetensors";
  write_safetensors(p, {{"x", "F32", {4}, f32_bytes({1, 2, 3, 4})}});
  std::string bytes = read_text(p);
  write_text(p, bytes.substr(0, bytes.size() - 4));
  expect_checkpoint_error([&] { SafetensorsFile::open(p); },
                          {p.string(), "'x'", "out of range", "12 bytes"});
}

TEST_F(SafetensorsTest, MalformedHeaderJson) {
  const fs::path p = tmp_ / "t.safetensors";
  write_raw_safetensors(p, "{\"x\": {\"dtype\": ", "");
  expect_checkpoint_error([&] { SafetensorsFile::open(p); }, {p.string(), "not valid JSON"});
}

TEST_F(SafetensorsTest, OffsetsOutOfRange) {
  const fs::path p = tmp_ / "t.safetensors";
  write_raw_safetensors(p, R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                        f32_bytes({1, 2}));
  expect_checkpoint_error([&] { SafetensorsFile::open(p); },
                          {p.string(), "tensor 'x'", "[8,16]", "out of range", "8 bytes"});
}

TEST_F(SafetensorsTest, OverlappingOffsets) {
  const fs::path p = tmp_ / "t.safetensors";
  write_raw_safetensors(p,
                        R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                        R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                        f32_bytes({1, 2, 3}));
  expect_checkpoint_error([&] { SafetensorsFile::open(p); }, {p.string(), "'a'", "'b'", "overlap"});
}

TEST_F(SafetensorsTest, ByteSizeMismatch) {
  const fs::path p = tmp_ / "t.safetensors";
  write_raw_safetensors(p, R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
                        f32_bytes({1, 2}));
  expect_checkpoint_error([&] { SafetensorsFile::open(p); },
                          {"'x'", "[3] x F32 needs 12 bytes", "give 8"});
}

TEST_F(SafetensorsTest, UnknownDtypeAndBadShape) {
  const fs::path p = tmp_ / "t.safetensors";
  write_raw_safetensors(p, R"({"x":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}})", "a");
  expect_checkpoint_error([&] { SafetensorsFile::open(p); }, {"'x'", "unknown dtype 'Q4'"});
  write_raw_safetensors(p, R"({"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", "abcd");
  expect_checkpoint_error([&] { SafetensorsFile::open(p); }, {"'x'", "non-negative"});
}

class CheckpointTest : public TempDirTest {};

TEST_F(CheckpointTest, ShardedCheckpointMatchesSingleFile) {
  const fs::path dir = copy_fixture("qwen3", "sharded");
  const auto tensors = read_raw_tensors(dir / "model.safetensors");
  std::vector<RawTensor> a(tensors.begin(), tensors.begin() + tensors.size() / 2);
  std::vector<RawTensor> b(tensors.begin() + tensors.size() / 2, tensors.end());
  write_safetensors(dir / "model-00001-of-00002.safetensors", a);
  write_safetensors(dir / "model-00002-of-00002.safetensors", b);
  nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
  for (const auto& t : a) index["weight_map"][t.name] = "model-00001-of-00002.safetensors";
  for (const auto& t : b) index["weight_map"][t.name] = "model-00002-of-00002.safetensors";
  write_text(dir / "model.safetensors.index.json", index.dump());
  fs::remove(dir / "model.safetensors");

  const Checkpoint sharded = Checkpoint::open(dir);
  EXPECT_EQ(sharded.files().size(), 2u);
  const LoadedModel m1 = load_model(dir, RuntimeOptions{});
  const LoadedModel m2 = load_model(fixture_dir("qwen3"), RuntimeOptions{});
  at::Tensor ids = at::arange(20, at::TensorOptions().dtype(at::kLong)).unsqueeze(0);
  EXPECT_TRUE(m1.model->logits(ids).equal(m2.model->logits(ids)));

  // A shard that is gone.
  fs::remove(dir / "model-00002-of-00002.safetensors");
  expect_checkpoint_error([&] { Checkpoint::open(dir); },
                          {"model.safetensors.index.json", "shard 'model-00002-of-00002.safetensors'",
                           "missing"});
  // A shard that does not hold what the index says.
  write_safetensors(dir / "model-00002-of-00002.safetensors", a);
  expect_checkpoint_error([&] { Checkpoint::open(dir); },
                          {"'" + b.front().name + "'", "does not hold it"});
}

TEST_F(CheckpointTest, MissingTensor) {
  const fs::path dir = copy_fixture("llama", "m");
  auto tensors = read_raw_tensors(dir / "model.safetensors");
  tensors.erase(std::remove_if(tensors.begin(), tensors.end(),
                               [](const RawTensor& t) {
                                 return t.name == "model.layers.2.mlp.up_proj.weight";
                               }),
                tensors.end());
  write_safetensors(dir / "model.safetensors", tensors);
  expect_checkpoint_error([&] { load_model(dir, RuntimeOptions{}); },
                          {dir.string(), "'model.layers.2.mlp.up_proj.weight'", "missing"});
}

TEST_F(CheckpointTest, WrongShape) {
  const fs::path dir = copy_fixture("llama", "m");
  auto tensors = read_raw_tensors(dir / "model.safetensors");
  for (auto& t : tensors)
    if (t.name == "model.layers.1.self_attn.k_proj.weight") t.shape = {t.shape[1], t.shape[0]};
  write_safetensors(dir / "model.safetensors", tensors);
  expect_checkpoint_error([&] { load_model(dir, RuntimeOptions{}); },
                          {"model.safetensors", "'model.layers.1.self_attn.k_proj.weight'",
                           "expected shape [32, 64]", "got [64, 32]"});
}

TEST_F(CheckpointTest, WrongDtype) {
  const fs::path dir = copy_fixture("llama", "m");
  auto tensors = read_raw_tensors(dir / "model.safetensors");
  for (auto& t : tensors)
    if (t.name == "model.norm.weight") t.dtype = "I16";  // same byte size as BF16
  write_safetensors(dir / "model.safetensors", tensors);
  expect_checkpoint_error([&] { load_model(dir, RuntimeOptions{}); },
                          {"'model.norm.weight'", "I16", "expected F32, F16 or BF16"});
}

TEST_F(CheckpointTest, TiedCheckpointNeedsNoLmHeadButUntiedDoes) {
  const fs::path dir = copy_fixture("qwen2", "m");
  auto tensors = read_raw_tensors(dir / "model.safetensors");
  tensors.erase(std::remove_if(tensors.begin(), tensors.end(),
                               [](const RawTensor& t) { return t.name == "lm_head.weight"; }),
                tensors.end());
  write_safetensors(dir / "model.safetensors", tensors);
  expect_checkpoint_error([&] { load_model(dir, RuntimeOptions{}); }, {"'lm_head.weight'", "missing"});
  EXPECT_NO_THROW(load_model(fixture_dir("qwen2-tied"), RuntimeOptions{}));
}

TEST_F(CheckpointTest, NoWeightsAndNoDirectory) {
  const fs::path dir = copy_fixture("llama", "m");
  fs::remove(dir / "model.safetensors");
  expect_checkpoint_error([&] { Checkpoint::open(dir); }, {"no weights", "model.safetensors"});
  expect_checkpoint_error([&] { Checkpoint::open(tmp_ / "nope"); }, {"not a directory"});
}

TEST_F(CheckpointTest, ErrorsCarryLoadingContext) {
  const fs::path dir = copy_fixture("llama", "m");
  write_text(dir / "model.safetensors", "xx");
  expect_checkpoint_error([&] { load_model(dir, RuntimeOptions{}); },
                          {"loading checkpoint " + dir.string(), "truncated"});
}

}  // namespace
}  // namespace air::test
