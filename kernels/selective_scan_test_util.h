// Test support for the Mamba-1 scan and decode kernels (CPU tests and the GPU test): random
// problems held as float vectors already rounded to their dtypes, a float64 oracle built from
// kernels/reference_scan.h, and runners that move a problem to a device, run a kernel and read
// the results back. Header-only; used only by tests.
#ifndef MAMBASERVE_KERNELS_SELECTIVE_SCAN_TEST_UTIL_H_
#define MAMBASERVE_KERNELS_SELECTIVE_SCAN_TEST_UTIL_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/buffer.h"
#include "core/dtype.h"
#include "core/random.h"
#include "core/status_macros.h"
#include "core/stream.h"
#include "gtest/gtest.h"
#include "kernels/mamba1_state_update.h"
#include "kernels/mamba_math.h"
#include "kernels/reference_scan.h"
#include "kernels/selective_scan.h"

namespace mambaserve::scan_test {

// Every discretisation mode, for the test matrices.
inline constexpr Discretization kModes[] = {Discretization::kDefault, Discretization::kZoh,
                                            Discretization::kBilinear, Discretization::kDirac,
                                            Discretization::kEventDriven};

inline std::vector<uint8_t> ToBytes(const std::vector<float>& v, DType t) {
  std::vector<uint8_t> out(v.size() * DTypeSize(t));
  for (size_t i = 0; i < v.size(); ++i)
    StoreFromFloat(out.data(), t, static_cast<int64_t>(i), v[i]);
  return out;
}
inline std::vector<float> FromBytes(const std::vector<uint8_t>& b, DType t) {
  std::vector<float> out(b.size() / DTypeSize(t));
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = LoadAsFloat(b.data(), t, static_cast<int64_t>(i));
  return out;
}

// ||a - b|| / ||b|| over the selected entries.
inline double RelErr(std::span<const double> got, std::span<const double> want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double e = got[i] - want[i];
    num += e * e;
    den += want[i] * want[i];
  }
  if (den == 0) return std::sqrt(num);
  return std::sqrt(num / den);
}

// The CPU tests' parameter matrix: every mode x input dtype (f32, bf16, f16) x state dtype (f32,
// bf16); name its cases with ModeDTypesName.
inline auto CpuModeDTypeMatrix() {
  return ::testing::Combine(::testing::ValuesIn(kModes),
                            ::testing::Values(DType::kF32, DType::kBF16, DType::kF16),
                            ::testing::Values(DType::kF32, DType::kBF16));
}

// Test name of a (mode, input dtype, state dtype[, shape index]) parameter, such as
// "default_xbf16_statef32" or "zoh_xf32_statef32_shape2".
struct ModeDTypesName {
  template <typename Param>
  std::string operator()(const ::testing::TestParamInfo<Param>& info) const {
    std::string name = absl::StrCat(DiscretizationName(std::get<0>(info.param)), "_x",
                                    DTypeName(std::get<1>(info.param)), "_state",
                                    DTypeName(std::get<2>(info.param)));
    if constexpr (std::tuple_size_v < Param >> 3) {
      absl::StrAppend(&name, "_shape", std::get<3>(info.param));
    }
    return name;
  }
};

// Owns device (or host) copies of arrays and remembers them for read-back.
class DeviceArrays {
 public:
  explicit DeviceArrays(Device device) : device_(device) {}
  // Copies `bytes` to the device and returns the device pointer (nullptr for an empty vector).
  template <typename T>
  absl::StatusOr<T*> Put(const std::vector<T>& v) {
    if (v.empty()) return static_cast<T*>(nullptr);
    const int64_t nbytes = static_cast<int64_t>(v.size() * sizeof(T));
    ASSIGN_OR_RETURN(Buffer b, Buffer::Allocate(device_, nbytes));
    RETURN_IF_ERROR(CopyBytes(b.data(), device_, v.data(), Device::Cpu(), nbytes));
    T* ptr = static_cast<T*>(b.data());
    buffers_.push_back(std::move(b));
    return ptr;
  }
  absl::StatusOr<std::vector<uint8_t>> Get(const void* ptr, int64_t nbytes) {
    std::vector<uint8_t> out(nbytes);
    RETURN_IF_ERROR(CopyBytes(out.data(), Device::Cpu(), ptr, device_, nbytes));
    return out;
  }

 private:
  Device device_;
  std::vector<Buffer> buffers_;
};

