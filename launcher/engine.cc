#include "launcher/engine.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/logging.h"
#include "core/status_macros.h"

namespace mambaserve {

bool RequestStream::Pop(absl::Duration timeout, Chunk* out) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, absl::ToChronoMicroseconds(timeout), [&] { return has_news_; });
  if (!has_news_) return false;
  *out = std::move(pending_);
  pending_ = Chunk{};
  has_news_ = false;
  return true;
}

void RequestStream::Push(const std::vector<int32_t>& tokens, bool finished,
                         const std::string& reason, int64_t cached_tokens) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.tokens.insert(pending_.tokens.end(), tokens.begin(), tokens.end());
    pending_.finished = pending_.finished || finished;
    if (finished) pending_.finish_reason = reason;
    pending_.cached_prompt_tokens = cached_tokens;
    has_news_ = true;
  }
  cv_.notify_all();
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(MambaModel* model, StatePool* pool,
                                                       const EngineOptions& options) {
  MS_CHECK_ARG(options.max_batch_size > 0 && options.max_num_batched_tokens > 0,
               "engine budgets must be positive");
  // A sequence crossing into a new block briefly holds two (the sealed one and its copy), so
  // fewer than two usable blocks could stall a lone request forever.
  MS_CHECK_ARG(pool->num_blocks() >= 3, "the state pool has ", pool->num_blocks(),
               " blocks; the engine needs at least 3 (raise cache.memory_budget_mb)");
  std::unique_ptr<Engine> e(new Engine());
  e->model_ = model;
  e->pool_ = pool;
  e->options_ = options;
  ASSIGN_OR_RETURN(BlockAllocator alloc, BlockAllocator::Create(pool->num_blocks()));
  e->allocator_ = std::make_unique<BlockAllocator>(std::move(alloc));
  SequenceStatesConfig sc;
  sc.mode = !options.enable_prefix_caching  ? PrefixCachingMode::kNone
            : options.kernel_written_states ? PrefixCachingMode::kAll
                                            : PrefixCachingMode::kAlign;
  sc.block_size = options.block_size;
  if (options.enable_prefix_caching) {
    ASSIGN_OR_RETURN(
        PrefixCache cache,
        PrefixCache::Create(e->allocator_.get(), {options.block_size, options.chunk_size}));
    e->cache_ = std::make_unique<PrefixCache>(std::move(cache));
  }
  ASSIGN_OR_RETURN(SequenceStates states,
                   SequenceStates::Create(e->allocator_.get(), e->cache_.get(), sc));
  e->states_ = std::make_unique<SequenceStates>(std::move(states));
  ASSIGN_OR_RETURN(CopyExecutor copier, CopyExecutor::Create(model->device()));
  e->copier_ = std::make_unique<CopyExecutor>(std::move(copier));
  e->stats_.total_blocks = pool->num_blocks();
  e->stats_.cache.free_blocks = e->allocator_->num_free();
  return e;
}

absl::StatusOr<std::shared_ptr<RequestStream>> Engine::Submit(GenerateParams params) {
  const int64_t vocab = model_->config().vocab_size();
  MS_CHECK_ARG(!params.prompt.empty(), "prompt_ids is empty");
  MS_CHECK_ARG(static_cast<int64_t>(params.prompt.size()) <= options_.max_prompt_tokens,
               "prompt of ", params.prompt.size(), " tokens exceeds the limit of ",
               options_.max_prompt_tokens);
  for (size_t i = 0; i < params.prompt.size(); ++i) {
    MS_CHECK_ARG(params.prompt[i] >= 0 && params.prompt[i] < vocab, "prompt_ids[", i,
                 "] = ", params.prompt[i], " is outside the vocabulary [0, ", vocab, ")");
  }
  MS_CHECK_ARG(params.max_new_tokens > 0 && params.max_new_tokens <= options_.max_new_tokens_limit,
               "max_new_tokens must be in [1, ", options_.max_new_tokens_limit, "], got ",
               params.max_new_tokens);
  for (int32_t s : params.stop_token_ids) {
    MS_CHECK_ARG(s >= 0 && s < vocab, "stop token id ", s, " is outside the vocabulary");
  }
  RETURN_IF_ERROR(ValidateSampling(params.sampling));
  auto r = std::make_unique<Request>();
  r->params = std::move(params);
  r->tokens = r->params.prompt;
  r->sampler = std::make_unique<Sampler>(r->params.sampling);
  r->stream = std::make_shared<RequestStream>();
  auto stream = r->stream;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (draining_) return absl::UnavailableError("server is shutting down");
    if (stats_.requests_queued + static_cast<int64_t>(inbox_.size()) >= options_.max_queue_length) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "request queue is full (", options_.max_queue_length, " waiting); retry later"));
    }
    r->id = next_id_++;
    ++stats_.requests_total;
    inbox_.push_back(std::move(r));
  }
  work_cv_.notify_all();
  return stream;
}

