// A host-side, multi-layer recurrent state: for each layer, one array per state tensor
// (conv, ssm, ...), shaped by the state shape calculators. Used by tests, by the CPU model for a
// sequence's state outside the pool, and to move one sequence's state in and out of a pool.
// Values are held as float and rounded to each tensor's dtype when stored, so a bf16 state
// behaves like the pool's bf16 memory.
#ifndef MAMBASERVE_STATE_MANAGER_BLOCK_STATE_H_
#define MAMBASERVE_STATE_MANAGER_BLOCK_STATE_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "state_manager/state_shapes.h"

namespace mambaserve {

class BlockState {
 public:
  using LayerValues = std::vector<std::vector<float>>;  // one array per state tensor

  // All-zero state for `num_layers` layers, each with the tensors of `shapes`.
  static absl::StatusOr<BlockState> Zeros(int64_t num_layers, const LayerStateShapes& shapes);

  int64_t num_layers() const { return static_cast<int64_t>(layers_.size()); }
  const LayerStateShapes& shapes() const { return shapes_; }

  absl::StatusOr<const LayerValues*> GetLayer(int64_t layer) const;
  // Replaces a layer's values; every array must match its tensor's element count. Values are
  // rounded to the tensor's dtype.
  absl::Status SetLayer(int64_t layer, LayerValues values);

  // An independent deep copy (BlockState is move-only otherwise, so copies are explicit).
  BlockState Clone() const;

  BlockState(BlockState&&) = default;
  BlockState& operator=(BlockState&&) = default;

 private:
  BlockState() = default;
  BlockState(const BlockState&) = default;
  absl::Status CheckLayer(int64_t layer) const;

  LayerStateShapes shapes_;
  std::vector<LayerValues> layers_;
};

}  // namespace mambaserve

#endif  // MAMBASERVE_STATE_MANAGER_BLOCK_STATE_H_
