// The paged recurrent-state pool of one layer group: for every layer and every state tensor of
// that layer (conv, ssm, ... from state_manager/state_shapes.h, the only source of shapes), one
// contiguous tensor of shape (num_blocks, *dims) in CPU or CUDA memory. Block 0 is the null
// block: it is never handed to a sequence and is kept zero (kernels skip index 0 for loads and
// stores). All regions live in one allocation, each at a 256-byte aligned offset from its start
// (cudaMalloc memory is 256-byte aligned, CPU memory 64-byte aligned).
#ifndef MAMBASERVE_STATE_MANAGER_STATE_POOL_H_
#define MAMBASERVE_STATE_MANAGER_STATE_POOL_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "core/buffer.h"
#include "core/device.h"
#include "core/stream.h"
#include "core/tensor.h"
#include "state_manager/block_state.h"
#include "state_manager/state_shapes.h"

namespace mambaserve {

struct StatePoolConfig {
  int64_t num_layers = 0;
  LayerStateShapes shapes;                   // the tensors of every layer of the group
  ConvLayout conv_layout = ConvLayout::kSD;  // how tensors named "conv*" are stored
  Device device;
};

// What a kernel needs to address one layer's state tensor: element (block b, i) of the tensor
// lives at base + b * block_stride + i elements (block_stride == numel of one block).
struct StateTensorRef {
  void* base = nullptr;
  int64_t block_stride = 0;  // elements
  int64_t num_blocks = 0;
  DType dtype = DType::kF32;
};

class StatePool {
 public:
  // A pool of exactly `num_blocks` blocks (the null block included; at least 2), all zero.
  static absl::StatusOr<StatePool> Create(const StatePoolConfig& config, int64_t num_blocks);
  // The most blocks (null block included) whose memory fits `budget_bytes` (alignment padding
  // counted). FailedPrecondition / ResourceExhausted when not even 2 blocks fit.
  static absl::StatusOr<int64_t> BlocksForBudget(const StatePoolConfig& config,
                                                 int64_t budget_bytes);
  static absl::StatusOr<StatePool> CreateForBudget(const StatePoolConfig& config,
                                                   int64_t budget_bytes);
  // Bytes of one block over all layers and tensors (no padding).
  static int64_t BytesPerBlock(const StatePoolConfig& config);

  StatePool(StatePool&&) = default;
  StatePool& operator=(StatePool&&) = default;

  int64_t num_layers() const { return config_.num_layers; }
  int64_t num_tensors() const { return static_cast<int64_t>(config_.shapes.size()); }
  int64_t num_blocks() const { return num_blocks_; }
  const LayerStateShapes& shapes() const { return config_.shapes; }
  ConvLayout conv_layout() const { return config_.conv_layout; }
  Device device() const { return config_.device; }
  const StatePoolConfig& config() const { return config_; }
  int64_t nbytes() const { return buffer_.nbytes(); }

  // Kernel accessors. Errors for out-of-range layer/tensor.
  absl::StatusOr<StateTensorRef> Ref(int64_t layer, int64_t tensor) const;
  // The whole (num_blocks, *dims) tensor of one layer as a view.
  absl::StatusOr<TensorView> Tensor(int64_t layer, int64_t tensor) const;
  // Address of block `block` (0 allowed: the null block) of a layer's tensor.
  absl::StatusOr<void*> BlockAddress(int64_t layer, int64_t tensor, int64_t block) const;

  // Zeroes one block in every layer and tensor (on `stream` when given and CUDA).
  absl::Status ZeroBlock(int64_t block, const Stream* stream = nullptr);

  // Host transfers of one block of one layer, values as float (converted from / rounded to each
  // tensor's dtype). Synchronous. Writing block 0 is refused (it must stay zero).
  absl::Status ReadBlock(int64_t layer, int64_t block, BlockState::LayerValues* out) const;
  absl::Status WriteBlock(int64_t layer, int64_t block, const BlockState::LayerValues& values);
  // All layers at once, to/from a BlockState with this pool's layers and shapes.
  absl::StatusOr<BlockState> ReadBlockState(int64_t block) const;
  absl::Status WriteBlockState(int64_t block, const BlockState& state);

 private:
  StatePool() = default;
  absl::Status CheckBlock(int64_t block) const;
  absl::Status CheckLayerTensor(int64_t layer, int64_t tensor) const;
  static std::vector<int64_t> RegionOffsets(const StatePoolConfig& config, int64_t num_blocks,
                                            int64_t* total_bytes);

  StatePoolConfig config_;
  int64_t num_blocks_ = 0;
  Buffer buffer_;
  std::vector<int64_t> offsets_;  // byte offset of region (layer * num_tensors + tensor)
};

}  // namespace mambaserve

#endif  // MAMBASERVE_STATE_MANAGER_STATE_POOL_H_