struct ScanProblemOptions {
  int64_t dim = 32;
  int64_t d_state = 16;
  int64_t n_groups = 1;
  std::vector<int32_t> lengths = {1, 7, 40};
  DType x_dtype = DType::kF32;
  DType bc_dtype = DType::kF32;
  DType state_dtype = DType::kF32;
  Discretization mode = Discretization::kDefault;
  bool with_z = true, with_D = true, with_delta_bias = true, softplus = true;
  // Row strides exceed dim / N by these paddings (the inputs are slices of wider rows).
  int64_t row_pad = 3;
  // State blocks are dim * N + block_pad elements apart (5: unaligned rows; 0: 16-byte rows).
  int64_t block_pad = 5;
  // Per-sequence initial block: true = a fresh random state in its own block, false = block 0.
  std::vector<bool> initial_state;  // empty = all true
  // Per-sequence final block written (false = block 0, not written).
  std::vector<bool> final_state;       // empty = all true
  bool final_in_place = false;         // final block = initial block where there is one
  int64_t block_size = 0;              // boundary states on when > 0
  std::vector<int64_t> prefix_offset;  // per sequence, when block_size > 0
  uint64_t seed = 1;
  // CUDA launch geometry of the prefill (SelectiveScanParams::cuda_*; 0 = automatic).
  int cuda_time_segments = 0;
  // Decode: Mamba1StateUpdateParams::read_state_before_wait; delta passed as f32 (delta_dtype)
  // whatever x_dtype (its values are x_dtype's, so the results do not change).
  bool read_state_before_wait = false;
  bool delta_f32 = false;
};

// A packed-varlen prefill problem (also used, with lengths 1 + num_spec, for decodes).
struct ScanProblem {
  ScanProblemOptions o;
  int64_t S = 0, T = 0, D = 0, N = 0, G = 1;
  std::vector<int32_t> cu;
  int64_t u_stride = 0, delta_stride = 0, z_stride = 0, y_stride = 0;
  int64_t B_row_stride = 0, B_group_stride = 0, C_row_stride = 0, C_group_stride = 0;
  std::vector<float> u, delta, B, C, z, delta_bias, A, Dv, tau, bias_A;
  int64_t num_blocks = 0, block_stride = 0;
  std::vector<float> pool;  // [num_blocks * block_stride], values rounded to state dtype
  std::vector<int32_t> initial_block, final_block;
  int64_t boundary_stride = 0;
  std::vector<int32_t> boundary_blocks;  // [S * boundary_stride]
  std::vector<int64_t> prefix_offset;

  int64_t Len(int64_t s) const { return cu[s + 1] - cu[s]; }
  int64_t Boundaries(int64_t s) const {
    if (o.block_size <= 0) return 0;
    return (prefix_offset[s] + Len(s)) / o.block_size - prefix_offset[s] / o.block_size;
  }
};

