// Reading Hugging Face safetensors checkpoints: memory-mapped, header validated, one slice at a
// time, so a tensor-parallel rank touches only the bytes of its own shard.
#ifndef MAMBASERVE_LAYERS_SAFETENSORS_H_
#define MAMBASERVE_LAYERS_SAFETENSORS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/dtype.h"

namespace mambaserve {

enum class StDType { kF32, kBF16, kF16, kI32, kI64 };

struct SafetensorInfo {
  std::string name;
  StDType dtype = StDType::kF32;
  std::vector<int64_t> shape;
  int64_t begin = 0;  // byte offsets into the data section
  int64_t end = 0;
  int64_t numel() const;
};

// A half-open index range [begin, begin + size) along one dimension.
struct DimRange {
  int64_t begin = 0;
  int64_t size = 0;
};

class SafetensorsFile {
 public:
  // Maps `path` and validates the header: size limit (100 MB), JSON, known dtypes, offsets in
  // bounds, byte ranges consistent with dtype x shape and not overlapping.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  const std::map<std::string, SafetensorInfo>& tensors() const { return tensors_; }
  absl::StatusOr<const SafetensorInfo*> Find(const std::string& name) const;

  // Copies the block `ranges` (one per dimension; an empty vector means the whole tensor) of
  // tensor `name`, converted to float, into `out` (row-major over the block).
  absl::Status ReadAsFloat(const std::string& name, const std::vector<DimRange>& ranges,
                           std::vector<float>* out) const;
  // The same for integer tensors.
  absl::Status ReadAsInt(const std::string& name, std::vector<int64_t>* out) const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  const uint8_t* map_ = nullptr;
  int64_t map_size_ = 0;
  const uint8_t* data_ = nullptr;  // start of the data section
  std::map<std::string, SafetensorInfo> tensors_;
};

// A checkpoint directory: `model.safetensors`, or shards listed by
// `model.safetensors.index.json` ({"weight_map": {tensor: file}}).
class SafetensorsCheckpoint {
 public:
  static absl::StatusOr<SafetensorsCheckpoint> Open(const std::string& dir);
  bool Has(const std::string& name) const { return where_.count(name) != 0; }
  absl::StatusOr<const SafetensorInfo*> Find(const std::string& name) const;
  absl::Status ReadAsFloat(const std::string& name, const std::vector<DimRange>& ranges,
                           std::vector<float>* out) const;
  std::vector<std::string> Names() const;

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsFile*> where_;
};

}  // namespace mambaserve

#endif  // MAMBASERVE_LAYERS_SAFETENSORS_H_
