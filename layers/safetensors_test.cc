#include "layers/safetensors.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"

namespace mambaserve {
namespace {

namespace fs = std::filesystem;

// Writes a safetensors file from a raw header JSON and data bytes (so tests can also write
// corrupt files).
void WriteRaw(const std::string& path, const std::string& header, const std::string& data) {
  std::ofstream out(path, std::ios::binary);
  uint64_t n = header.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << header << data;
}

std::string FloatBytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("st_test_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

void ExpectErrorMentions(const absl::Status& st, std::initializer_list<std::string> words) {
  ASSERT_FALSE(st.ok());
  for (const auto& w : words) {
    EXPECT_NE(st.message().find(w), absl::string_view::npos) << st.message() << " lacks " << w;
  }
}

TEST_F(SafetensorsTest, ReadsSlicesOfEveryDtype) {
  // a: F32 [3, 4] = 0..11; b: BF16 [2] = {1.5, -2}; c: F16 [2] = {0.25, 3}.
  std::vector<float> a(12);
  for (int i = 0; i < 12; ++i) a[i] = static_cast<float>(i);
  bf16 b[2] = {ToBf16(1.5f), ToBf16(-2.0f)};
  f16 c[2] = {ToF16(0.25f), ToF16(3.0f)};
  std::string data = FloatBytes(a) + std::string(reinterpret_cast<char*>(b), 4) +
                     std::string(reinterpret_cast<char*>(c), 4);
  WriteRaw(Path("m.safetensors"),
           R"({"a":{"dtype":"F32","shape":[3,4],"data_offsets":[0,48]},)"
           R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[48,52]},)"
           R"("c":{"dtype":"F16","shape":[2],"data_offsets":[52,56]},"__metadata__":{"x":"y"}})",
           data);
  auto f = SafetensorsFile::Open(Path("m.safetensors"));
  ASSERT_TRUE(f.ok()) << f.status();
  std::vector<float> out;
  ASSERT_TRUE((*f)->ReadAsFloat("a", {{1, 2}, {1, 2}}, &out).ok());
  EXPECT_EQ(out, (std::vector<float>{5, 6, 9, 10}));
  ASSERT_TRUE((*f)->ReadAsFloat("b", {}, &out).ok());
  EXPECT_EQ(out, (std::vector<float>{1.5f, -2.0f}));
  ASSERT_TRUE((*f)->ReadAsFloat("c", {}, &out).ok());
  EXPECT_EQ(out, (std::vector<float>{0.25f, 3.0f}));
  ExpectErrorMentions((*f)->ReadAsFloat("a", {{2, 2}, {0, 4}}, &out), {"'a'", "outside"});
  ExpectErrorMentions((*f)->ReadAsFloat("zz", {}, &out), {"m.safetensors", "'zz'"});
}

TEST_F(SafetensorsTest, RefusesCorruptFilesNamingFileAndTensor) {
  const std::string data = FloatBytes({1, 2, 3, 4});
  WriteRaw(Path("oob.safetensors"), R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,32]}})",
           data);
  ExpectErrorMentions(SafetensorsFile::Open(Path("oob.safetensors")).status(),
                      {"oob.safetensors", "'w'", "outside"});
  WriteRaw(Path("shape.safetensors"), R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})",
           data);
  ExpectErrorMentions(SafetensorsFile::Open(Path("shape.safetensors")).status(),
                      {"'w'", "do not match"});
  WriteRaw(Path("overlap.safetensors"),
           R"({"u":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
           R"("v":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
           data);
  ExpectErrorMentions(SafetensorsFile::Open(Path("overlap.safetensors")).status(),
                      {"'u'", "'v'", "overlap"});
  // 2^62 * 4 elements of 4 bytes wrap around to 0 bytes in 64-bit arithmetic.
  WriteRaw(Path("wrap.safetensors"),
           R"({"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]}})", data);
  ExpectErrorMentions(SafetensorsFile::Open(Path("wrap.safetensors")).status(),
                      {"'w'", "larger than the file"});
  WriteRaw(Path("dtype.safetensors"), R"({"w":{"dtype":"Q4","shape":[4],"data_offsets":[0,16]}})",
           data);
  ExpectErrorMentions(SafetensorsFile::Open(Path("dtype.safetensors")).status(), {"Q4"});
  WriteRaw(Path("json.safetensors"), R"({"w":)", data);
  ExpectErrorMentions(SafetensorsFile::Open(Path("json.safetensors")).status(), {"JSON"});
  {
    std::ofstream out(Path("huge.safetensors"), std::ios::binary);
    uint64_t n = uint64_t{1} << 40;
    out.write(reinterpret_cast<const char*>(&n), 8);
  }
  ExpectErrorMentions(SafetensorsFile::Open(Path("huge.safetensors")).status(), {"limit"});
  {
    std::ofstream out(Path("short.safetensors"), std::ios::binary);
    out << "abc";
  }
  ExpectErrorMentions(SafetensorsFile::Open(Path("short.safetensors")).status(), {"truncated"});
  // A valid file cut short: the header promises more bytes than exist.
  WriteRaw(Path("cut.safetensors"), R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
           data.substr(0, 10));
  ExpectErrorMentions(SafetensorsFile::Open(Path("cut.safetensors")).status(),
                      {"cut.safetensors", "'w'"});
  EXPECT_EQ(SafetensorsFile::Open(Path("absent.safetensors")).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(SafetensorsTest, ShardedCheckpointWithIndex) {
  WriteRaw(Path("model-00001-of-00002.safetensors"),
           R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", FloatBytes({1, 2}));
  WriteRaw(Path("model-00002-of-00002.safetensors"),
           R"({"y":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", FloatBytes({7}));
  std::ofstream(Path("model.safetensors.index.json"))
      << R"({"metadata":{},"weight_map":{"x":"model-00001-of-00002.safetensors",)"
      << R"("y":"model-00002-of-00002.safetensors"}})";
  auto c = SafetensorsCheckpoint::Open(dir_.string());
  ASSERT_TRUE(c.ok()) << c.status();
  std::vector<float> out;
  ASSERT_TRUE(c->ReadAsFloat("y", {}, &out).ok());
  EXPECT_EQ(out, std::vector<float>{7});
  EXPECT_TRUE(c->Has("x"));
  EXPECT_EQ(c->Find("nope").status().code(), absl::StatusCode::kNotFound);
  // An index naming a tensor its file lacks is refused.
  std::ofstream(Path("model.safetensors.index.json"))
      << R"({"weight_map":{"z":"model-00001-of-00002.safetensors"}})";
  ExpectErrorMentions(SafetensorsCheckpoint::Open(dir_.string()).status(), {"'z'"});
}

TEST(SafetensorsGolden, ReadsGoldenCheckpoint) {
  auto c = SafetensorsCheckpoint::Open(std::string(MAMBASERVE_TEST_DATA_DIR) + "/golden/m2_g1");
  ASSERT_TRUE(c.ok()) << c.status();
  auto info = c->Find("backbone.layers.0.mixer.in_proj.weight");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ((*info)->shape, (std::vector<int64_t>{648, 128}));
  std::vector<float> rows, all;
  ASSERT_TRUE(
      c->ReadAsFloat("backbone.layers.0.mixer.in_proj.weight", {{256, 3}, {0, 128}}, &rows).ok());
  ASSERT_TRUE(c->ReadAsFloat("backbone.layers.0.mixer.in_proj.weight", {}, &all).ok());
  for (int i = 0; i < 3 * 128; ++i) ASSERT_EQ(rows[i], all[256 * 128 + i]);
}

}  // namespace
}  // namespace mambaserve