inline ScanProblem MakeScanProblem(const ScanProblemOptions& o) {
  ScanProblem p;
  p.o = o;
  Rng rng(o.seed);
  p.S = static_cast<int64_t>(o.lengths.size());
  p.D = o.dim;
  p.N = o.d_state;
  p.G = o.n_groups;
  p.cu.assign(p.S + 1, 0);
  for (int64_t s = 0; s < p.S; ++s) p.cu[s + 1] = p.cu[s] + o.lengths[s];
  p.T = p.cu[p.S];
  p.u_stride = p.D + o.row_pad;
  p.delta_stride = p.D + 2 * o.row_pad;
  p.z_stride = p.D + o.row_pad;
  p.y_stride = p.D + o.row_pad;
  p.B_group_stride = p.N + o.row_pad;
  p.B_row_stride = p.G * p.B_group_stride + o.row_pad;
  p.C_group_stride = p.N;
  p.C_row_stride = p.G * p.N + 2 * o.row_pad;
  const int64_t T1 = std::max<int64_t>(p.T, 1);
  p.u = rng.NormalVector(T1 * p.u_stride);
  p.delta = rng.UniformVector(T1 * p.delta_stride, -3.0f, 0.5f);
  p.B = rng.NormalVector(T1 * p.B_row_stride);
  p.C = rng.NormalVector(T1 * p.C_row_stride);
  RoundTo(o.x_dtype, p.u);
  RoundTo(o.x_dtype, p.delta);
  RoundTo(o.bc_dtype, p.B);
  RoundTo(o.bc_dtype, p.C);
  if (o.with_z) {
    p.z = rng.NormalVector(T1 * p.z_stride, 1.5f);
    RoundTo(o.x_dtype, p.z);
  }
  if (o.with_delta_bias) p.delta_bias = rng.UniformVector(p.D, -1.0f, 0.5f);
  p.A.resize(p.D * p.N);
  for (auto& a : p.A) a = -std::exp(rng.Uniform(std::log(0.1f), std::log(8.0f)));
  if (o.with_D) p.Dv = rng.UniformVector(p.D, -1.0f, 1.0f);
  if (o.mode == Discretization::kEventDriven) {
    p.tau = rng.UniformVector(T1, 0.01f, 1.0f);
    p.bias_A = rng.NormalVector(p.D);
  }
  // State pool: block 0 null, then one block per initial state, one per final state, one per
  // boundary state, and a spare so indices are not simply sequential.
  p.block_stride = p.D * p.N + o.block_pad;
  int32_t next = 2;
  p.initial_block.assign(p.S, 0);
  p.final_block.assign(p.S, 0);
  for (int64_t s = 0; s < p.S; ++s) {
    const bool init = o.initial_state.empty() || o.initial_state[s];
    if (init) p.initial_block[s] = next++;
  }
  for (int64_t s = 0; s < p.S; ++s) {
    const bool fin = o.final_state.empty() || o.final_state[s];
    if (!fin) continue;
    p.final_block[s] = (o.final_in_place && p.initial_block[s] != 0) ? p.initial_block[s] : next++;
  }
  if (o.block_size > 0) {
    p.prefix_offset = o.prefix_offset;
    p.prefix_offset.resize(p.S, 0);
    int64_t max_b = 1;
    for (int64_t s = 0; s < p.S; ++s) max_b = std::max(max_b, p.Boundaries(s));
    p.boundary_stride = max_b + 1;
    p.boundary_blocks.assign(p.S * p.boundary_stride, -7);  // unused entries: never read
    for (int64_t s = 0; s < p.S; ++s) {
      for (int64_t j = 0; j < p.Boundaries(s); ++j) {
        // Every third boundary of a sequence goes to the null block (skipped).
        p.boundary_blocks[s * p.boundary_stride + j] = (j % 3 == 2) ? 0 : next++;
      }
    }
  }
  p.num_blocks = next + 1;
  p.pool = rng.NormalVector(p.num_blocks * p.block_stride);  // poison everywhere
  RoundTo(o.state_dtype, p.pool);
  return p;
}

// What a kernel produced: y rows and the whole state pool, as floats.
struct ScanOutputs {
  std::vector<float> y;     // [T * y_stride]
  std::vector<float> pool;  // [num_blocks * block_stride]
};

inline constexpr float kPoison = -12345.0f;

// Fills the fields SelectiveScanParams and Mamba1StateUpdateParams share (sizes, token inputs,
// weights, mode) with copies of `p` in `arr`; y is poisoned. Returns y's address in `arr`.
template <typename Params>
absl::StatusOr<void*> PutTokenInputs(const ScanProblem& p, DeviceArrays& arr, Params& q) {
  q.dim = p.D;
  q.d_state = p.N;
  q.n_groups = p.G;
  q.x_dtype = p.o.x_dtype;
  q.bc_dtype = p.o.bc_dtype;
  ASSIGN_OR_RETURN(q.u, arr.Put(ToBytes(p.u, p.o.x_dtype)));
  ASSIGN_OR_RETURN(q.delta, arr.Put(ToBytes(p.delta, p.o.x_dtype)));
  ASSIGN_OR_RETURN(q.B, arr.Put(ToBytes(p.B, p.o.bc_dtype)));
  ASSIGN_OR_RETURN(q.C, arr.Put(ToBytes(p.C, p.o.bc_dtype)));
  q.u_row_stride = p.u_stride;
  q.delta_row_stride = p.delta_stride;
  q.B_row_stride = p.B_row_stride;
  q.B_group_stride = p.B_group_stride;
  q.C_row_stride = p.C_row_stride;
  q.C_group_stride = p.C_group_stride;
  ASSIGN_OR_RETURN(q.delta_bias, arr.Put(p.delta_bias));
  q.delta_softplus = p.o.softplus;
  ASSIGN_OR_RETURN(q.A, arr.Put(p.A));
  ASSIGN_OR_RETURN(q.D, arr.Put(p.Dv));
  if (!p.z.empty()) {
    ASSIGN_OR_RETURN(q.z, arr.Put(ToBytes(p.z, p.o.x_dtype)));
    q.z_row_stride = p.z_stride;
  }
  const int64_t T1 = std::max<int64_t>(p.T, 1);
  ASSIGN_OR_RETURN(void* y,
                   arr.Put(ToBytes(std::vector<float>(T1 * p.y_stride, kPoison), p.o.x_dtype)));
  q.y = y;
  q.y_row_stride = p.y_stride;
  q.mode = p.o.mode;
  ASSIGN_OR_RETURN(q.tau, arr.Put(p.tau));
  ASSIGN_OR_RETURN(q.bias_A, arr.Put(p.bias_A));
  return y;
}

