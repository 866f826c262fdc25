// CPU reference of the SSD chunked scan: the chunked algorithm written plainly, one (sequence,
// head) at a time, fp32 accumulation. Per chunk of Lc tokens (cum_i = sum_{k<=i} dt_k A):
//   y_i  = sum_{j<=i} (C_i . B_j) exp(cum_i - cum_j) dt_j x_j      (within-chunk (C B^T o L) X)
//        + exp(cum_i) C_i . h_in                                    (incoming state)
//        + D x_i
//   h_out = exp(cum_last) h_in + sum_j exp(cum_last - cum_j) dt_j B_j x_j^T   (chunk state)
// and h_out is passed to the next chunk.
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "kernels/mamba_math.h"
#include "kernels/ssd_chunk_scan.h"

namespace mambaserve {
namespace {

// Validates the host index arrays (the CUDA path cannot read them cheaply, the reference can).
absl::Status ValidateIndices(const SsdChunkScanParams& p) {
  if (p.num_seqs == 0) return absl::OkStatus();
  MS_CHECK_ARG(p.cu_seqlens[0] >= 0, "ssd: cu_seqlens[0] < 0");
  for (int64_t s = 0; s < p.num_seqs; ++s) {
    MS_CHECK_ARG(p.cu_seqlens[s + 1] >= p.cu_seqlens[s], "ssd: cu_seqlens decreases at ", s);
  }
  MS_CHECK_ARG(p.cu_seqlens[p.num_seqs] <= p.num_tokens, "ssd: cu_seqlens[num_seqs] (",
               p.cu_seqlens[p.num_seqs], ") > num_tokens (", p.num_tokens, ")");
  auto check_block = [&](int32_t b, const char* what) -> absl::Status {
    MS_CHECK_ARG(b >= 0 && b < p.num_blocks, "ssd: ", what, " block ", b, " outside [0, ",
                 p.num_blocks, ")");
    return absl::OkStatus();
  };
  for (int64_t s = 0; s < p.num_seqs; ++s) {
    if (p.initial_state_block) RETURN_IF_ERROR(check_block(p.initial_state_block[s], "initial"));
    if (p.final_state_block) RETURN_IF_ERROR(check_block(p.final_state_block[s], "final"));
    if (p.prefix_offset) MS_CHECK_ARG(p.prefix_offset[s] >= 0, "ssd: prefix_offset < 0");
  }
  if (p.block_size > 0) {
    for (int64_t s = 0; s < p.num_seqs; ++s) {
      MS_CHECK_ARG(p.boundary_state_offsets[s + 1] >= p.boundary_state_offsets[s],
                   "ssd: boundary_state_offsets decreases at ", s);
      for (int32_t i = p.boundary_state_offsets[s]; i < p.boundary_state_offsets[s + 1]; ++i) {
        RETURN_IF_ERROR(check_block(p.boundary_state_blocks[i], "boundary"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RunSsdChunkScanCpu(const SsdChunkScanParams& p) {
  RETURN_IF_ERROR(ValidateSsdChunkScanParams(p));
  RETURN_IF_ERROR(ValidateIndices(p));
  const int64_t H = p.num_heads, P = p.head_dim, N = p.d_state, Q = p.chunk_size;
  const int64_t hpg = p.heads_per_group > 0 ? p.heads_per_group : H / p.num_groups;
  const int64_t state_head_stride = p.state_head_stride > 0 ? p.state_head_stride : P * N;
  auto state_at = [&](int32_t block, int64_t h) {
    return block * p.state_block_stride + h * state_head_stride;  // element offset
  };

  std::vector<float> h(P * N), xs, dts, cum, Bs, Cs, CB, ys;
  for (int64_t s = 0; s < p.num_seqs; ++s) {
    const int64_t t0 = p.cu_seqlens[s];
    const int64_t len = p.cu_seqlens[s + 1] - t0;
    const int64_t off = p.prefix_offset ? p.prefix_offset[s] : 0;
    const int32_t init_block = p.initial_state_block ? p.initial_state_block[s] : 0;
    const int32_t final_block = p.final_state_block ? p.final_state_block[s] : 0;
    const int64_t num_bnd_slots =
        p.block_size > 0 ? p.boundary_state_offsets[s + 1] - p.boundary_state_offsets[s] : 0;
    for (int64_t hd = 0; hd < H; ++hd) {
      const int64_t g = (p.first_head + hd) / hpg - p.first_group;
      const float A = p.A[hd];
      // Initial state.
      for (int64_t e = 0; e < P * N; ++e) {
        h[e] = init_block == 0 ? 0.0f
                               : LoadAsFloat(p.state, p.state_dtype, state_at(init_block, hd) + e);
      }
      // Chunks aligned to absolute positions (multiples of Q).
      int64_t c0 = 0;
      while (c0 < len) {
        const int64_t abs0 = off + c0;
        const int64_t Lc = std::min(len - c0, Q - abs0 % Q);
        xs.assign(Lc * P, 0.0f);
        dts.assign(Lc, 0.0f);
        cum.assign(Lc, 0.0f);
        Bs.assign(Lc * N, 0.0f);
        Cs.assign(Lc * N, 0.0f);
        float run = 0.0f;
        for (int64_t i = 0; i < Lc; ++i) {
          const int64_t t = t0 + c0 + i;
          float d = LoadAsFloat(p.dt, p.dt_dtype, t * p.dt_token_stride + hd);
          if (p.dt_bias) d += p.dt_bias[hd];
          if (p.dt_softplus) d = Softplus(d);
          d = ClampDt(d, p.dt_min, p.dt_max);
          dts[i] = d;
          run += d * A;
          cum[i] = run;
          for (int64_t q = 0; q < P; ++q) {
            xs[i * P + q] =
                LoadAsFloat(p.x, p.dtype, t * p.x_token_stride + hd * p.x_head_stride + q);
          }
          for (int64_t n = 0; n < N; ++n) {
            Bs[i * N + n] =
                LoadAsFloat(p.B, p.dtype, t * p.B_token_stride + g * p.B_group_stride + n);
            Cs[i * N + n] =
                LoadAsFloat(p.C, p.dtype, t * p.C_token_stride + g * p.C_group_stride + n);
          }
        }
        // CB = C B^T (lower triangle).
        CB.assign(Lc * Lc, 0.0f);
        for (int64_t i = 0; i < Lc; ++i) {
          for (int64_t j = 0; j <= i; ++j) {
            float acc = 0.0f;
            for (int64_t n = 0; n < N; ++n) acc += Cs[i * N + n] * Bs[j * N + n];
            CB[i * Lc + j] = acc;
          }
        }
        // Outputs.
        ys.assign(Lc * P, 0.0f);
        for (int64_t i = 0; i < Lc; ++i) {
          const float in_scale = std::exp(cum[i]);
          for (int64_t q = 0; q < P; ++q) {
            float acc_state = 0.0f;
            for (int64_t n = 0; n < N; ++n) acc_state += Cs[i * N + n] * h[q * N + n];
            float acc = in_scale * acc_state;
            for (int64_t j = 0; j <= i; ++j) {
              acc += CB[i * Lc + j] * std::exp(cum[i] - cum[j]) * dts[j] * xs[j * P + q];
            }
            if (p.D) acc += (p.D_per_channel ? p.D[hd * P + q] : p.D[hd]) * xs[i * P + q];
            ys[i * P + q] = acc;
          }
        }
        // Chunk state, passed on.
        const float last = cum[Lc - 1];
        const float chunk_decay = std::exp(last);
        for (int64_t q = 0; q < P; ++q) {
          for (int64_t n = 0; n < N; ++n) {
            float acc = chunk_decay * h[q * N + n];
            for (int64_t j = 0; j < Lc; ++j) {
              acc += std::exp(last - cum[j]) * dts[j] * Bs[j * N + n] * xs[j * P + q];
            }
            h[q * N + n] = acc;
          }
        }
        // Write y (with optional z gating).
        for (int64_t i = 0; i < Lc; ++i) {
          const int64_t t = t0 + c0 + i;
          for (int64_t q = 0; q < P; ++q) {
            float v = ys[i * P + q];
            if (p.z) {
              v *= Silu(LoadAsFloat(p.z, p.dtype, t * p.z_token_stride + hd * p.z_head_stride + q));
            }
            StoreFromFloat(p.y, p.dtype, t * p.y_token_stride + hd * p.y_head_stride + q, v);
          }
        }
        c0 += Lc;
        // Block-boundary state at absolute position off + c0 (the state after token off+c0-1).
        const int64_t abs_end = off + c0;
        if (p.block_size > 0 && abs_end % p.block_size == 0) {
          const int64_t i = abs_end / p.block_size - (off / p.block_size + 1);
          if (i < num_bnd_slots) {
            const int32_t b = p.boundary_state_blocks[p.boundary_state_offsets[s] + i];
            if (b != 0) {
              for (int64_t e = 0; e < P * N; ++e) {
                StoreFromFloat(p.state, p.state_dtype, state_at(b, hd) + e, h[e]);
              }
            }
          }
        }
      }
      if (final_block != 0) {
        for (int64_t e = 0; e < P * N; ++e) {
          StoreFromFloat(p.state, p.state_dtype, state_at(final_block, hd) + e, h[e]);
        }
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace mambaserve
