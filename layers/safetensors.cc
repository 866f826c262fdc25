#include "layers/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"

namespace mambaserve {
namespace {

using json = nlohmann::json;
constexpr int64_t kMaxHeaderBytes = 100 << 20;

int64_t StDTypeSize(StDType t) {
  switch (t) {
    case StDType::kF32:
    case StDType::kI32:
      return 4;
    case StDType::kBF16:
    case StDType::kF16:
      return 2;
    case StDType::kI64:
      return 8;
  }
  return 0;
}

absl::StatusOr<StDType> ParseStDType(const std::string& s) {
  if (s == "F32") return StDType::kF32;
  if (s == "BF16") return StDType::kBF16;
  if (s == "F16") return StDType::kF16;
  if (s == "I32") return StDType::kI32;
  if (s == "I64") return StDType::kI64;
  return absl::InvalidArgumentError(absl::StrCat("unsupported dtype ", s));
}

// Element i of a tensor's bytes as double: the float types through core's conversions.
double LoadElement(const uint8_t* base, StDType t, int64_t i) {
  switch (t) {
    case StDType::kF32:
      return LoadAsFloat(base, DType::kF32, i);
    case StDType::kBF16:
      return LoadAsFloat(base, DType::kBF16, i);
    case StDType::kF16:
      return LoadAsFloat(base, DType::kF16, i);
    case StDType::kI32: {
      int32_t v;
      std::memcpy(&v, base + i * 4, 4);
      return v;
    }
    case StDType::kI64: {
      int64_t v;
      std::memcpy(&v, base + i * 8, 8);
      return static_cast<double>(v);
    }
  }
  return 0;
}

}  // namespace

int64_t SafetensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) munmap(const_cast<uint8_t*>(map_), static_cast<size_t>(map_size_));
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  auto fail = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
  };
  int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", strerror(errno)));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    close(fd);
    return absl::InternalError(absl::StrCat(path, ": fstat failed"));
  }
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->map_size_ = st.st_size;
  if (f->map_size_ < 8) {
    close(fd);
    return fail("truncated: shorter than the 8-byte header length");
  }
  void* m = mmap(nullptr, static_cast<size_t>(f->map_size_), PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (m == MAP_FAILED) return absl::InternalError(absl::StrCat(path, ": mmap failed"));
  f->map_ = static_cast<const uint8_t*>(m);
  uint64_t header_len;
  std::memcpy(&header_len, f->map_, 8);
  if (header_len > static_cast<uint64_t>(kMaxHeaderBytes)) {
    return fail(absl::StrCat("header of ", header_len, " bytes exceeds the 100 MB limit"));
  }
  if (8 + static_cast<int64_t>(header_len) > f->map_size_) {
    return fail(
        absl::StrCat("truncated: header of ", header_len, " bytes but file has ", f->map_size_));
  }
  const char* hdr = reinterpret_cast<const char*>(f->map_ + 8);
  json j = json::parse(hdr, hdr + header_len, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return fail("header is not a JSON object");
  f->data_ = f->map_ + 8 + header_len;
  const int64_t data_size = f->map_size_ - 8 - static_cast<int64_t>(header_len);
  std::vector<const SafetensorInfo*> by_offset;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const json& v = it.value();
    const std::string where = absl::StrCat("tensor '", it.key(), "'");
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") ||
        !v.contains("data_offsets") || !v["dtype"].is_string() || !v["shape"].is_array() ||
        !v["data_offsets"].is_array() || v["data_offsets"].size() != 2) {
      return fail(where + ": needs dtype, shape and data_offsets [begin, end]");
    }
    SafetensorInfo info;
    info.name = it.key();
    auto dt = ParseStDType(v["dtype"].get<std::string>());
    if (!dt.ok()) return fail(absl::StrCat(where, ": ", dt.status().message()));
    info.dtype = *dt;
    int64_t numel = 1;
    for (const auto& d : v["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) return fail(where + ": bad shape");
      info.shape.push_back(d.get<int64_t>());
      // A crafted shape must not overflow the byte count it is checked against.
      if (__builtin_mul_overflow(numel, info.shape.back(), &numel) || numel > data_size) {
        if (numel != 0 || info.shape.back() != 0) {
          return fail(absl::StrCat(where, ": shape is larger than the file"));
        }
      }
    }
    if (!v["data_offsets"][0].is_number_unsigned() || !v["data_offsets"][1].is_number_unsigned()) {
      return fail(where + ": data_offsets must be non-negative integers");
    }
    info.begin = v["data_offsets"][0].get<int64_t>();
    info.end = v["data_offsets"][1].get<int64_t>();
    if (info.begin > info.end || info.end > data_size) {
      return fail(absl::StrCat(where, ": data_offsets [", info.begin, ", ", info.end,
                               ") outside the data section of ", data_size, " bytes"));
    }
    if (info.end - info.begin != info.numel() * StDTypeSize(info.dtype)) {
      return fail(absl::StrCat(where, ": ", info.end - info.begin,
                               " bytes do not match its dtype and shape (",
                               info.numel() * StDTypeSize(info.dtype), " expected)"));
    }
    auto [pos, inserted] = f->tensors_.emplace(info.name, info);
    by_offset.push_back(&pos->second);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const SafetensorInfo* a, const SafetensorInfo* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    if (by_offset[i]->begin < by_offset[i - 1]->end) {
      return fail(absl::StrCat("tensors '", by_offset[i - 1]->name, "' and '", by_offset[i]->name,
                               "' overlap"));
    }
  }
  return f;
}

absl::StatusOr<const SafetensorInfo*> SafetensorsFile::Find(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    return absl::NotFoundError(absl::StrCat(path_, ": missing tensor '", name, "'"));
  }
  return &it->second;
}