EngineStats Engine::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void Engine::BeginDrain() {
  draining_ = true;
  work_cv_.notify_all();
}

void Engine::TakeInbox() {
  std::lock_guard<std::mutex> lock(mu_);
  while (!inbox_.empty()) {
    waiting_.push_back(std::move(inbox_.front()));
    inbox_.pop_front();
  }
}

absl::Status Engine::FinishRequest(Request& r, const std::string& reason, bool cancelled) {
  if (r.admitted) {
    RETURN_IF_ERROR(states_->FreeSequence(r.id));
    r.admitted = false;
  }
  {
    // Counted before the client hears of it, so a Stats call right after the stream ends
    // already sees the freed blocks.
    std::lock_guard<std::mutex> lock(mu_);
    if (cancelled) {
      ++stats_.requests_cancelled;
    } else {
      ++stats_.requests_finished;
    }
    stats_.cache.free_blocks = allocator_->num_free();
  }
  r.stream->Push({}, true, reason, r.cached_prompt_tokens);
  return absl::OkStatus();
}

// Frees a running request's state and queues it again at the front; on readmission it
// recomputes its prompt and the tokens generated so far (the client's stream just continues).
absl::Status Engine::Preempt(Request& r) {
  RETURN_IF_ERROR(states_->FreeSequence(r.id));
  r.admitted = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.preemptions;
  }
  MS_LOG(INFO) << "preempted request " << r.id << " (" << r.tokens.size() << " tokens)";
  return absl::OkStatus();
}

