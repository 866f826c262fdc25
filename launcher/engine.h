// The serving engine. Rank 0 runs the scheduler: continuous batching of decodes and prefill
// chunks under token and batch budgets, prefix-cache admission, sampling, streaming to clients.
// Every step's plan is broadcast over MPI and executed identically by every rank (state copies,
// block zeroing, the sharded forward pass). Other ranks run RunWorker().
#ifndef MAMBASERVE_LAUNCHER_ENGINE_H_
#define MAMBASERVE_LAUNCHER_ENGINE_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "launcher/sampler.h"
#include "launcher/step_plan.h"
#include "layers/mamba_model.h"
#include "state_manager/block_allocator.h"
#include "state_manager/copy_spec.h"
#include "state_manager/prefix_cache.h"
#include "state_manager/sequence_states.h"
#include "state_manager/state_pool.h"

namespace mambaserve {

struct EngineOptions {
  int64_t max_batch_size = 64;
  int64_t max_num_batched_tokens = 4096;
  int64_t max_queue_length = 1024;
  int64_t max_new_tokens_limit = 4096;
  int64_t max_prompt_tokens = 65536;
  bool enable_prefix_caching = true;
  // Prefix-cache states written by the scan kernels at every block boundary (vLLM's "all"
  // mode) instead of only at chunk ends cut on a boundary ("align").
  bool kernel_written_states = false;
  int64_t block_size = 256;  // prefix-cache block, a multiple of the chunk size
  int64_t chunk_size = 256;
};

struct GenerateParams {
  std::vector<int32_t> prompt;
  int64_t max_new_tokens = 16;
  SamplingOptions sampling;
  std::vector<int32_t> stop_token_ids;
  std::string request_id;
};

// Tokens of one request flowing from the engine to its client handler.
class RequestStream {
 public:
  struct Chunk {
    std::vector<int32_t> tokens;
    bool finished = false;
    std::string finish_reason;
    int64_t cached_prompt_tokens = 0;
  };
  // Waits up to `timeout` for news; false when there is none.
  bool Pop(absl::Duration timeout, Chunk* out);
  void Push(const std::vector<int32_t>& tokens, bool finished, const std::string& reason,
            int64_t cached_tokens);
  // The client went away or cancelled: the engine frees the request's state at its next step.
  void Cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  Chunk pending_;
  bool has_news_ = false;
  std::atomic<bool> cancelled_{false};
};

struct EngineStats {
  int64_t requests_total = 0, requests_finished = 0, requests_cancelled = 0;
  int64_t requests_running = 0, requests_queued = 0;
  int64_t generated_tokens = 0, steps = 0, preemptions = 0;
  int64_t cuda_graph_steps = 0;  // decode steps replayed from a CUDA graph
  double tokens_per_second = 0;
  PrefixCacheStats cache;
  int64_t total_blocks = 0;
};

class Engine {
 public:
  static absl::StatusOr<std::unique_ptr<Engine>> Create(MambaModel* model, StatePool* pool,
                                                        const EngineOptions& options);

  // Thread-safe. INVALID_ARGUMENT for bad requests, RESOURCE_EXHAUSTED past the queue limit,
  // UNAVAILABLE while draining.
  absl::StatusOr<std::shared_ptr<RequestStream>> Submit(GenerateParams params);
  EngineStats Stats() const;
  // Stop accepting requests; Run() returns once every accepted request has finished.
  void BeginDrain();
  bool draining() const { return draining_; }
  const EngineOptions& options() const { return options_; }

  // Rank 0's loop (the thread that initialised MPI). Returns after a drain, having told the
  // other ranks to stop.
  absl::Status Run();
  // Runs one step if there is work; returns whether it did (exposed for tests).
  absl::StatusOr<bool> Step();

 private:
  struct Request {
    int64_t id = 0;
    GenerateParams params;
    std::vector<int32_t> tokens;  // prompt + generated
    int64_t generated = 0;
    int64_t cached_prompt_tokens = 0;
    bool admitted = false;  // known to SequenceStates
    std::unique_ptr<Sampler> sampler;
    std::shared_ptr<RequestStream> stream;
  };
  Engine() = default;
  void TakeInbox();
  absl::Status FinishRequest(Request& r, const std::string& reason, bool cancelled);
  absl::Status Preempt(Request& r);

  MambaModel* model_ = nullptr;
  StatePool* pool_ = nullptr;
  EngineOptions options_;
  std::unique_ptr<BlockAllocator> allocator_;
  std::unique_ptr<PrefixCache> cache_;
  std::unique_ptr<SequenceStates> states_;
  std::unique_ptr<CopyExecutor> copier_;

  mutable std::mutex mu_;  // guards inbox_, stats_, draining_ reads by handlers
  std::condition_variable work_cv_;
  std::deque<std::unique_ptr<Request>> inbox_;
  int64_t next_id_ = 1;
  std::atomic<bool> draining_{false};
  EngineStats stats_;
  std::deque<std::pair<absl::Time, int64_t>> token_times_;  // for tokens_per_second

  // Scheduler state (engine thread only).
  std::deque<std::unique_ptr<Request>> waiting_;
  std::vector<std::unique_ptr<Request>> running_;
  std::vector<float> logits_;
};

// Executes one broadcast plan on this rank: copies, zeroing, forward. Used by every rank.
absl::Status ExecuteStepPlan(const StepPlanMessage& plan, MambaModel& model, StatePool& pool,
                             CopyExecutor& copier, std::vector<float>* logits);

// Ranks other than 0: execute plans until rank 0 says stop.
absl::Status RunWorker(MambaModel& model, StatePool& pool);

}  // namespace mambaserve

#endif  // MAMBASERVE_LAUNCHER_ENGINE_H_