// Fills SelectiveScanParams with pointers into `arr` (host or device copies of `p`).
inline absl::StatusOr<ScanOutputs> RunPrefill(const ScanProblem& p, const Stream& stream) {
  const Device dev = stream.device();
  DeviceArrays arr(dev);
  SelectiveScanParams q;
  q.num_tokens = p.T;
  q.num_seqs = p.S;
  ASSIGN_OR_RETURN(q.cu_seqlens, arr.Put(p.cu));
  ASSIGN_OR_RETURN(void* y, PutTokenInputs(p, arr, q));
  const int64_t T1 = std::max<int64_t>(p.T, 1);  // y's rows
  q.cuda_time_segments = p.o.cuda_time_segments;
  ASSIGN_OR_RETURN(auto* pool, arr.Put(ToBytes(p.pool, p.o.state_dtype)));
  q.state_pool = pool;
  q.state_dtype = p.o.state_dtype;
  q.num_state_blocks = p.num_blocks;
  q.state_block_stride = p.block_stride;
  ASSIGN_OR_RETURN(q.initial_state_block, arr.Put(p.initial_block));
  ASSIGN_OR_RETURN(q.final_state_block, arr.Put(p.final_block));
  if (p.o.block_size > 0) {
    q.block_size = p.o.block_size;
    ASSIGN_OR_RETURN(q.prefix_offset, arr.Put(p.prefix_offset));
    ASSIGN_OR_RETURN(q.boundary_state_blocks, arr.Put(p.boundary_blocks));
    q.boundary_blocks_stride = p.boundary_stride;
  }
  RETURN_IF_ERROR(RunSelectiveScan(q, stream));
  RETURN_IF_ERROR(stream.Synchronize());
  ScanOutputs out;
  ASSIGN_OR_RETURN(auto yb, arr.Get(y, T1 * p.y_stride * DTypeSize(p.o.x_dtype)));
  out.y = FromBytes(yb, p.o.x_dtype);
  ASSIGN_OR_RETURN(auto pb,
                   arr.Get(pool, p.num_blocks * p.block_stride * DTypeSize(p.o.state_dtype)));
  out.pool = FromBytes(pb, p.o.state_dtype);
  return out;
}

