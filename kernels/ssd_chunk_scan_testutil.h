// Test helpers for the SSD chunked scan: a random problem with strided, padded host buffers, the
// float64 oracle built from kernels/reference_scan.h, and comparisons. Header-only, used by the
// CPU test and the GPU test.
#ifndef MAMBASERVE_KERNELS_SSD_CHUNK_SCAN_TESTUTIL_H_
#define MAMBASERVE_KERNELS_SSD_CHUNK_SCAN_TESTUTIL_H_

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/dtype.h"
#include "core/random.h"
#include "kernels/mamba_math.h"
#include "kernels/reference_scan.h"
#include "kernels/ssd_chunk_scan.h"

namespace mambaserve::ssd_test {

struct Case {
  std::string name;
  std::vector<int32_t> seqlens;
  int64_t H = 4, P = 8, G = 1, N = 16, Q = 16;
  DType dtype = DType::kF32;
  DType state_dtype = DType::kF32;
  bool has_D = true, D_per_channel = false, has_z = false, has_dt_bias = true;
  bool initial_states = true;  // give most sequences an initial block (some the null block)
  bool final_states = true;
  int64_t block_size = 0;       // boundary states when > 0
  bool prefix_offsets = false;  // random prefix offsets
  // Group mapping (0 = default h / (H/G)).
  int64_t first_head = 0, first_group = 0, heads_per_group = 0;
  float dt_min = 0.0f, dt_max = std::numeric_limits<float>::infinity();
  float a_max = 2.0f;       // A = -exp(U(log 0.05, log a_max)) per head
  int64_t lead_tokens = 0;  // rows before the first sequence (cu_seqlens[0] > 0)
  bool aligned = false;     // strides multiples of 8 elements (vectorised GPU loads)
  uint64_t seed = 1;
};

// Host buffers as byte vectors (dtype-agnostic) plus the params pointing into them.
struct Problem {
  Case c;
  int64_t T = 0;
  std::vector<int32_t> cu, init_block, final_block, prefix, bnd_blocks, bnd_offsets;
  std::vector<uint8_t> x, dt, Bm, Cm, z, y, state;
  std::vector<float> dt_bias, A, D;
  SsdChunkScanParams p;

