// A Mamba-1 or Mamba-2 language model, this rank's shard of it: embedding (vocab-parallel),
// per layer fused residual add + RMSNorm and the mixer, final norm, LM head (vocab-parallel,
// gathered). One Forward runs a packed batch of decodes and prefills, reading and writing every
// sequence's recurrent state by block index in a StatePool.
#ifndef MAMBASERVE_LAYERS_MAMBA_MODEL_H_
#define MAMBASERVE_LAYERS_MAMBA_MODEL_H_

#include <map>
#include <memory>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "configs/mambaserve_config.pb.h"
#include "core/buffer.h"
#include "core/cuda_graph.h"
#include "core/stream.h"
#include "layers/linear.h"
#include "layers/mamba1_mixer.h"
#include "layers/mamba2_mixer.h"
#include "layers/step_context.h"
#include "layers/step_indices.h"
#include "layers/weight_source.h"
#include "parallel/communicator.h"
#include "state_manager/state_pool.h"
#include "state_manager/state_shapes.h"

namespace mambaserve {

// One step's batch on the host. Sequences 0..num_decode-1 are decodes (one token each, state
// updated in place in initial_blocks[s]); the rest are prefill chunks that start from
// initial_blocks[s] (0 = zero state) and leave their state in final_blocks[s].
struct ForwardInput {
  std::vector<int32_t> token_ids;  // packed in sequence order
  std::vector<int32_t> seq_lens;
  int64_t num_decode = 0;
  std::vector<int32_t> initial_blocks;
  std::vector<int32_t> final_blocks;
  bool all_logits = false;  // logits of every token, else of each sequence's last token
  // Prefix caching, kernel-written mode (vLLM's "all"): with boundary_block_size > 0, prefill
  // sequence s's first token has absolute position prefix_offsets[s], and the state after every
  // block boundary strictly inside the chunk goes to boundary_blocks[s][j] (0 = skip), j-th
  // boundary first: both the scan's SSM state and the conv window. Decodes take no boundaries.
  int64_t boundary_block_size = 0;
  std::vector<int32_t> prefix_offsets;
  std::vector<std::vector<int32_t>> boundary_blocks;
};

class MambaModel {
 public:
  // `comm` may be null (tp = 1); it must outlive the model. Runs on `device` in `dtype`
  // (the CPU backend computes in f32 only).
  static absl::StatusOr<std::unique_ptr<MambaModel>> Load(const config::ModelConfig& m,
                                                          const WeightSource& src, Device device,
                                                          DType dtype, Communicator* comm);

  const config::ModelConfig& config() const { return config_; }
  Device device() const { return device_; }
  DType dtype() const { return dtype_; }
  int tp() const { return comm_ == nullptr ? 1 : comm_->size(); }
  int rank() const { return comm_ == nullptr ? 0 : comm_->rank(); }
  // The stream every kernel of this model runs on (state copies must go on it too).
  const Stream& stream() const { return stream_; }

  // The pool layout this rank's layers need (shapes from state_manager/state_shapes.h).
  absl::StatusOr<StatePoolConfig> PoolConfig(StateDTypes dtypes,
                                             ConvLayout layout = ConvLayout::kSD) const;

  // Runs one step. On return `logits` holds (rows, vocab_size) fp32 on the host of every rank,
  // rows = tokens (all_logits) or sequences. Refuses bad input (ids outside the vocabulary,
  // empty sequences, block indices outside the pool) before any state is touched.
  absl::Status Forward(const ForwardInput& in, StatePool& pool, std::vector<float>* logits);

  // CUDA-graph decode (GPU only): a step of decodes alone, at most `max_batch` of them (0 = off;
  // the default is kDefaultDecodeGraphMaxBatch), replays a graph captured on first use per
  // batch bucket (1, 2, 4, then multiples of 8), padded with null-block decodes. The graphs
  // share one workspace sized for the largest bucket and are captured again for another pool.
  // Tensor parallelism needs NCCL (an MPI collective cannot be captured).
  static constexpr int64_t kDefaultDecodeGraphMaxBatch = 64;
  void SetDecodeGraphMaxBatch(int64_t max_batch);
  static int64_t DecodeGraphBucket(int64_t batch);
  // Captures every bucket's graph for `pool` now (serving does this at startup, so no request
  // waits for a capture). A capture that fails turns graphs off with a warning.
  absl::Status CaptureDecodeGraphs(StatePool& pool);
  int64_t decode_graph_captures() const { return graph_captures_; }
  int64_t decode_graph_replays() const { return graph_replays_; }

 private:
  MambaModel() = default;
  absl::Status Validate(const ForwardInput& in, const StatePool& pool) const;
  // Enqueues the step's device work on stream_, reading the indices `si` uploaded at `di` and
  // taking scratch from `ws`; returns the device logits, (tp, si.logit_rows, local vocab).
  absl::StatusOr<const void*> Enqueue(const StepIndices& si, const int32_t* di, StatePool& pool,
                                      Workspace& ws);
  // Copies the first `rows` of every rank's (rows_alloc, local vocab) logits to the host as
  // (rows, vocab_size) and waits for the stream.
  absl::Status DownloadLogits(const void* gathered, int64_t rows_alloc, int64_t rows,
                              std::vector<float>* logits);
  bool UsesDecodeGraph(const ForwardInput& in) const;
  struct DecodeGraph;
  absl::Status PrepareDecodeGraphs(StatePool& pool);
  // The bucket's graph, captured now if needed; null when the capture failed (graphs are then
  // off, with a warning).
  absl::StatusOr<const DecodeGraph*> DecodeGraphFor(int64_t bucket, StatePool& pool);
  absl::Status ForwardDecodeGraph(const ForwardInput& in, StatePool& pool,
                                  std::vector<float>* logits);

  config::ModelConfig config_;
  Device device_;
  DType dtype_ = DType::kF32;
  DType residual_dtype_ = DType::kF32;
  Communicator* comm_ = nullptr;
  Stream stream_;
  BlasHandle blas_;
  std::unique_ptr<Workspace> workspace_;
  int64_t vocab_local_rows_ = 0;  // padded rows of this rank
  int64_t vocab_row_begin_ = 0;
  int64_t vocab_valid_rows_ = 0;
  Buffer embedding_;
  std::vector<Buffer> layer_norms_;
  Buffer final_norm_;
  std::vector<std::variant<Mamba1Mixer, Mamba2Mixer>> mixers_;
  Linear lm_head_;
  Buffer host_logits_;  // (tp, rows, local vocab) f32 staging, reused across steps

  struct DecodeGraph {
    CudaGraph graph;
    Buffer indices;       // the step's index arrays on the device
    Buffer host_indices;  // page-locked; written before each replay, which copies it to indices
    const void* logits = nullptr;
  };
  struct GraphPoolKey {
    const StatePool* pool = nullptr;
    const void* first_tensor = nullptr;
    int64_t num_blocks = 0;
    int64_t nbytes = 0;
    ConvLayout layout = ConvLayout::kSD;
    bool operator==(const GraphPoolKey&) const = default;
  };
  int64_t graph_max_batch_ = 0;
  std::unique_ptr<Workspace> graph_workspace_;
  GraphPoolKey graph_pool_;
  std::map<int64_t, DecodeGraph> graphs_;  // by bucket
  int64_t graph_captures_ = 0;
  int64_t graph_replays_ = 0;
};

}  // namespace mambaserve

#endif  // MAMBASERVE_LAYERS_MAMBA_MODEL_H_
