// Where a model's weights come from: a safetensors checkpoint, or seeded random values of the
// right shapes (benchmarks and tensor-parallel tests). Either way a rank reads only the slices
// of its shard.
#ifndef MAMBASERVE_LAYERS_WEIGHT_SOURCE_H_
#define MAMBASERVE_LAYERS_WEIGHT_SOURCE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "configs/mambaserve_config.pb.h"
#include "layers/safetensors.h"
#include "parallel/shard_plan.h"

namespace mambaserve {

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual bool Has(const std::string& name) const = 0;
  virtual absl::StatusOr<std::vector<int64_t>> Shape(const std::string& name) const = 0;
  // The block `ranges` (one per dimension; empty = whole tensor) as float, row-major.
  virtual absl::Status Read(const std::string& name, const std::vector<DimRange>& ranges,
                            std::vector<float>* out) const = 0;
};

class CheckpointWeights : public WeightSource {
 public:
  static absl::StatusOr<std::unique_ptr<CheckpointWeights>> Open(const std::string& dir);
  bool Has(const std::string& name) const override { return ckpt_.Has(name); }
  absl::StatusOr<std::vector<int64_t>> Shape(const std::string& name) const override;
  absl::Status Read(const std::string& name, const std::vector<DimRange>& ranges,
                    std::vector<float>* out) const override;

 private:
  explicit CheckpointWeights(SafetensorsCheckpoint c) : ckpt_(std::move(c)) {}
  SafetensorsCheckpoint ckpt_;
};

// Hugging Face-named tensors of the model `m` with deterministic pseudo-random values: element i
// of tensor `name` depends only on (seed, name, i), so every rank sees the same global tensor
// whatever slice it reads. Values are in realistic ranges (A_log so that A is in [-16, -1],
// dt_bias the inverse softplus of dt in [1e-3, 0.1], norms near 1, linears ~ U(+-1/sqrt(in))).
class RandomWeights : public WeightSource {
 public:
  RandomWeights(const config::ModelConfig& m, uint64_t seed);
  bool Has(const std::string& name) const override { return shapes_.count(name) != 0; }
  absl::StatusOr<std::vector<int64_t>> Shape(const std::string& name) const override;
  absl::Status Read(const std::string& name, const std::vector<DimRange>& ranges,
                    std::vector<float>* out) const override;

 private:
  uint64_t seed_;
  std::map<std::string, std::vector<int64_t>> shapes_;
};

// The first of `candidates` the source has (Hugging Face and state-spaces names differ), or
// NotFound naming them all.
absl::StatusOr<std::string> ResolveWeightName(const WeightSource& src,
                                              const std::vector<std::string>& candidates);

// Checks that tensor `name` has exactly `dims` (the sizes the model config implies); the error
// names the tensor and both shapes.
absl::Status ExpectShape(const WeightSource& src, const std::string& name,
                         const std::vector<int64_t>& dims);

// Reads the rows `rows` (concatenated in order) of a 1-D, 2-D or 3-D tensor, all columns.
absl::Status ReadRows(const WeightSource& src, const std::string& name,
                      const std::vector<IndexRange>& rows, std::vector<float>* out);
// Reads all rows, columns `cols` (concatenated in order) of a 2-D tensor.
absl::Status ReadCols(const WeightSource& src, const std::string& name,
                      const std::vector<IndexRange>& cols, std::vector<float>* out);

}  // namespace mambaserve

#endif  // MAMBASERVE_LAYERS_WEIGHT_SOURCE_H_
