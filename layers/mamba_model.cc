#include "layers/mamba_model.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/logging.h"
#include "core/status_macros.h"
#include "kernels/model_ops.h"
#include "layers/step_indices.h"

namespace mambaserve {
namespace {

Mamba2Dims Mamba2DimsOf(const config::ModelConfig& m) {
  return Mamba2Dims{m.d_model(),  m.d_inner(), m.num_heads(), m.head_dim(),
                    m.n_groups(), m.d_state(), m.d_conv(),    0};
}

Mamba1Dims Mamba1DimsOf(const config::ModelConfig& m) {
  return Mamba1Dims{m.d_model(), m.d_inner(), m.d_state(), m.dt_rank(), m.d_conv()};
}

}  // namespace

absl::StatusOr<std::unique_ptr<MambaModel>> MambaModel::Load(const config::ModelConfig& m,
                                                             const WeightSource& src, Device device,
                                                             DType dtype, Communicator* comm) {
  MS_CHECK_ARG(device.is_cuda() || dtype == DType::kF32, "the CPU backend serves in float32; got ",
               DTypeName(dtype));
  std::unique_ptr<MambaModel> model(new MambaModel());
  model->config_ = m;
  model->device_ = device;
  model->dtype_ = dtype;
  model->residual_dtype_ = m.residual_in_fp32() ? DType::kF32 : dtype;
  model->comm_ = comm;
  const int tp = model->tp(), rank = model->rank();
  ASSIGN_OR_RETURN(model->stream_, Stream::Create(device));
  ASSIGN_OR_RETURN(model->blas_, BlasHandle::Create(model->stream_));
  model->workspace_ = std::make_unique<Workspace>(device);
  model->SetDecodeGraphMaxBatch(kDefaultDecodeGraphMaxBatch);

  ASSIGN_OR_RETURN(VocabShardPlan vp, MakeVocabShardPlan(m.vocab_size(), tp, rank, 1));
  model->vocab_local_rows_ = vp.rows.size;
  model->vocab_row_begin_ = vp.rows.begin;
  model->vocab_valid_rows_ = vp.valid_rows;
  ASSIGN_OR_RETURN(std::string emb_name, ResolveWeightName(src, {"backbone.embeddings.weight",
                                                                 "backbone.embedding.weight"}));
  ASSIGN_OR_RETURN(auto emb_shape, src.Shape(emb_name));
  MS_CHECK_ARG(
      emb_shape.size() == 2 && emb_shape[1] == m.d_model() && emb_shape[0] >= m.vocab_size(),
      emb_name, ": shape mismatch with vocab_size ", m.vocab_size(), " and d_model ", m.d_model());
  std::vector<float> w;
  auto read_vocab_rows = [&](const std::string& name) -> absl::Status {
    RETURN_IF_ERROR(ReadRows(src, name, {{vp.rows.begin, vp.valid_rows}}, &w));
    w.resize(static_cast<size_t>(vp.rows.size * m.d_model()), 0.0f);  // padded rows are zero
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(read_vocab_rows(emb_name));
  ASSIGN_OR_RETURN(model->embedding_, UploadAs(device, dtype, w));
  if (!m.tie_embeddings()) {
    ASSIGN_OR_RETURN(auto head_shape, src.Shape("lm_head.weight"));
    MS_CHECK_ARG(
        head_shape.size() == 2 && head_shape[1] == m.d_model() && head_shape[0] >= m.vocab_size(),
        "tensor 'lm_head.weight' has a shape that does not match vocab_size ", m.vocab_size(),
        " and d_model ", m.d_model());
    RETURN_IF_ERROR(read_vocab_rows("lm_head.weight"));
  }
  ASSIGN_OR_RETURN(model->lm_head_, Linear::Create(device, dtype, vp.rows.size, m.d_model(), w));

  for (int64_t l = 0; l < m.n_layers(); ++l) {
    const std::string p = absl::StrCat("backbone.layers.", l, ".");
    RETURN_IF_ERROR(ExpectShape(src, p + "norm.weight", {m.d_model()}));
    RETURN_IF_ERROR(ReadRows(src, p + "norm.weight", {{0, m.d_model()}}, &w));
    ASSIGN_OR_RETURN(Buffer nb, UploadAs(device, DType::kF32, w));
    model->layer_norms_.push_back(std::move(nb));
    if (m.architecture() == config::MAMBA2) {
      ASSIGN_OR_RETURN(Mamba2ShardPlan plan, MakeMamba2ShardPlan(Mamba2DimsOf(m), tp, rank));
      ASSIGN_OR_RETURN(Mamba2Mixer mx,
                       Mamba2Mixer::Load(m, plan, src, p + "mixer.", device, dtype));
      model->mixers_.emplace_back(std::move(mx));
    } else {
      ASSIGN_OR_RETURN(Mamba1ShardPlan plan, MakeMamba1ShardPlan(Mamba1DimsOf(m), tp, rank));
      ASSIGN_OR_RETURN(Mamba1Mixer mx,
                       Mamba1Mixer::Load(m, plan, src, p + "mixer.", device, dtype));
      model->mixers_.emplace_back(std::move(mx));
    }
  }
  ASSIGN_OR_RETURN(std::string normf,
                   ResolveWeightName(src, {"backbone.norm_f.weight", "backbone.norm.weight"}));
  RETURN_IF_ERROR(ReadRows(src, normf, {{0, m.d_model()}}, &w));
  ASSIGN_OR_RETURN(model->final_norm_, UploadAs(device, DType::kF32, w));
  return model;
}

absl::StatusOr<StatePoolConfig> MambaModel::PoolConfig(StateDTypes dtypes,
                                                       ConvLayout layout) const {
  const auto& m = config_;
  StatePoolConfig c;
  c.num_layers = m.n_layers();
  c.conv_layout = layout;
  c.device = device_;
  if (m.architecture() == config::MAMBA2) {
    Mamba2StateArgs a{m.num_heads(), m.head_dim(), m.n_groups(), m.d_state(), m.d_conv(), 0,
                      tp(),          rank()};
    ASSIGN_OR_RETURN(c.shapes, Mamba2StateShapes(a, layout, dtypes));
  } else {
    ASSIGN_OR_RETURN(c.shapes,
                     Mamba1StateShapes(m.d_inner(), m.d_state(), m.d_conv(), tp(), layout, dtypes));
  }
  return c;
}

absl::Status MambaModel::Validate(const ForwardInput& in, const StatePool& pool) const {
  const int64_t S = static_cast<int64_t>(in.seq_lens.size());
  MS_CHECK_ARG(S > 0, "a step needs at least one sequence");
  MS_CHECK_ARG(in.num_decode >= 0 && in.num_decode <= S, "num_decode ", in.num_decode,
               " outside [0, ", S, "]");
  MS_CHECK_ARG(static_cast<int64_t>(in.initial_blocks.size()) == S &&
                   static_cast<int64_t>(in.final_blocks.size()) == S,
               "initial_blocks and final_blocks need one entry per sequence");
  int64_t total = 0;
  for (int64_t s = 0; s < S; ++s) {
    MS_CHECK_ARG(in.seq_lens[s] > 0, "sequence ", s, " is empty");
    MS_CHECK_ARG(s >= in.num_decode || in.seq_lens[s] == 1, "decode sequence ", s,
                 " must have exactly one token");
    for (int32_t b : {in.initial_blocks[s], in.final_blocks[s]}) {
      MS_CHECK_ARG(b >= 0 && b < pool.num_blocks(), "sequence ", s, ": block ", b,
                   " outside the pool of ", pool.num_blocks());
    }
    MS_CHECK_ARG(s >= in.num_decode ||
                     (in.initial_blocks[s] != 0 && in.initial_blocks[s] == in.final_blocks[s]),
                 "decode sequence ", s, " needs one non-null block read and written in place");
    total += in.seq_lens[s];
  }
  MS_CHECK_ARG(total == static_cast<int64_t>(in.token_ids.size()), "seq_lens sum to ", total,
               " but there are ", in.token_ids.size(), " token ids");
  for (size_t i = 0; i < in.token_ids.size(); ++i) {
    MS_CHECK_ARG(in.token_ids[i] >= 0 && in.token_ids[i] < config_.vocab_size(), "token id ",
                 in.token_ids[i], " at position ", i, " is outside the vocabulary [0, ",
                 config_.vocab_size(), ")");
  }
  MS_CHECK_ARG(pool.num_layers() == config_.n_layers(), "pool has ", pool.num_layers(),
               " layers, model has ", config_.n_layers());
  const int64_t B = in.boundary_block_size;
  if (B > 0) {
    MS_CHECK_ARG(pool.conv_layout() == ConvLayout::kSD,
                 "kernel-written prefix caching needs the SD conv-state layout");
    MS_CHECK_ARG(B >= config_.d_conv() - 1, "boundary_block_size ", B,
                 " is shorter than the conv window");
    MS_CHECK_ARG(config_.architecture() != config::MAMBA2 || B % config_.chunk_size() == 0,
                 "boundary_block_size ", B, " must be a multiple of chunk_size ",
                 config_.chunk_size());
    MS_CHECK_ARG(static_cast<int64_t>(in.prefix_offsets.size()) == S &&
                     static_cast<int64_t>(in.boundary_blocks.size()) == S,
                 "prefix_offsets and boundary_blocks need one entry per sequence");
    for (int64_t s = 0; s < S; ++s) {
      const int64_t po = in.prefix_offsets[s];
      MS_CHECK_ARG(po >= 0, "sequence ", s, ": negative prefix offset");
      const int64_t interior = (po + in.seq_lens[s] - 1) / B - po / B;
      const int64_t want = s < in.num_decode ? 0 : interior;
      MS_CHECK_ARG(static_cast<int64_t>(in.boundary_blocks[s].size()) == want, "sequence ", s,
                   " has ", in.boundary_blocks[s].size(), " boundary blocks, its chunk crosses ",
                   want, " block boundaries");
      for (int32_t b : in.boundary_blocks[s]) {
        MS_CHECK_ARG(b >= 0 && b < pool.num_blocks(), "sequence ", s, ": boundary block ", b,
                     " outside the pool");
      }
    }
  }
  return absl::OkStatus();
}

absl::Status MambaModel::Forward(const ForwardInput& in, StatePool& pool,
                                 std::vector<float>* logits) {
  RETURN_IF_ERROR(Validate(in, pool));
  if (UsesDecodeGraph(in)) return ForwardDecodeGraph(in, pool, logits);
  const StepIndices si = BuildStepIndices(in, config_.d_conv());
  const int64_t bytes = static_cast<int64_t>(si.data.size()) * 4;
  ASSIGN_OR_RETURN(void* didx, workspace_->Get(kSlotIndices, bytes));
  RETURN_IF_ERROR(CopyBytes(didx, device_, si.data.data(), Device::Cpu(), bytes, &stream_));
  ASSIGN_OR_RETURN(const void* gathered,
                   Enqueue(si, static_cast<const int32_t*>(didx), pool, *workspace_));
  return DownloadLogits(gathered, si.logit_rows, si.logit_rows, logits);
}

absl::StatusOr<const void*> MambaModel::Enqueue(const StepIndices& si, const int32_t* di,
                                                StatePool& pool, Workspace& ws) {
  const int64_t T = si.num_tokens;
  const int64_t rows = si.logit_rows;
  const int64_t dm = config_.d_model();
  const int64_t es = DTypeSize(dtype_);
  StepContext ctx;
  ctx.stream = &stream_;
  ctx.blas = &blas_;
  ctx.comm = comm_;
  ctx.workspace = &ws;
  ctx.conv_layout = pool.conv_layout();
  ctx.batch = si.Bind(di);

  ASSIGN_OR_RETURN(void* hidden, ws.Get(kSlotHidden, T * dm * es));
  ASSIGN_OR_RETURN(void* residual, ws.Get(kSlotResidual, T * dm * DTypeSize(residual_dtype_)));
  ASSIGN_OR_RETURN(void* normed, ws.Get(kSlotNormed, T * dm * es));

  EmbeddingParams ep{
      T, dm, di, embedding_.data(), dtype_, vocab_row_begin_, vocab_valid_rows_, hidden, dtype_};
  RETURN_IF_ERROR(RunEmbedding(ep, stream_));
  if (tp() > 1) RETURN_IF_ERROR(comm_->AllReduceSum(hidden, T * dm, dtype_, stream_));

  for (int64_t l = 0; l < config_.n_layers(); ++l) {
    AddRmsNormParams np_{T,           dm,
                         hidden,      dtype_,
                         residual,    residual_dtype_,
                         l > 0,       layer_norms_[l].data(),
                         DType::kF32, normed,
                         dtype_,      static_cast<float>(config_.norm_eps())};
    RETURN_IF_ERROR(RunAddRmsNorm(np_, stream_));
    ASSIGN_OR_RETURN(StateTensorRef conv, pool.Ref(l, 0));
    ASSIGN_OR_RETURN(StateTensorRef ssm, pool.Ref(l, 1));
    absl::Status st =
        std::visit([&](const auto& mixer) { return mixer.Forward(normed, hidden, conv, ssm, ctx); },
                   mixers_[l]);
    RETURN_IF_ERROR(st);
  }
  AddRmsNormParams fin{T,           dm,
                       hidden,      dtype_,
                       residual,    residual_dtype_,
                       true,        final_norm_.data(),
                       DType::kF32, normed,
                       dtype_,      static_cast<float>(config_.norm_eps())};
  RETURN_IF_ERROR(RunAddRmsNorm(fin, stream_));

  const void* head_in = normed;
  if (si.select_rows) {
    ASSIGN_OR_RETURN(void* sel, ws.Get(kSlotSelected, rows * dm * es));
    CopyRowsParams cp{rows, dm, di + si.off_rows, normed, dm, dtype_, sel, dm, dtype_};
    RETURN_IF_ERROR(RunCopyRows(cp, stream_));
    head_in = sel;
  }
  const int64_t V = vocab_local_rows_;
  ASSIGN_OR_RETURN(void* local_logits, ws.Get(kSlotLogits, rows * V * 4));
  RETURN_IF_ERROR(
      lm_head_.Forward(head_in, dm, rows, local_logits, V, DType::kF32, stream_, blas_));
  if (tp() == 1) return local_logits;
  ASSIGN_OR_RETURN(void* all, ws.Get(kSlotGathered, tp() * rows * V * 4));
  RETURN_IF_ERROR(comm_->AllGather(local_logits, all, rows * V, DType::kF32, stream_));
  return all;
}

absl::Status MambaModel::DownloadLogits(const void* gathered, int64_t rows_alloc, int64_t rows,
                                        std::vector<float>* logits) {
  // gathered is (tp, rows_alloc, V): rank r's columns are padded vocab rows [r*V, (r+1)*V);
  // the first `rows` rows of each rank are wanted.
  const int64_t V = vocab_local_rows_;
  const int64_t staged = tp() * rows * V * 4;
  if (host_logits_.nbytes() < staged) {
    // Page-locked on GPU, so the copy runs at full PCIe speed (a pageable destination goes
    // through the driver's staging buffers; at batch 64 the logits are 13 MB).
    ASSIGN_OR_RETURN(host_logits_, device_.is_cuda() ? Buffer::AllocatePinned(staged * 3 / 2)
                                                     : Buffer::Allocate(Device::Cpu(), staged));
  }
  auto* host = static_cast<float*>(host_logits_.data());
  for (int r = 0; r < tp(); ++r) {
    RETURN_IF_ERROR(CopyBytes(host + r * rows * V, Device::Cpu(),
                              static_cast<const float*>(gathered) + r * rows_alloc * V, device_,
                              rows * V * 4, &stream_));
  }
  RETURN_IF_ERROR(stream_.Synchronize());
  // Every (row, vocab) entry is written below: rank r holds columns [r*V, (r+1)*V).
  const int64_t vocab = config_.vocab_size();
  logits->resize(static_cast<size_t>(rows * vocab));
  for (int r = 0; r < tp(); ++r) {
    const int64_t first = r * V;
    const int64_t n = std::max<int64_t>(0, std::min<int64_t>(V, vocab - first));
    for (int64_t i = 0; i < rows; ++i) {
      std::memcpy(logits->data() + i * vocab + first, host + (r * rows + i) * V,
                  static_cast<size_t>(n) * 4);
    }
  }
  return absl::OkStatus();
}

// ---- CUDA-graph decode ----

int64_t MambaModel::DecodeGraphBucket(int64_t batch) {
  if (batch <= 4) return batch <= 1 ? 1 : (batch <= 2 ? 2 : 4);
  return (batch + 7) / 8 * 8;
}

void MambaModel::SetDecodeGraphMaxBatch(int64_t max_batch) {
  graphs_.clear();
  graph_workspace_.reset();
  // Graphs need the GPU, and collectives inside a graph must be NCCL's (MPI's run on the host).
  const bool capturable =
      device_.is_cuda() && (tp() == 1 || comm_->backend() == CommBackend::kNccl);
  graph_max_batch_ = capturable ? std::max<int64_t>(0, max_batch) : 0;
}

bool MambaModel::UsesDecodeGraph(const ForwardInput& in) const {
  const int64_t S = static_cast<int64_t>(in.seq_lens.size());
  return graph_max_batch_ > 0 && in.num_decode == S && S <= graph_max_batch_ && !in.all_logits &&
         in.boundary_block_size == 0;
}

// A decode step of `batch` sequences: the real ones, then padding that decodes token 0 from
// the null block (the decode kernels skip block 0, so padding reads zeros and writes nothing).
static ForwardInput PaddedDecode(const ForwardInput& in, int64_t batch) {
  ForwardInput p;
  p.num_decode = batch;
  p.token_ids = in.token_ids;
  p.initial_blocks = in.initial_blocks;
  p.token_ids.resize(static_cast<size_t>(batch), 0);
  p.initial_blocks.resize(static_cast<size_t>(batch), 0);
  p.final_blocks = p.initial_blocks;
  p.seq_lens.assign(static_cast<size_t>(batch), 1);
  return p;
}

absl::Status MambaModel::PrepareDecodeGraphs(StatePool& pool) {
  // Graphs bake in the pool's tensors: another pool starts over (one at the same addresses with
  // the same layout may keep them).
  ASSIGN_OR_RETURN(StateTensorRef first, pool.Ref(0, 0));
  const GraphPoolKey key{&pool, first.base, pool.num_blocks(), pool.nbytes(), pool.conv_layout()};
  if (graph_workspace_ != nullptr && key == graph_pool_) return absl::OkStatus();
  graphs_.clear();
  graph_pool_ = key;
  // Grow a workspace for the largest bucket with one padding-only step, then freeze it: every
  // graph shares its buffers, which smaller buckets never outgrow.
  graph_workspace_ = std::make_unique<Workspace>(device_);
  const int64_t top = DecodeGraphBucket(graph_max_batch_);
  const StepIndices si = BuildStepIndices(PaddedDecode(ForwardInput{}, top), config_.d_conv());
  const int64_t bytes = static_cast<int64_t>(si.data.size()) * 4;
  ASSIGN_OR_RETURN(void* didx, graph_workspace_->Get(kSlotIndices, bytes));
  RETURN_IF_ERROR(CopyBytes(didx, device_, si.data.data(), Device::Cpu(), bytes, &stream_));
  RETURN_IF_ERROR(Enqueue(si, static_cast<const int32_t*>(didx), pool, *graph_workspace_).status());
  RETURN_IF_ERROR(stream_.Synchronize());
  graph_workspace_->set_frozen(true);
  return absl::OkStatus();
}

absl::StatusOr<const MambaModel::DecodeGraph*> MambaModel::DecodeGraphFor(int64_t bucket,
                                                                          StatePool& pool) {
  RETURN_IF_ERROR(PrepareDecodeGraphs(pool));
  auto it = graphs_.find(bucket);
  if (it != graphs_.end()) return &it->second;
  // Captured with padding-only indices: the indices are rewritten before every replay.
  const StepIndices si = BuildStepIndices(PaddedDecode(ForwardInput{}, bucket), config_.d_conv());
  DecodeGraph g;
  const int64_t index_bytes = static_cast<int64_t>(si.data.size()) * 4;
  ASSIGN_OR_RETURN(g.indices, Buffer::Allocate(device_, index_bytes));
  ASSIGN_OR_RETURN(g.host_indices, Buffer::AllocatePinned(index_bytes));
  const auto* di = static_cast<const int32_t*>(g.indices.data());
  absl::StatusOr<CudaGraph> graph = CudaGraph::Capture(stream_, [&]() -> absl::Status {
    // The replay starts with the upload of the indices the host wrote (page-locked, so the
    // copy is a graph node): one launch per step, no staging through pageable memory.
    RETURN_IF_ERROR(CopyBytes(g.indices.data(), device_, g.host_indices.data(), Device::Cpu(),
                              index_bytes, &stream_));
    ASSIGN_OR_RETURN(g.logits, Enqueue(si, di, pool, *graph_workspace_));
    return absl::OkStatus();
  });
  if (!graph.ok()) {
    // Serving goes on without graphs (slower, same results).
    MS_LOG(WARNING) << "capturing the decode step of batch " << bucket
                    << " in a CUDA graph failed, decoding without graphs from now on: "
                    << graph.status().ToString();
    SetDecodeGraphMaxBatch(0);
    return nullptr;
  }
  g.graph = *std::move(graph);
  ++graph_captures_;
  return &graphs_.emplace(bucket, std::move(g)).first->second;
}

absl::Status MambaModel::CaptureDecodeGraphs(StatePool& pool) {
  const int64_t top = DecodeGraphBucket(graph_max_batch_);
  for (int64_t b = 1; graph_max_batch_ > 0 && b <= top; b = DecodeGraphBucket(b + 1)) {
    RETURN_IF_ERROR(DecodeGraphFor(b, pool).status());
  }
  return absl::OkStatus();
}

absl::Status MambaModel::ForwardDecodeGraph(const ForwardInput& in, StatePool& pool,
                                            std::vector<float>* logits) {
  const int64_t nd = in.num_decode;
  const int64_t bucket = DecodeGraphBucket(nd);
  ASSIGN_OR_RETURN(const DecodeGraph* graph, DecodeGraphFor(bucket, pool));
  if (graph == nullptr) return Forward(in, pool, logits);  // capture failed: graphs are off
  const DecodeGraph& g = *graph;
  const StepIndices si = BuildStepIndices(PaddedDecode(in, bucket), config_.d_conv());
  // No replay still reads host_indices: every step ends with a stream sync (DownloadLogits).
  std::memcpy(g.host_indices.data(), si.data.data(), si.data.size() * 4);
  RETURN_IF_ERROR(g.graph.Launch(stream_));
  if (tp() > 1) RETURN_IF_ERROR(comm_->WatchStream(stream_, "decode CUDA graph"));
  ++graph_replays_;
  return DownloadLogits(g.logits, bucket, nd, logits);
}

}  // namespace mambaserve