  // Float views of inputs (already rounded to their dtype).
  float Get(const std::vector<uint8_t>& buf, DType t, int64_t i) const {
    return LoadAsFloat(buf.data(), t, i);
  }
};

inline void FillRandom(std::vector<uint8_t>& buf, DType t, int64_t n, Rng& rng, float lo,
                       float hi) {
  buf.assign(n * DTypeSize(t), 0);
  for (int64_t i = 0; i < n; ++i) StoreFromFloat(buf.data(), t, i, rng.Uniform(lo, hi));
}

inline void Poison(std::vector<uint8_t>& buf, DType t, int64_t n) {
  buf.assign(n * DTypeSize(t), 0);
  for (int64_t i = 0; i < n; ++i) {
    StoreFromFloat(buf.data(), t, i, std::numeric_limits<float>::quiet_NaN());
  }
}

// Makes the problem; pointers in p refer to the host buffers (re-point them for the device).
inline Problem MakeProblem(const Case& c) {
  Problem pr;
  pr.c = c;
  Rng rng(c.seed);
  const int64_t S = static_cast<int64_t>(c.seqlens.size());
  pr.cu.push_back(static_cast<int32_t>(c.lead_tokens));
  for (int32_t l : c.seqlens) pr.cu.push_back(pr.cu.back() + l);
  pr.T = pr.cu.back() + 3;  // a few trailing rows not covered by any sequence
  const int64_t T = pr.T, H = c.H, P = c.P, G = c.G, N = c.N;
  SsdChunkScanParams& p = pr.p;
  p.num_tokens = T;
  p.num_seqs = S;
  p.num_heads = H;
  p.head_dim = P;
  p.num_groups = G;
  p.d_state = N;
  p.chunk_size = c.Q;
  p.first_head = c.first_head;
  p.first_group = c.first_group;
  p.heads_per_group = c.heads_per_group;
  p.dtype = c.dtype;
  p.dt_dtype = c.dtype;
  // Padded strides: x and z are column slices of a wider row, heads padded. With `aligned`
  // every stride is rounded up to a multiple of 8 elements.
  auto al = [&](int64_t v) { return c.aligned ? (v + 7) / 8 * 8 : v; };
  p.x_head_stride = al(P + 3);
  p.x_token_stride = al(H * p.x_head_stride + 5);
  p.z_head_stride = al(P + 1);
  p.z_token_stride = al(H * p.z_head_stride + 2);
  p.y_head_stride = al(P + 2);
  p.y_token_stride = al(H * p.y_head_stride + 1);
  p.dt_token_stride = H + 3;
  p.B_group_stride = al(N + 1);
  p.B_token_stride = al(G * p.B_group_stride + 4);
  p.C_group_stride = al(N + 2);
  p.C_token_stride = al(G * p.C_group_stride + 1);
  FillRandom(pr.x, c.dtype, T * p.x_token_stride, rng, -1.0f, 1.0f);
  FillRandom(pr.dt, c.dtype, T * p.dt_token_stride, rng, -4.0f, 0.5f);
  FillRandom(pr.Bm, c.dtype, T * p.B_token_stride, rng, -1.0f, 1.0f);
  FillRandom(pr.Cm, c.dtype, T * p.C_token_stride, rng, -1.0f, 1.0f);
  if (c.has_z) FillRandom(pr.z, c.dtype, T * p.z_token_stride, rng, -2.0f, 2.0f);
  Poison(pr.y, c.dtype, T * p.y_token_stride);
  pr.A.resize(H);
  for (auto& a : pr.A) a = -std::exp(rng.Uniform(std::log(0.05f), std::log(c.a_max)));
  if (c.has_dt_bias) pr.dt_bias = rng.UniformVector(H, -1.0f, 1.0f);
  if (c.has_D) pr.D = rng.UniformVector(c.D_per_channel ? H * P : H, -1.0f, 1.0f);
  p.x = pr.x.data();
  p.dt = pr.dt.data();
  p.B = pr.Bm.data();
  p.C = pr.Cm.data();
  p.z = c.has_z ? pr.z.data() : nullptr;
  p.y = pr.y.data();
  p.A = pr.A.data();
  p.dt_bias = c.has_dt_bias ? pr.dt_bias.data() : nullptr;
  p.D = c.has_D ? pr.D.data() : nullptr;
  p.D_per_channel = c.D_per_channel;
  p.dt_min = c.dt_min;
  p.dt_max = c.dt_max;
  p.cu_seqlens = pr.cu.data();

  // Pool: block 0 null, then initial blocks, final blocks, boundary blocks.
  int32_t next = 1;
  pr.init_block.assign(S, 0);
  pr.final_block.assign(S, 0);
  pr.prefix.assign(S, 0);
  for (int64_t s = 0; s < S; ++s) {
    if (c.initial_states && (s % 3 != 1)) pr.init_block[s] = next++;
    if (c.final_states && (s % 4 != 2)) pr.final_block[s] = next++;
    if (c.prefix_offsets) pr.prefix[s] = static_cast<int32_t>(rng.Int(0, 3 * c.Q));
  }
  if (S > 0 && c.final_states && c.initial_states && pr.init_block[0] != 0) {
    pr.final_block[0] = pr.init_block[0];  // continue in place
  }
  pr.bnd_offsets.assign(1, 0);
  if (c.block_size > 0) {
    for (int64_t s = 0; s < S; ++s) {
      const int64_t off = pr.prefix[s], len = c.seqlens[s];
      const int64_t nb = (off + len) / c.block_size - off / c.block_size;
      // Leave one slot out for odd sequences (later boundaries not written) and a 0 entry.
      const int64_t slots = (s % 2 == 1 && nb > 0) ? nb - 1 : nb;
      for (int64_t i = 0; i < slots; ++i) {
        pr.bnd_blocks.push_back((i == 1 && s % 3 == 0) ? 0 : next++);
      }
      pr.bnd_offsets.push_back(static_cast<int32_t>(pr.bnd_blocks.size()));
    }
    if (pr.bnd_blocks.empty()) pr.bnd_blocks.push_back(0);
  }
  p.state_dtype = c.state_dtype;
  p.num_blocks = next + 1;  // one spare block, never written
  p.state_head_stride = P * N + 1;
  p.state_block_stride = H * p.state_head_stride + 3;
  FillRandom(pr.state, c.state_dtype, p.num_blocks * p.state_block_stride, rng, -1.0f, 1.0f);
  p.state = pr.state.data();
  p.initial_state_block = pr.init_block.data();
  p.final_state_block = pr.final_block.data();
  p.prefix_offset = c.prefix_offsets ? pr.prefix.data() : nullptr;
  p.block_size = c.block_size;
  if (c.block_size > 0) {
    p.boundary_state_blocks = pr.bnd_blocks.data();
    p.boundary_state_offsets = pr.bnd_offsets.data();
  }
  return pr;
}

// The float64 oracle: y (T*H*P, indexed [t][h][p] dense) and the expected pool after the run.
struct Oracle {
  std::vector<double> y;      // dense (T, H, P); rows outside sequences are NaN
  std::vector<double> state;  // the pool after the run (same layout as Problem::state)
};

inline Oracle RunOracle(const Problem& pr) {
  const SsdChunkScanParams& p = pr.p;
  const Case& c = pr.c;
  const int64_t H = c.H, P = c.P, N = c.N;
  const int64_t hpg = c.heads_per_group > 0 ? c.heads_per_group : H / c.G;
  Oracle o;
  o.y.assign(pr.T * H * P, std::numeric_limits<double>::quiet_NaN());
  const int64_t pool_n = p.num_blocks * p.state_block_stride;
  o.state.resize(pool_n);
  for (int64_t i = 0; i < pool_n; ++i) o.state[i] = pr.Get(pr.state, c.state_dtype, i);
  const std::vector<double> pool0 = o.state;
  auto sidx = [&](int64_t b, int64_t h, int64_t q, int64_t n) {
    return b * p.state_block_stride + h * p.state_head_stride + q * N + n;
  };
  for (int64_t s = 0; s < p.num_seqs; ++s) {
    const int64_t t0 = pr.cu[s], len = pr.cu[s + 1] - t0;
    const int64_t off = p.prefix_offset ? pr.prefix[s] : 0;
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = (c.first_head + h) / hpg - c.first_group;
      std::vector<double> dt(len), A(N, pr.A[h]), B(len * N), C(len * N), x(len), h0(N);
      for (int64_t i = 0; i < len; ++i) {
        const int64_t t = t0 + i;
        double d = pr.Get(pr.dt, c.dtype, t * p.dt_token_stride + h);
        if (p.dt_bias) d += pr.dt_bias[h];
        d = Softplus(d);
        d = ClampDt<double>(d, c.dt_min, c.dt_max);
        dt[i] = d;
        for (int64_t n = 0; n < N; ++n) {
          B[i * N + n] = pr.Get(pr.Bm, c.dtype, t * p.B_token_stride + g * p.B_group_stride + n);
          C[i * N + n] = pr.Get(pr.Cm, c.dtype, t * p.C_token_stride + g * p.C_group_stride + n);
        }
      }
      for (int64_t q = 0; q < P; ++q) {
        for (int64_t i = 0; i < len; ++i) {
          x[i] = pr.Get(pr.x, c.dtype, (t0 + i) * p.x_token_stride + h * p.x_head_stride + q);
        }
        const int32_t ib = pr.init_block[s];
        for (int64_t n = 0; n < N; ++n) h0[n] = ib == 0 ? 0.0 : pool0[sidx(ib, h, q, n)];
        ReferenceChannelScan rs;
        rs.x = x;
        rs.dt = dt;
        rs.A = A;
        rs.B = B;
        rs.C = C;
        rs.D = p.D ? (c.D_per_channel ? pr.D[h * P + q] : pr.D[h]) : 0.0;
        rs.h0 = h0;
        const ReferenceScanResult r = RunReferenceChannelScan(rs);
        for (int64_t i = 0; i < len; ++i) {
          double v = r.y[i];
          if (p.z) {
            v *= Silu<double>(
                pr.Get(pr.z, c.dtype, (t0 + i) * p.z_token_stride + h * p.z_head_stride + q));
          }
          o.y[((t0 + i) * H + h) * P + q] = v;
        }
        if (c.block_size > 0) {
          const int64_t slots = pr.bnd_offsets[s + 1] - pr.bnd_offsets[s];
          for (int64_t i = 0; i < slots; ++i) {
            const int32_t b = pr.bnd_blocks[pr.bnd_offsets[s] + i];
            if (b == 0) continue;
            const int64_t a = (off / c.block_size + 1 + i) * c.block_size;  // absolute position
            const int64_t local = a - off - 1;                              // last token index
            for (int64_t n = 0; n < N; ++n) o.state[sidx(b, h, q, n)] = r.h_all[local * N + n];
          }
        }
        const int32_t fb = pr.final_block[s];
        if (fb != 0) {
          for (int64_t n = 0; n < N; ++n)
            o.state[sidx(fb, h, q, n)] = len > 0 ? r.h_final[n] : h0[n];
        }
      }
    }
  }
  return o;
}

