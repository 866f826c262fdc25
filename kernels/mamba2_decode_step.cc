// Validation and dispatch of the Mamba-2 decode step (see mamba2_decode_step.h).
#include "kernels/mamba2_decode_step.h"

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "kernels/mamba2_state_update_internal.h"

namespace mambaserve {
namespace {

bool Fail(std::string* why, std::string reason) {
  if (why != nullptr) *why = std::move(reason);
  return false;
}

bool PowerOfTwoIn(int64_t v, int64_t lo, int64_t hi) {
  return v >= lo && v <= hi && (v & (v - 1)) == 0;
}

}  // namespace

bool Mamba2DecodeStepFusable(const Mamba2DecodeStepParams& p, std::string* why) {
  const CausalConv1dUpdateParams& c = p.conv;
  const Mamba2StateUpdateParams& s = p.ssm;
  const GatedRmsNormParams& n = p.norm;
  const int64_t H = s.num_heads, P = s.head_dim, G = s.num_groups, N = s.d_state;
  const int64_t es = DTypeSize(s.dtype);
  if (c.tokens_per_seq != 1 || s.tokens_per_seq != 1) return Fail(why, "more than one token");
  if (s.state_block_out != nullptr) return Fail(why, "speculative state outputs");
  if (c.num_seqs != s.batch || n.num_tokens != s.batch) return Fail(why, "batch sizes differ");
  if (c.state_block != s.state_block_in) return Fail(why, "conv and state blocks differ");
  if (c.pool.align != ConvStateAlign::kTail || c.pool.state_len != c.w.width - 1) {
    return Fail(why, "conv windows are not tail-aligned width-1 rows");
  }
  if (c.dtype != s.dtype || n.dtype != s.dtype || s.dt_dtype != s.dtype ||
      c.w.weight_dtype != s.dtype) {
    return Fail(why, "activation dtypes differ");
  }
  if (s.dtype != DType::kF32 && s.dtype != DType::kBF16) {
    return Fail(why, "activations are neither fp32 nor bf16");
  }
  if (c.w.width > 4) return Fail(why, "conv width above 4");
  if (c.w.dim != H * P + 2 * G * N) return Fail(why, "conv dim is not H*P + 2*G*N");
  const char* out = static_cast<const char*>(c.out);
  if (s.x != out || s.B != out + H * P * es || s.C != out + (H * P + G * N) * es ||
      s.x_batch_stride != c.out_seq_stride || s.B_batch_stride != c.out_seq_stride ||
      s.C_batch_stride != c.out_seq_stride || s.x_head_stride != P || s.B_group_stride != N ||
      s.C_group_stride != N) {
    return Fail(why, "x, B, C are not the conv output's [x | B | C] columns");
  }
  if (s.z != nullptr) return Fail(why, "z in the state update (the norm gates)");
  if (n.mode != GatedRmsNormMode::kFused || n.y != s.y || n.out != s.y ||
      n.y_row_stride != s.y_batch_stride || n.out_row_stride != s.y_batch_stride ||
      s.y_head_stride != P || n.dim != H * P) {
    return Fail(why, "the norm is not a fused-mode norm of y in place");
  }
  if (n.group_size % P != 0) return Fail(why, "norm groups do not hold whole heads");
  if (n.weight_dtype != DType::kF32) return Fail(why, "norm weight is not fp32");
  if (s.state_dtype == DType::kF32 ? !PowerOfTwoIn(N, 32, 256) : !PowerOfTwoIn(N, 64, 256)) {
    return Fail(why, absl::StrCat("d_state ", N, " not supported by the fused kernel"));
  }
  const int64_t vec = s.state_dtype == DType::kF32 ? 4 : 8;
  if (s.state_p_stride % vec != 0 || s.state_head_stride % vec != 0 ||
      s.state_block_stride % vec != 0 || reinterpret_cast<uintptr_t>(s.state) % 16 != 0) {
    return Fail(why, "state rows are not 16-byte aligned");
  }
  if (p.arrivals == nullptr || p.partial_sums == nullptr) return Fail(why, "no scratch");
  return true;
}

absl::Status RunMamba2DecodeStep(const Mamba2DecodeStepParams& p, const Stream& stream) {
  RETURN_IF_ERROR(ValidateCausalConv1dUpdate(p.conv));
  RETURN_IF_ERROR(ValidateMamba2StateUpdate(p.ssm));
  RETURN_IF_ERROR(ValidateGatedRmsNorm(p.norm));
  if (p.ssm.batch == 0) return absl::OkStatus();
#if MAMBASERVE_HAS_CUDA
  if (stream.is_cuda() && Mamba2DecodeStepFusable(p)) {
    return RunMamba2DecodeStepFusedCuda(p, stream);
  }
#endif
  RETURN_IF_ERROR(RunCausalConv1dUpdate(p.conv, stream));
  RETURN_IF_ERROR(RunMamba2StateUpdate(p.ssm, stream));
  return RunGatedRmsNorm(p.norm, stream);
}

}  // namespace mambaserve
