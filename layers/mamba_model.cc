#include "layers/mamba_model.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "kernels/model_ops.h"

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
  const int64_t S = static_cast<int64_t>(in.seq_lens.size());
  const int64_t T = static_cast<int64_t>(in.token_ids.size());
  const int64_t nd = in.num_decode;
  const int64_t np = S - nd;
  const int64_t dm = config_.d_model();
  const int64_t es = DTypeSize(dtype_);

  // One upload of every index array: [ids | decode blocks | prefill cu | init | final | rows].
  std::vector<int32_t> idx(in.token_ids);
  const size_t off_decode = idx.size();
  for (int64_t s = 0; s < nd; ++s) idx.push_back(in.initial_blocks[s]);
  const size_t off_cu = idx.size();
  idx.push_back(0);
  for (int64_t s = nd; s < S; ++s) idx.push_back(idx.back() + in.seq_lens[s]);
  const size_t off_init = idx.size();
  for (int64_t s = nd; s < S; ++s) idx.push_back(in.initial_blocks[s]);
  const size_t off_final = idx.size();
  for (int64_t s = nd; s < S; ++s) idx.push_back(in.final_blocks[s]);
  const size_t off_rows = idx.size();
  int64_t rows = T;
  if (!in.all_logits) {
    rows = S;
    int32_t end = 0;
    for (int64_t s = 0; s < S; ++s) {
      end += in.seq_lens[s];
      idx.push_back(end - 1);
    }
  }
  // Kernel-written prefix caching: per-prefill prefix offsets, the scans' boundary lists and
  // the row indices of each boundary's conv window.
  const int64_t B = in.boundary_block_size;
  const int64_t W1 = config_.d_conv() - 1;
  size_t off_po32 = 0, off_ssd_off = 0, off_ssd_blocks = 0, off_m1 = 0, off_po64 = 0;
  int64_t m1_stride = 0;
  struct PendingWindow {
    int32_t dst = 0, init = 0;
    int64_t n_init = 0, n_x = 0;
    size_t init_off = 0, x_off = 0;
  };
  std::vector<PendingWindow> windows;
  if (B > 0) {
    off_po32 = idx.size();
    for (int64_t s = nd; s < S; ++s) idx.push_back(in.prefix_offsets[s]);
    off_ssd_off = idx.size();
    idx.push_back(0);
    for (int64_t s = nd; s < S; ++s) {
      idx.push_back(idx.back() + static_cast<int32_t>(in.boundary_blocks[s].size()));
    }
    off_ssd_blocks = idx.size();
    for (int64_t s = nd; s < S; ++s) {
      idx.insert(idx.end(), in.boundary_blocks[s].begin(), in.boundary_blocks[s].end());
    }
    // The selective scan also counts a boundary at the chunk's end (its entry is 0: the final
    // state covers it).
    for (int64_t s = nd; s < S; ++s) {
      const int64_t po = in.prefix_offsets[s];
      m1_stride = std::max<int64_t>(m1_stride, (po + in.seq_lens[s]) / B - po / B);
    }
    off_m1 = idx.size();
    for (int64_t s = nd; s < S; ++s) {
      const auto& bl = in.boundary_blocks[s];
      for (int64_t j = 0; j < m1_stride; ++j) {
        idx.push_back(j < static_cast<int64_t>(bl.size()) ? bl[j] : 0);
      }
    }
    int64_t row0 = nd;  // first batch row of the sequence
    for (int64_t s = nd; s < S; ++s) {
      const int64_t po = in.prefix_offsets[s];
      for (size_t j = 0; j < in.boundary_blocks[s].size(); ++j) {
        const int32_t dst = in.boundary_blocks[s][j];
        if (dst == 0) continue;
        const int64_t boundary = (po / B + 1 + static_cast<int64_t>(j)) * B;
        PendingWindow w;
        w.dst = dst;
        w.init = in.initial_blocks[s];
        w.init_off = idx.size();
        for (int64_t r = 0; r < W1; ++r) {
          const int64_t pos = boundary - W1 + r;
          if (pos < po) {
            idx.push_back(static_cast<int32_t>(W1 - (po - pos)));
            ++w.n_init;
          }
        }
        w.x_off = idx.size();
        for (int64_t r = 0; r < W1; ++r) {
          const int64_t pos = boundary - W1 + r;
          if (pos >= po) {
            idx.push_back(static_cast<int32_t>(row0 + pos - po));
            ++w.n_x;
          }
        }
        windows.push_back(w);
      }
      row0 += in.seq_lens[s];
    }
    if (idx.size() % 2 != 0) idx.push_back(0);  // 8-byte alignment for the int64 offsets
    off_po64 = idx.size();
    for (int64_t s = nd; s < S; ++s) {
      const int64_t v = in.prefix_offsets[s];
      int32_t words[2];
      std::memcpy(words, &v, 8);
      idx.push_back(words[0]);
      idx.push_back(words[1]);
    }
  }
  ASSIGN_OR_RETURN(void* didx, workspace_->Get(kSlotIndices, static_cast<int64_t>(idx.size()) * 4));
  RETURN_IF_ERROR(CopyBytes(didx, device_, idx.data(), Device::Cpu(),
                            static_cast<int64_t>(idx.size()) * 4, &stream_));
  const auto* di = static_cast<const int32_t*>(didx);

  StepContext ctx;
  ctx.stream = &stream_;
  ctx.blas = &blas_;
  ctx.comm = comm_;
  ctx.workspace = workspace_.get();
  ctx.conv_layout = pool.conv_layout();
  ctx.batch.num_tokens = T;
  ctx.batch.num_decode = nd;
  ctx.batch.num_prefill = np;
  ctx.batch.token_ids = di;
  ctx.batch.decode_blocks = di + off_decode;
  ctx.batch.prefill_cu_seqlens = di + off_cu;
  ctx.batch.prefill_initial_blocks = di + off_init;
  ctx.batch.prefill_final_blocks = di + off_final;
  if (B > 0) {
    ctx.batch.boundary_block_size = B;
    ctx.batch.prefix_offsets32 = di + off_po32;
    ctx.batch.prefix_offsets64 = reinterpret_cast<const int64_t*>(di + off_po64);
    ctx.batch.ssd_boundary_offsets = di + off_ssd_off;
    ctx.batch.ssd_boundary_blocks = di + off_ssd_blocks;
    ctx.batch.m1_boundary_blocks = di + off_m1;
    ctx.batch.m1_boundary_stride = m1_stride;
    for (const PendingWindow& w : windows) {
      ctx.batch.boundary_windows.push_back(
          {w.dst, w.init, w.n_init, di + w.init_off, w.n_x, di + w.x_off});
    }
  }

  ASSIGN_OR_RETURN(void* hidden, workspace_->Get(kSlotHidden, T * dm * es));
  ASSIGN_OR_RETURN(void* residual,
                   workspace_->Get(kSlotResidual, T * dm * DTypeSize(residual_dtype_)));
  ASSIGN_OR_RETURN(void* normed, workspace_->Get(kSlotNormed, T * dm * es));

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
  if (!in.all_logits) {
    ASSIGN_OR_RETURN(void* sel, workspace_->Get(kSlotSelected, rows * dm * es));
    CopyRowsParams cp{rows, dm, di + off_rows, normed, dm, dtype_, sel, dm, dtype_};
    RETURN_IF_ERROR(RunCopyRows(cp, stream_));
    head_in = sel;
  }
  const int64_t V = vocab_local_rows_;
  ASSIGN_OR_RETURN(void* local_logits, workspace_->Get(kSlotLogits, rows * V * 4));
  RETURN_IF_ERROR(
      lm_head_.Forward(head_in, dm, rows, local_logits, V, DType::kF32, stream_, blas_));
  const void* gathered = local_logits;
  if (tp() > 1) {
    ASSIGN_OR_RETURN(void* all, workspace_->Get(kSlotGathered, tp() * rows * V * 4));
    RETURN_IF_ERROR(comm_->AllGather(local_logits, all, rows * V, DType::kF32, stream_));
    gathered = all;
  }
  std::vector<float>& host = host_logits_;
  host.resize(static_cast<size_t>(tp() * rows * V));
  RETURN_IF_ERROR(CopyBytes(host.data(), Device::Cpu(), gathered, device_,
                            static_cast<int64_t>(host.size()) * 4, &stream_));
  RETURN_IF_ERROR(stream_.Synchronize());
  // (tp, rows, V) -> (rows, vocab): rank r's columns are padded vocab rows [r*V, (r+1)*V).
  const int64_t vocab = config_.vocab_size();
  logits->assign(static_cast<size_t>(rows * vocab), 0.0f);
  for (int r = 0; r < tp(); ++r) {
    const int64_t first = r * V;
    const int64_t n = std::max<int64_t>(0, std::min<int64_t>(V, vocab - first));
    for (int64_t i = 0; i < rows; ++i) {
      std::memcpy(logits->data() + i * vocab + first, host.data() + (r * rows + i) * V,
                  static_cast<size_t>(n) * 4);
    }
  }
  return absl::OkStatus();
}

}  // namespace mambaserve