struct Errors {
  double y_rel = 0.0;      // relative norm error of y over covered rows
  double state_rel = 0.0;  // relative norm error over written state blocks
  int64_t y_nonfinite = 0;
  int64_t uncovered_touched = 0;       // y rows outside sequences that lost their poison
  int64_t pool_untouched_changed = 0;  // pool elements the run should not write that changed
};

// Compares the run's outputs (in pr.y / pr.state, host) with the oracle.
inline Errors Compare(const Problem& pr, const std::vector<uint8_t>& y,
                      const std::vector<uint8_t>& state, const Oracle& o,
                      const std::vector<uint8_t>& state_before) {
  const SsdChunkScanParams& p = pr.p;
  const Case& c = pr.c;
  const int64_t H = c.H, P = c.P;
  Errors e;
  double num = 0, den = 0;
  for (int64_t t = 0; t < pr.T; ++t) {
    const bool covered = p.num_seqs > 0 && t >= pr.cu[0] && t < pr.cu[p.num_seqs];
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t q = 0; q < P; ++q) {
        const double got =
            LoadAsFloat(y.data(), c.dtype, t * p.y_token_stride + h * p.y_head_stride + q);
        if (!covered) {
          if (!std::isnan(got)) ++e.uncovered_touched;
          continue;
        }
        const double want = o.y[(t * H + h) * P + q];
        if (!std::isfinite(got)) {
          ++e.y_nonfinite;
          continue;
        }
        num += (got - want) * (got - want);
        den += want * want;
      }
    }
  }
  e.y_rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  num = den = 0;
  const int64_t pool_n = p.num_blocks * p.state_block_stride;
  for (int64_t i = 0; i < pool_n; ++i) {
    const double got = LoadAsFloat(state.data(), c.state_dtype, i);
    const double before = LoadAsFloat(state_before.data(), c.state_dtype, i);
    const double want = o.state[i];
    if (want == before) {
      // Not expected to change (or the oracle wrote the same value).
      if (got != before && std::fabs(got - want) > 1e-2 * (1 + std::fabs(want))) {
        ++e.pool_untouched_changed;
      }
      continue;
    }
    num += (got - want) * (got - want);
    den += want * want;
  }
  e.state_rel = den > 0 ? std::sqrt(num / den) : 0.0;
  return e;
}