// Runs the decode update on a problem whose sequences all have length 1 + num_spec. The state
// comes from p.initial_block (as state_block_in); with `per_token_out` every token's state goes
// to its own fresh block (returned through out_blocks), otherwise the update is in place.
inline absl::StatusOr<ScanOutputs> RunDecode(const ScanProblem& p, int64_t num_spec,
                                             bool per_token_out, std::vector<int32_t>* out_blocks,
                                             const Stream& stream, ScanProblem* grown = nullptr) {
  const int64_t tokens = 1 + num_spec;
  for (int64_t s = 0; s < p.S; ++s) {
    MS_CHECK_ARG(p.Len(s) == tokens, "RunDecode: every sequence needs 1 + num_spec tokens");
  }
  // Output blocks are appended to the pool.
  std::vector<float> pool = p.pool;
  int64_t num_blocks = p.num_blocks;
  std::vector<int32_t> outb;
  if (per_token_out) {
    for (int64_t r = 0; r < p.T; ++r) {
      // Every fourth token's state is not kept (block 0) to test the null block.
      outb.push_back(r % 4 == 3 ? 0 : static_cast<int32_t>(num_blocks++));
    }
    pool.resize(num_blocks * p.block_stride, kPoison);
    if (p.o.state_dtype != DType::kF32) RoundTo(p.o.state_dtype, pool);
  }
  if (out_blocks) *out_blocks = outb;
  const Device dev = stream.device();
  DeviceArrays arr(dev);
  Mamba1StateUpdateParams q;
  q.batch = p.S;
  q.num_spec = num_spec;
  ASSIGN_OR_RETURN(void* y, PutTokenInputs(p, arr, q));
  const int64_t T1 = std::max<int64_t>(p.T, 1);  // y's rows
  ASSIGN_OR_RETURN(auto* dpool, arr.Put(ToBytes(pool, p.o.state_dtype)));
  q.state_pool = dpool;
  q.state_dtype = p.o.state_dtype;
  q.num_state_blocks = num_blocks;
  q.state_block_stride = p.block_stride;
  ASSIGN_OR_RETURN(q.state_block_in, arr.Put(p.initial_block));
  if (per_token_out) {
    ASSIGN_OR_RETURN(q.state_block_out, arr.Put(outb));
  }
  q.read_state_before_wait = p.o.read_state_before_wait;
  if (p.o.delta_f32) {
    ASSIGN_OR_RETURN(q.delta, arr.Put(ToBytes(p.delta, DType::kF32)));
    q.delta_dtype = DType::kF32;
  }
  RETURN_IF_ERROR(RunMamba1StateUpdate(q, stream));
  RETURN_IF_ERROR(stream.Synchronize());
  ScanOutputs out;
  ASSIGN_OR_RETURN(auto yb, arr.Get(y, T1 * p.y_stride * DTypeSize(p.o.x_dtype)));
  out.y = FromBytes(yb, p.o.x_dtype);
  ASSIGN_OR_RETURN(auto pb,
                   arr.Get(dpool, num_blocks * p.block_stride * DTypeSize(p.o.state_dtype)));
  out.pool = FromBytes(pb, p.o.state_dtype);
  return out;
}

// float64 oracle of a whole problem: y for every token, the state after every token, per
// sequence and channel.
struct Oracle {
  std::vector<double> y;  // [T * D]
  // h_all[t] is the (D * N) state after token t.
  std::vector<double> h_all;  // [T * D * N]
  std::vector<double> h0;     // [S * D * N] initial states
};

inline Oracle RunOracle(const ScanProblem& p) {
  Oracle r;
  const int64_t D = p.D, N = p.N, dpg = D / p.G;
  r.y.assign(p.T * D, 0.0);
  r.h_all.assign(p.T * D * N, 0.0);
  r.h0.assign(p.S * D * N, 0.0);
  for (int64_t s = 0; s < p.S; ++s) {
    const int64_t t0 = p.cu[s], L = p.Len(s);
    for (int64_t d = 0; d < D; ++d) {
      const int64_t g = d / dpg;
      std::vector<double> x(L), dt(L), dtd, A(N), B(L * N), C(L * N), h0(N, 0.0);
      for (int64_t t = 0; t < L; ++t) {
        const int64_t row = t0 + t;
        x[t] = p.u[row * p.u_stride + d];
        double v = p.delta[row * p.delta_stride + d];
        if (!p.delta_bias.empty()) v += p.delta_bias[d];
        dt[t] = p.o.softplus ? Softplus(v) : v;
        for (int64_t n = 0; n < N; ++n) {
          B[t * N + n] = p.B[row * p.B_row_stride + g * p.B_group_stride + n];
          C[t * N + n] = p.C[row * p.C_row_stride + g * p.C_group_stride + n];
        }
      }
      if (p.o.mode == Discretization::kEventDriven) {
        dtd.resize(L);
        const double sp = Softplus(static_cast<double>(p.bias_A[d]));
        for (int64_t t = 0; t < L; ++t) dtd[t] = static_cast<double>(p.tau[t0 + t]) * sp;
      }
      for (int64_t n = 0; n < N; ++n) A[n] = p.A[d * N + n];
      if (p.initial_block[s] != 0) {
        for (int64_t n = 0; n < N; ++n) {
          h0[n] = p.pool[p.initial_block[s] * p.block_stride + d * N + n];
        }
      }
      for (int64_t n = 0; n < N; ++n) r.h0[(s * D + d) * N + n] = h0[n];
      ReferenceChannelScan in;
      in.mode = p.o.mode;
      in.x = x;
      in.dt = dt;
      in.dt_decay = dtd;
      in.A = A;
      in.B = B;
      in.C = C;
      in.D = p.Dv.empty() ? 0.0 : p.Dv[d];
      in.h0 = h0;
      const ReferenceScanResult res = RunReferenceChannelScan(in);
      for (int64_t t = 0; t < L; ++t) {
        double y = res.y[t];
        if (!p.z.empty()) y *= Silu(static_cast<double>(p.z[(t0 + t) * p.z_stride + d]));
        r.y[(t0 + t) * D + d] = y;
        for (int64_t n = 0; n < N; ++n) {
          r.h_all[((t0 + t) * D + d) * N + n] = res.h_all[t * N + n];
        }
      }
    }
  }
  return r;
}