absl::Status SafetensorsFile::ReadAsFloat(const std::string& name,
                                          const std::vector<DimRange>& ranges,
                                          std::vector<float>* out) const {
  ASSIGN_OR_RETURN(const SafetensorInfo* info, Find(name));
  const int rank = static_cast<int>(info->shape.size());
  std::vector<DimRange> r = ranges;
  if (r.empty()) {
    for (int64_t d : info->shape) r.push_back({0, d});
  }
  if (static_cast<int>(r.size()) != rank) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": tensor '", name, "' has rank ", rank,
                                                   ", slice has ", r.size(), " ranges"));
  }
  std::vector<int64_t> strides(rank, 1);
  for (int d = rank - 2; d >= 0; --d) strides[d] = strides[d + 1] * info->shape[d + 1];
  int64_t count = 1;
  for (int d = 0; d < rank; ++d) {
    if (r[d].begin < 0 || r[d].size < 0 || r[d].begin + r[d].size > info->shape[d]) {
      return absl::OutOfRangeError(absl::StrCat(path_, ": tensor '", name, "' dim ", d, " has ",
                                                info->shape[d], " entries; slice [", r[d].begin,
                                                ", ", r[d].begin + r[d].size, ") is outside"));
    }
    count *= r[d].size;
  }
  out->resize(static_cast<size_t>(count));
  if (count == 0) return absl::OkStatus();
  const int64_t esize = StDTypeSize(info->dtype);
  const uint8_t* base = data_ + info->begin;
  std::vector<int64_t> idx(rank, 0);
  // Walk the block in row-major order; the innermost dimension is a contiguous run.
  const int64_t inner = rank == 0 ? 1 : r[rank - 1].size;
  for (int64_t o = 0; o < count; o += inner) {
    int64_t off = 0;
    for (int d = 0; d < rank; ++d) off += (r[d].begin + idx[d]) * strides[d];
    const uint8_t* p = base + off * esize;
    if (info->dtype == StDType::kF32) {
      std::memcpy(out->data() + o, p, static_cast<size_t>(inner) * 4);
    } else {
      for (int64_t i = 0; i < inner; ++i) {
        (*out)[static_cast<size_t>(o + i)] = static_cast<float>(LoadElement(p, info->dtype, i));
      }
    }
    for (int d = rank - 2; d >= 0; --d) {
      if (++idx[d] < r[d].size) break;
      idx[d] = 0;
    }
  }
  return absl::OkStatus();
}

absl::Status SafetensorsFile::ReadAsInt(const std::string& name, std::vector<int64_t>* out) const {
  ASSIGN_OR_RETURN(const SafetensorInfo* info, Find(name));
  if (info->dtype != StDType::kI32 && info->dtype != StDType::kI64) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": tensor '", name, "' is not integer"));
  }
  out->resize(static_cast<size_t>(info->numel()));
  for (int64_t i = 0; i < info->numel(); ++i) {
    (*out)[static_cast<size_t>(i)] =
        static_cast<int64_t>(LoadElement(data_ + info->begin, info->dtype, i));
  }
  return absl::OkStatus();
}

absl::StatusOr<SafetensorsCheckpoint> SafetensorsCheckpoint::Open(const std::string& dir) {
  SafetensorsCheckpoint c;
  std::vector<std::string> files;
  const std::string index_path = dir + "/model.safetensors.index.json";
  std::ifstream index(index_path);
  if (index.good()) {
    std::stringstream ss;
    ss << index.rdbuf();
    json j = json::parse(ss.str(), nullptr, false);
    if (j.is_discarded() || !j.contains("weight_map") || !j["weight_map"].is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": needs a weight_map object"));
    }
    std::map<std::string, std::string> want;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat(index_path, ": weight_map entry '", it.key(), "' is not a file name"));
      }
      want[it.key()] = it.value().get<std::string>();
      if (std::find(files.begin(), files.end(), want[it.key()]) == files.end()) {
        files.push_back(want[it.key()]);
      }
    }
    for (const auto& name : files) {
      ASSIGN_OR_RETURN(auto f, SafetensorsFile::Open(dir + "/" + name));
      c.files_.push_back(std::move(f));
    }
    for (const auto& [tensor, file] : want) {
      const SafetensorsFile* holder = nullptr;
      for (const auto& f : c.files_) {
        if (f->path() == dir + "/" + file) holder = f.get();
      }
      if (holder == nullptr || !holder->tensors().count(tensor)) {
        return absl::NotFoundError(
            absl::StrCat(index_path, ": tensor '", tensor, "' is not in ", file));
      }
      c.where_[tensor] = holder;
    }
    return c;
  }
  ASSIGN_OR_RETURN(auto f, SafetensorsFile::Open(dir + "/model.safetensors"));
  for (const auto& [name, info] : f->tensors()) c.where_[name] = f.get();
  c.files_.push_back(std::move(f));
  return c;
}

absl::StatusOr<const SafetensorInfo*> SafetensorsCheckpoint::Find(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) {
    return absl::NotFoundError(absl::StrCat("checkpoint has no tensor '", name, "'"));
  }
  return it->second->Find(name);
}

absl::Status SafetensorsCheckpoint::ReadAsFloat(const std::string& name,
                                                const std::vector<DimRange>& ranges,
                                                std::vector<float>* out) const {
  auto it = where_.find(name);
  if (it == where_.end()) {
    return absl::NotFoundError(absl::StrCat("checkpoint has no tensor '", name, "'"));
  }
  return it->second->ReadAsFloat(name, ranges, out);
}

std::vector<std::string> SafetensorsCheckpoint::Names() const {
  std::vector<std::string> n;
  for (const auto& [k, v] : where_) n.push_back(k);
  return n;
}

}  // namespace mambaserve