absl::StatusOr<bool> Engine::Step() {
  TakeInbox();
  // Drop cancelled requests before anything is scheduled.
  for (auto it = running_.begin(); it != running_.end();) {
    if ((*it)->stream->cancelled()) {
      RETURN_IF_ERROR(FinishRequest(**it, "cancelled", true));
      it = running_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if ((*it)->stream->cancelled()) {
      RETURN_IF_ERROR(FinishRequest(**it, "cancelled", true));
      it = waiting_.erase(it);
    } else {
      ++it;
    }
  }

  states_->BeginStep();
  std::vector<Request*> decodes, prefills;
  std::vector<SequenceStepEntry> decode_entries, prefill_entries;
  int64_t budget = options_.max_num_batched_tokens;
  // 1. Decodes: requests whose every known token but the newest is consumed.
  std::vector<Request*> stalled;
  for (auto& r : running_) {
    ASSIGN_OR_RETURN(int64_t consumed, states_->NumConsumed(r->id));
    const int64_t known = static_cast<int64_t>(r->tokens.size());
    if (consumed == 0 || known - consumed != 1) continue;
    if (static_cast<int64_t>(decodes.size()) >= options_.max_batch_size || budget <= 0) break;
    auto e = states_->Schedule(r->id, 1);
    if (absl::IsResourceExhausted(e.status())) {
      stalled.push_back(r.get());
      continue;
    }
    RETURN_IF_ERROR(e.status());
    decodes.push_back(r.get());
    decode_entries.push_back(*e);
    --budget;
  }
  // 2. Prefill chunks of running requests, then newly admitted ones.
  auto schedule_prefill = [&](Request* r) -> absl::StatusOr<bool> {
    ASSIGN_OR_RETURN(int64_t chunk, states_->AlignedChunk(r->id, budget));
    if (chunk <= 0) return false;
    if (cache_ && !options_.kernel_written_states) {
      // Align mode caches only states at chunk ends on a block boundary, so a chunk that would
      // run past the prompt's last boundary stops there and the tail follows next step.
      ASSIGN_OR_RETURN(int64_t consumed, states_->NumConsumed(r->id));
      const int64_t end = consumed + chunk;
      const int64_t boundary = end / options_.block_size * options_.block_size;
      if (boundary > consumed && boundary < end) chunk = boundary - consumed;
    }
    auto e = states_->Schedule(r->id, chunk);
    if (absl::IsResourceExhausted(e.status())) return false;
    RETURN_IF_ERROR(e.status());
    prefills.push_back(r);
    prefill_entries.push_back(*e);
    budget -= chunk;
    return true;
  };
  auto batch_full = [&] {
    return static_cast<int64_t>(decodes.size() + prefills.size()) >= options_.max_batch_size ||
           budget <= 0;
  };
  for (auto& r : running_) {
    if (batch_full()) break;
    ASSIGN_OR_RETURN(int64_t consumed, states_->NumConsumed(r->id));
    const int64_t known = static_cast<int64_t>(r->tokens.size());
    if (consumed > 0 && known - consumed == 1) continue;  // a decode (scheduled or stalled)
    RETURN_IF_ERROR(schedule_prefill(r.get()).status());
  }
  while (!waiting_.empty() && !batch_full()) {
    Request* r = waiting_.front().get();
    ASSIGN_OR_RETURN(int64_t hit, states_->AddSequence(r->id, r->tokens));
    if (!r->admitted && r->generated == 0) r->cached_prompt_tokens = hit;
    r->admitted = true;
    ASSIGN_OR_RETURN(bool ok, schedule_prefill(r));
    if (!ok) {  // no block for it now: it waits
      RETURN_IF_ERROR(states_->FreeSequence(r->id));
      r->admitted = false;
      break;
    }
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
  // A decode that found no block while nothing else could run: preempt the newest request.
  if (decodes.empty() && prefills.empty() && !stalled.empty() && running_.size() > 1) {
    RETURN_IF_ERROR(states_->EndStep());
    Request* victim = running_.back().get();
    RETURN_IF_ERROR(Preempt(*victim));
    waiting_.push_front(std::move(running_.back()));
    running_.pop_back();
    return true;
  }
  if (decodes.empty() && prefills.empty()) {
    RETURN_IF_ERROR(states_->EndStep());
    std::lock_guard<std::mutex> lock(mu_);
    stats_.requests_running = static_cast<int64_t>(running_.size());
    stats_.requests_queued = static_cast<int64_t>(waiting_.size());
    if (cache_) stats_.cache = cache_->stats();
    stats_.cache.free_blocks = allocator_->num_free();
    return false;
  }

  StepPlanMessage plan;
  plan.copies = states_->plan().copies;
  for (BlockId b : states_->plan().zero_blocks) plan.zero_blocks.push_back(b);
  ForwardInput& in = plan.input;
  in.num_decode = static_cast<int64_t>(decodes.size());
  std::vector<Request*> order = decodes;
  order.insert(order.end(), prefills.begin(), prefills.end());
  std::vector<SequenceStepEntry> entries = decode_entries;
  entries.insert(entries.end(), prefill_entries.begin(), prefill_entries.end());
  for (size_t i = 0; i < order.size(); ++i) {
    const SequenceStepEntry& e = entries[i];
    const auto& toks = order[i]->tokens;
    in.token_ids.insert(in.token_ids.end(), toks.begin() + e.prefix_offset,
                        toks.begin() + e.prefix_offset + e.num_tokens);
    in.seq_lens.push_back(static_cast<int32_t>(e.num_tokens));
    in.initial_blocks.push_back(e.has_initial_state ? e.state_block : 0);
    in.final_blocks.push_back(e.state_block);
    if (options_.kernel_written_states) {
      in.prefix_offsets.push_back(static_cast<int32_t>(e.prefix_offset));
      in.boundary_blocks.emplace_back(e.boundary_blocks.begin(), e.boundary_blocks.end());
    }
  }
  if (options_.kernel_written_states) in.boundary_block_size = options_.block_size;
  RETURN_IF_ERROR(BroadcastStepPlan(plan));
  RETURN_IF_ERROR(ExecuteStepPlan(plan, *model_, *pool_, *copier_, &logits_));
  RETURN_IF_ERROR(states_->EndStep());

  // Sample for every sequence whose known tokens are now all consumed.
  const int64_t vocab = model_->config().vocab_size();
  int64_t new_tokens = 0;
  std::vector<Request*> finished;
  for (size_t i = 0; i < order.size(); ++i) {
    Request* r = order[i];
    const SequenceStepEntry& e = entries[i];
    if (e.prefix_offset + e.num_tokens != static_cast<int64_t>(r->tokens.size())) continue;
    const int32_t tok = r->sampler->Sample(logits_.data() + i * vocab, vocab);
    r->tokens.push_back(tok);
    ++r->generated;
    ++new_tokens;
    RETURN_IF_ERROR(states_->AppendTokens(r->id, std::span<const TokenId>(&tok, 1)));
    const auto& stops = r->params.stop_token_ids;
    const bool stop = std::find(stops.begin(), stops.end(), tok) != stops.end();
    const bool length = r->generated >= r->params.max_new_tokens;
    if (stop || length) {
      r->stream->Push({tok}, false, "", r->cached_prompt_tokens);
      RETURN_IF_ERROR(FinishRequest(*r, stop ? "stop" : "length", false));
      finished.push_back(r);
    } else {
      r->stream->Push({tok}, false, "", r->cached_prompt_tokens);
    }
  }
  running_.erase(std::remove_if(running_.begin(), running_.end(),
                                [&](const std::unique_ptr<Request>& r) {
                                  return std::find(finished.begin(), finished.end(), r.get()) !=
                                         finished.end();
                                }),
                 running_.end());
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.steps;
  stats_.cuda_graph_steps = model_->decode_graph_replays();
  stats_.generated_tokens += new_tokens;
  const absl::Time now = absl::Now();
  token_times_.emplace_back(now, new_tokens);
  while (!token_times_.empty() && now - token_times_.front().first > absl::Seconds(10)) {
    token_times_.pop_front();
  }
  int64_t window_tokens = 0;
  for (const auto& [t, n] : token_times_) window_tokens += n;
  const double span =
      token_times_.size() > 1 ? absl::ToDoubleSeconds(now - token_times_.front().first) : 0.0;
  stats_.tokens_per_second = span > 0 ? window_tokens / span : 0.0;
  stats_.requests_running = static_cast<int64_t>(running_.size());
  stats_.requests_queued = static_cast<int64_t>(waiting_.size());
  if (cache_) stats_.cache = cache_->stats();
  stats_.cache.free_blocks = allocator_->num_free();
  return true;
}

absl::Status Engine::Run() {
  while (true) {
    ASSIGN_OR_RETURN(bool worked, Step());
    if (worked) continue;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (draining_ && inbox_.empty() && waiting_.empty() && running_.empty()) break;
      work_cv_.wait_for(lock, std::chrono::milliseconds(5));
    }
  }
  StepPlanMessage stop;
  stop.kind = StepPlanMessage::kStop;
  return BroadcastStepPlan(stop);
}

absl::Status ExecuteStepPlan(const StepPlanMessage& plan, MambaModel& model, StatePool& pool,
                             CopyExecutor& copier, std::vector<float>* logits) {
  ASSIGN_OR_RETURN(std::vector<CopySpec> specs, BuildStepCopySpecs(pool, plan.copies));
  RETURN_IF_ERROR(copier.Run(specs, model.stream()));
  for (int32_t b : plan.zero_blocks) RETURN_IF_ERROR(pool.ZeroBlock(b, &model.stream()));
  return model.Forward(plan.input, pool, logits);
}

absl::Status RunWorker(MambaModel& model, StatePool& pool) {
  ASSIGN_OR_RETURN(CopyExecutor copier, CopyExecutor::Create(model.device()));
  std::vector<float> logits;
  while (true) {
    ASSIGN_OR_RETURN(StepPlanMessage plan, ReceiveStepPlan());
    if (plan.kind == StepPlanMessage::kStop) return absl::OkStatus();
    RETURN_IF_ERROR(ExecuteStepPlan(plan, model, pool, copier, &logits));
  }
}

}  // namespace mambaserve