// Gathers y[t, :] for tokens [t0, t1) into doubles (from a kernel's output rows).
inline std::vector<double> GatherY(const ScanProblem& p, const std::vector<float>& y, int64_t t0,
                                   int64_t t1) {
  std::vector<double> out;
  for (int64_t t = t0; t < t1; ++t)
    for (int64_t d = 0; d < p.D; ++d) out.push_back(y[t * p.y_stride + d]);
  return out;
}
inline std::vector<double> GatherBlock(const ScanProblem& p, const std::vector<float>& pool,
                                       int64_t block) {
  std::vector<double> out(p.D * p.N);
  for (int64_t i = 0; i < p.D * p.N; ++i) out[i] = pool[block * p.block_stride + i];
  return out;
}
inline std::vector<double> OracleState(const ScanProblem& p, const Oracle& o, int64_t token) {
  return std::vector<double>(o.h_all.begin() + token * p.D * p.N,
                             o.h_all.begin() + (token + 1) * p.D * p.N);
}
inline std::vector<double> OracleY(const ScanProblem& p, const Oracle& o, int64_t t0, int64_t t1) {
  return std::vector<double>(o.y.begin() + t0 * p.D, o.y.begin() + t1 * p.D);
}

// Every block a prefill must leave untouched: all except final and boundary destinations.
inline std::vector<int32_t> UntouchedBlocks(const ScanProblem& p) {
  std::vector<bool> written(p.num_blocks, false);
  for (int64_t s = 0; s < p.S; ++s) {
    written[p.final_block[s]] = true;
    for (int64_t j = 0; j < p.Boundaries(s); ++j)
      written[p.boundary_blocks[s * p.boundary_stride + j]] = true;
  }
  std::vector<int32_t> out;
  for (int64_t b = 0; b < p.num_blocks; ++b)
    if (b == 0 || !written[b]) out.push_back(static_cast<int32_t>(b));
  return out;
}

// Tolerances (relative norm error against float64): fp32 arithmetic over a few hundred steps
// stays near 1e-6, so 2e-5 leaves room without hiding real bugs; a 16-bit output or state is
// rounded once at the end (relative 2^-9 for bf16, 2^-12 for f16), so 1e-2 covers it.
inline double TolFor(DType t) { return t == DType::kF32 ? 2e-5 : 1e-2; }

// Checks y of every token, every final state, every boundary state and that every other block
// kept its poison.
inline void ExpectPrefillMatchesOracle(const ScanProblem& p, const ScanOutputs& out,
                                       const Oracle& o, const char* what) {
  const double tol_y = TolFor(p.o.x_dtype), tol_h = TolFor(p.o.state_dtype);
  for (int64_t s = 0; s < p.S; ++s) {
    if (p.Len(s) == 0) continue;
    const double e =
        RelErr(GatherY(p, out.y, p.cu[s], p.cu[s + 1]), OracleY(p, o, p.cu[s], p.cu[s + 1]));
    EXPECT_LT(e, tol_y) << what << ": y of sequence " << s << " (len " << p.Len(s) << ")";
    if (p.final_block[s] != 0) {
      const std::vector<double> want =
          p.Len(s) > 0 ? OracleState(p, o, p.cu[s + 1] - 1)
                       : std::vector<double>(o.h0.begin() + s * p.D * p.N,
                                             o.h0.begin() + (s + 1) * p.D * p.N);
      const double eh = RelErr(GatherBlock(p, out.pool, p.final_block[s]), want);
      EXPECT_LT(eh, tol_h) << what << ": final state of sequence " << s;
    }
    for (int64_t j = 0; j < p.Boundaries(s); ++j) {
      const int32_t blk = p.boundary_blocks[s * p.boundary_stride + j];
      if (blk == 0) continue;
      const int64_t k = (p.prefix_offset[s] / p.o.block_size + j + 1) * p.o.block_size;
      const int64_t local = k - p.prefix_offset[s] - 1;
      const double eb = RelErr(GatherBlock(p, out.pool, blk), OracleState(p, o, p.cu[s] + local));
      EXPECT_LT(eb, tol_h) << what << ": boundary state " << j << " of sequence " << s;
    }
  }
  for (int32_t b : UntouchedBlocks(p)) {
    for (int64_t i = 0; i < p.block_stride; ++i) {
      if (out.pool[b * p.block_stride + i] != p.pool[b * p.block_stride + i]) {
        ADD_FAILURE() << what << ": block " << b << " was modified at " << i;
        break;
      }
    }
  }
}