inline std::string Describe(const Errors& e) {
  return absl::StrCat("y_rel=", e.y_rel, " state_rel=", e.state_rel, " y_nonfinite=", e.y_nonfinite,
                      " uncovered_touched=", e.uncovered_touched,
                      " pool_untouched_changed=", e.pool_untouched_changed);
}

// Tolerances. fp32 everywhere: the kernels accumulate in fp32 over at most a few hundred terms
// per output, so the relative norm error vs float64 is ~1e-6; 2e-5 leaves headroom. 16-bit
// outputs or states are rounded to 8 (bf16) mantissa bits: relative rounding error ~2^-9 ~ 2e-3
// per element, plus bf16 operands of the tensor-core products; 1e-2 bounds that.
inline double YTolerance(const Case& c) { return c.dtype == DType::kF32 ? 2e-5 : 1e-2; }
inline double StateTolerance(const Case& c, bool tensor_core) {
  if (c.state_dtype == DType::kF32 && c.dtype == DType::kF32 && !tensor_core) return 2e-5;
  if (c.state_dtype == DType::kF32 && !tensor_core) return 1e-4;
  return 1e-2;
}

// The shape matrix shared by the CPU and GPU tests.
inline std::vector<Case> StandardCases() {
  std::vector<Case> cs;
  {
    Case c;
    c.name = "basic_f32";
    c.seqlens = {37};
    cs.push_back(c);
  }
  {
    Case c;
    c.name = "varlen_odd_f32";
    c.seqlens = {5, 70, 1, 33, 16, 0, 129};
    c.H = 6, c.P = 5, c.G = 3, c.N = 7, c.Q = 16;
    c.D_per_channel = true;
    c.has_z = true;
    c.lead_tokens = 2;
    c.seed = 2;
    cs.push_back(c);
  }
  {
    Case c;
    c.name = "straddle_groups_boundaries_f32";
    // Global H=12, G=3 (4 heads per group), tp=2, rank 1: heads 6..11 read groups 1, 2.
    c.seqlens = {100, 7, 64, 200};
    c.H = 6, c.P = 9, c.G = 2, c.N = 11, c.Q = 32;
    c.first_head = 6, c.first_group = 1, c.heads_per_group = 4;
    c.block_size = 64;
    c.prefix_offsets = true;
    c.seed = 3;
    cs.push_back(c);
  }
  {
    Case c;
    c.name = "bf16_state_bf16_io";
    c.seqlens = {300, 45, 3};
    c.H = 4, c.P = 16, c.G = 2, c.N = 32, c.Q = 64;
    c.dtype = DType::kBF16;
    c.state_dtype = DType::kBF16;
    c.block_size = 128;
    c.prefix_offsets = true;
    c.has_z = true;
    c.seed = 4;
    cs.push_back(c);
  }
  {
    Case c;
    c.name = "bf16_io_f32_state_clamp";
    c.seqlens = {513, 17, 260};
    c.H = 8, c.P = 64, c.G = 1, c.N = 128, c.Q = 256;
    c.dtype = DType::kBF16;
    c.dt_min = 0.01f, c.dt_max = 0.3f;
    c.block_size = 256;
    c.seed = 5;
    cs.push_back(c);
  }
  {
    Case c;
    c.name = "f16_io_no_D_no_bias";
    c.seqlens = {40, 90};
    c.H = 3, c.P = 7, c.G = 1, c.N = 13, c.Q = 16;
    c.dtype = DType::kF16;
    c.has_D = false;
    c.has_dt_bias = false;
    c.seed = 6;
    cs.push_back(c);
  }
  {
    Case c;
    c.name = "bf16_many_chunks_multi_group";
    c.seqlens = {1000, 130, 64, 1, 700};
    c.H = 8, c.P = 72, c.G = 2, c.N = 96, c.Q = 128;
    c.dtype = DType::kBF16;
    c.block_size = 256;
    c.prefix_offsets = true;
    c.has_z = true;
    c.D_per_channel = true;
    c.seed = 7;
    cs.push_back(c);
  }
  {
    Case c;
    c.name = "bf16_aligned_p96_q32_straddle";
    c.seqlens = {500, 31, 64, 129, 2};
    c.H = 6, c.P = 96, c.G = 2, c.N = 128, c.Q = 32;
    c.first_head = 6, c.first_group = 1, c.heads_per_group = 4;
    c.dtype = DType::kBF16;
    c.block_size = 64;
    c.prefix_offsets = true;
    c.has_z = true;
    c.aligned = true;
    c.lead_tokens = 8;
    c.seed = 9;
    cs.push_back(c);
  }
  {
    Case c;
    c.name = "bf16_aligned_mamba2_like";
    c.seqlens = {1100, 256, 700, 5};
    c.H = 4, c.P = 64, c.G = 1, c.N = 128, c.Q = 256;
    c.dtype = DType::kBF16;
    c.block_size = 512;
    c.aligned = true;
    c.seed = 10;
    cs.push_back(c);
  }
  {
    Case c;
    c.name = "bf16_aligned_n64_bf16_state_q16";
    c.seqlens = {77, 300};
    c.H = 4, c.P = 32, c.G = 4, c.N = 64, c.Q = 16;
    c.dtype = DType::kBF16;
    c.state_dtype = DType::kBF16;
    c.block_size = 48;
    c.prefix_offsets = true;
    c.aligned = true;
    c.seed = 11;
    cs.push_back(c);
  }
  {
    // Heads from slow to very fast decay: in segments of the GPU's split runs, exp(cum) of the
    // fast heads underflows to zero a few tokens in, where the correction pass stops.
    Case c;
    c.name = "bf16_aligned_fast_decay_gated";
    c.seqlens = {1500, 640};
    c.H = 6, c.P = 64, c.G = 2, c.N = 128, c.Q = 64;
    c.dtype = DType::kBF16;
    c.has_z = true;
    c.a_max = 64.0f;
    c.block_size = 128;
    c.aligned = true;
    c.seed = 12;
    cs.push_back(c);
  }
  {
    Case c;
    c.name = "f32_no_states";
    c.seqlens = {50, 3};
    c.H = 2, c.P = 4, c.G = 2, c.N = 5, c.Q = 16;
    c.initial_states = false;
    c.final_states = false;
    c.seed = 8;
    cs.push_back(c);
  }
  return cs;
}

}  // namespace mambaserve::ssd_test

#endif  // MAMBASERVE_KERNELS_SSD_CHUNK_SCAN_TESTUTIL_H_
