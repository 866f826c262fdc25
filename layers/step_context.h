// What every layer needs for one forward step: the stream, the cuBLAS handle, the tensor-parallel
// communicator, scratch memory, and the step's batch layout (decodes first, then prefills).
#ifndef MAMBASERVE_LAYERS_STEP_CONTEXT_H_
#define MAMBASERVE_LAYERS_STEP_CONTEXT_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "core/buffer.h"
#include "core/stream.h"
#include "layers/linear.h"
#include "parallel/communicator.h"
#include "state_manager/state_shapes.h"

namespace mambaserve {

// Grow-only scratch buffers, one per slot, reused from step to step (no allocation once warm).
class Workspace {
 public:
  explicit Workspace(Device device) : device_(device) {}
  absl::StatusOr<void*> Get(int slot, int64_t bytes);
  Device device() const { return device_; }
  // A frozen workspace refuses to grow (its buffers are baked into captured CUDA graphs).
  void set_frozen(bool frozen) { frozen_ = frozen; }

 private:
  Device device_;
  bool frozen_ = false;
  std::vector<Buffer> slots_;
};

// Scratch slots; a layer may use any slot from kLayerScratch on.
enum WorkspaceSlot : int {
  kSlotIndices = 0,
  kSlotHidden,
  kSlotResidual,
  kSlotNormed,
  kSlotSelected,
  kSlotLogits,
  kSlotGathered,
  kLayerScratch,
};

// The batch of one step, as the kernels see it. Decode sequences (one token each) come first,
// then prefill sequences. Index arrays live where the kernels run (device memory on GPU).
struct StepBatch {
  int64_t num_tokens = 0;
  int64_t num_decode = 0;              // sequences 0..num_decode-1, token rows 0..num_decode-1
  int64_t num_prefill = 0;             // sequences after them, token rows num_decode..num_tokens-1
  const int32_t* token_ids = nullptr;  // (num_tokens)
  const int32_t* decode_blocks = nullptr;           // (num_decode): state read and updated in place
  const int32_t* prefill_cu_seqlens = nullptr;      // (num_prefill + 1), relative to row num_decode
  const int32_t* prefill_initial_blocks = nullptr;  // (num_prefill), 0 = zero state
  const int32_t* prefill_final_blocks = nullptr;    // (num_prefill)

  // Kernel-written prefix caching (ForwardInput::boundary_blocks); block_size 0 = off.
  int64_t boundary_block_size = 0;
  const int32_t* prefix_offsets32 = nullptr;     // (num_prefill) for the SSD scan
  const int64_t* prefix_offsets64 = nullptr;     // (num_prefill) for the selective scan
  const int32_t* ssd_boundary_blocks = nullptr;  // flat, with offsets (num_prefill + 1)
  const int32_t* ssd_boundary_offsets = nullptr;
  const int32_t* m1_boundary_blocks = nullptr;  // (num_prefill, m1_boundary_stride)
  int64_t m1_boundary_stride = 0;
  // The conv window at each boundary: rows gathered from the step's conv input (x rows of this
  // step, row indices into the whole batch) and, for the oldest rows when the boundary is within
  // W-1 tokens of the chunk start, from the sequence's initial conv state.
  struct BoundaryWindow {
    int32_t dst_block = 0;
    int32_t init_block = 0;
    int64_t rows_from_init = 0;          // first rows, from init_block's window
    const int32_t* init_rows = nullptr;  // device: row indices in the initial window
    int64_t rows_from_x = 0;             // then these rows, from the step's x
    const int32_t* x_rows = nullptr;     // device: row indices into x (0 = first row of the step)
  };
  std::vector<BoundaryWindow> boundary_windows;  // host list
};

struct StepContext {
  const Stream* stream = nullptr;
  const BlasHandle* blas = nullptr;
  Communicator* comm = nullptr;  // null or size 1: no tensor parallelism
  Workspace* workspace = nullptr;
  ConvLayout conv_layout = ConvLayout::kSD;  // of the state pool's conv tensors
  StepBatch batch;
  int tp() const { return comm == nullptr ? 1 : comm->size(); }
};

}  // namespace mambaserve

#endif  // MAMBASERVE_LAYERS_STEP_CONTEXT_H_