// A problem made of the given rows of `p` (in order), cut into sequences of `lengths`, with the
// same parameters and pool; blocks default to none (callers set them).
inline ScanProblem SelectRows(const ScanProblem& p, const std::vector<int64_t>& rows,
                              const std::vector<int32_t>& lengths) {
  ScanProblem q = p;
  q.o.lengths = lengths;
  q.o.block_size = 0;
  q.S = static_cast<int64_t>(lengths.size());
  q.cu.assign(q.S + 1, 0);
  for (int64_t s = 0; s < q.S; ++s) q.cu[s + 1] = q.cu[s] + lengths[s];
  q.T = q.cu[q.S];
  const int64_t R = std::max<int64_t>(q.T, 1);
  auto take = [&](const std::vector<float>& v, int64_t stride) {
    std::vector<float> out;
    if (v.empty()) return out;
    out.assign(R * stride, 0.0f);
    for (size_t i = 0; i < rows.size(); ++i)
      std::copy(v.begin() + rows[i] * stride, v.begin() + (rows[i] + 1) * stride,
                out.begin() + static_cast<int64_t>(i) * stride);
    return out;
  };
  q.u = take(p.u, p.u_stride);
  q.delta = take(p.delta, p.delta_stride);
  q.B = take(p.B, p.B_row_stride);
  q.C = take(p.C, p.C_row_stride);
  q.z = take(p.z, p.z_stride);
  q.tau = take(p.tau, 1);
  q.initial_block.assign(q.S, 0);
  q.final_block.assign(q.S, 0);
  q.boundary_blocks.clear();
  q.prefix_offset.clear();
  q.boundary_stride = 0;
  return q;
}

// Relative norm error of y rows [t0, t1) of two outputs of (possibly different) problems.
inline double RelErrRows(const ScanProblem& pa, const std::vector<float>& ya, int64_t a0,
                         const ScanProblem& pb, const std::vector<float>& yb, int64_t b0,
                         int64_t rows) {
  return RelErr(GatherY(pa, ya, a0, a0 + rows), GatherY(pb, yb, b0, b0 + rows));
}

// Prefill of n_s tokens per sequence, then m single-token decodes, against one prefill of
// n_s + m tokens: y of every decoded token and the final states. Returns the worst errors.
struct ParityErrors {
  double y = 0, state = 0;
};
inline absl::StatusOr<ParityErrors> PrefillThenDecodeParity(ScanProblemOptions o,
                                                            const std::vector<int32_t>& n,
                                                            int64_t m, const Stream& stream) {
  o.lengths.clear();
  for (int32_t v : n) o.lengths.push_back(v + static_cast<int32_t>(m));
  o.initial_state.clear();
  o.final_state.clear();
  o.final_in_place = false;
  o.block_size = 0;
  const ScanProblem full = MakeScanProblem(o);
  ASSIGN_OR_RETURN(ScanOutputs full_out, RunPrefill(full, stream));
  ParityErrors err;
  // Prefill of the first n_s tokens, from the same initial states, into the final blocks.
  std::vector<int64_t> rows;
  for (int64_t s = 0; s < full.S; ++s)
    for (int64_t t = 0; t < n[s]; ++t) rows.push_back(full.cu[s] + t);
  ScanProblem pre = SelectRows(full, rows, n);
  pre.initial_block = full.initial_block;
  pre.final_block = full.final_block;
  ASSIGN_OR_RETURN(ScanOutputs pre_out, RunPrefill(pre, stream));
  for (int64_t s = 0; s < full.S; ++s) {
    err.y =
        std::max(err.y, RelErrRows(pre, pre_out.y, pre.cu[s], full, full_out.y, full.cu[s], n[s]));
  }
  std::vector<float> pool = pre_out.pool;
  for (int64_t j = 0; j < m; ++j) {
    std::vector<int64_t> drows;
    for (int64_t s = 0; s < full.S; ++s) drows.push_back(full.cu[s] + n[s] + j);
    ScanProblem dec = SelectRows(full, drows, std::vector<int32_t>(full.S, 1));
    dec.pool = pool;
    dec.initial_block = full.final_block;  // in place
    dec.final_block = full.final_block;
    ASSIGN_OR_RETURN(ScanOutputs dec_out, RunDecode(dec, 0, false, nullptr, stream));
    for (int64_t s = 0; s < full.S; ++s) {
      err.y = std::max(err.y,
                       RelErrRows(dec, dec_out.y, s, full, full_out.y, full.cu[s] + n[s] + j, 1));
    }
    pool = dec_out.pool;
  }
  for (int64_t s = 0; s < full.S; ++s) {
    err.state = std::max(err.state, RelErr(GatherBlock(full, pool, full.final_block[s]),
                                           GatherBlock(full, full_out.pool, full.final_block[s])));
  }
  return err;
}

// A speculative decode of 1 + num_spec tokens per sequence against that many single-token
// decodes in sequence: y of every token and every token's state.
inline absl::StatusOr<ParityErrors> SpeculativeParity(ScanProblemOptions o, int64_t batch,
                                                      int64_t num_spec, const Stream& stream) {
  o.lengths.assign(batch, static_cast<int32_t>(1 + num_spec));
  o.initial_state.assign(batch, true);
  o.initial_state[batch - 1] = false;  // one sequence starts from the null block
  o.final_state.assign(batch, false);
  o.block_size = 0;
  const ScanProblem p = MakeScanProblem(o);
  std::vector<int32_t> out_blocks;
  ASSIGN_OR_RETURN(ScanOutputs spec, RunDecode(p, num_spec, true, &out_blocks, stream));
  ParityErrors err;
  // Sequential: one decode per step into scratch blocks (in place, starting from copies of the
  // initial states in fresh blocks so the null-block sequence also has somewhere to go).
  std::vector<float> pool = p.pool;
  const int64_t base = p.num_blocks;
  pool.resize((base + batch) * p.block_stride, 0.0f);
  std::vector<int32_t> work(batch);
  for (int64_t b = 0; b < batch; ++b) {
    work[b] = static_cast<int32_t>(base + b);
    for (int64_t i = 0; i < p.D * p.N; ++i) {
      pool[work[b] * p.block_stride + i] =
          p.initial_block[b] ? p.pool[p.initial_block[b] * p.block_stride + i] : 0.0f;
    }
  }
  for (int64_t t = 0; t <= num_spec; ++t) {
    std::vector<int64_t> rows;
    for (int64_t b = 0; b < batch; ++b) rows.push_back(b * (1 + num_spec) + t);
    ScanProblem dec = SelectRows(p, rows, std::vector<int32_t>(batch, 1));
    dec.pool = pool;
    dec.num_blocks = base + batch;
    dec.initial_block = work;
    ASSIGN_OR_RETURN(ScanOutputs out, RunDecode(dec, 0, false, nullptr, stream));
    pool = out.pool;
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t r = b * (1 + num_spec) + t;
      err.y = std::max(err.y, RelErrRows(dec, out.y, b, p, spec.y, r, 1));
      if (out_blocks[r] != 0) {
        err.state = std::max(err.state, RelErr(GatherBlock(p, spec.pool, out_blocks[r]),
                                               GatherBlock(p, pool, work[b])));
      }
    }
  }
  // Blocks not in the output list (including the inputs) are untouched.
  for (int64_t b = 0; b < p.num_blocks; ++b) {
    for (int64_t i = 0; i < p.block_stride; ++i) {
      if (spec.pool[b * p.block_stride + i] != p.pool[b * p.block_stride + i]) {
        return absl::InternalError(absl::StrCat("speculative decode modified block ", b));
      }
    }
  }
  return err;
}

}  // namespace mambaserve::scan_test

#endif  // MAMBASERVE_KERNELS_SELECTIVE_SCAN_TEST_UTIL_H_
