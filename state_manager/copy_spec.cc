#include "state_manager/copy_spec.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

#if MAMBASERVE_HAS_CUDA
#include "state_manager/copy_spec_cuda.h"
#endif

namespace mambaserve {
namespace {

absl::Status CheckBlockId(const StatePool& pool, BlockId id, const char* what) {
  if (id == kNullBlock) {
    return absl::InvalidArgumentError(absl::StrCat(what, " block is the null block 0"));
  }
  if (id < 0 || id >= pool.num_blocks()) {
    return absl::OutOfRangeError(
        absl::StrCat(what, " block ", id, " out of range [1, ", pool.num_blocks(), ")"));
  }
  return absl::OkStatus();
}

uint64_t Addr(const void* p) { return reinterpret_cast<uint64_t>(p); }

struct Range {
  uint64_t lo, hi;  // [lo, hi)
};

Range SrcRange(const CopySpec& s) {
  const uint64_t n = static_cast<uint64_t>((s.num_rows - 1) * s.src_row_stride + s.row_elems) *
                     static_cast<uint64_t>(s.elem_bytes);
  return {s.src, s.src + n};
}
Range DstRange(const CopySpec& s) {
  const uint64_t n = static_cast<uint64_t>((s.num_rows - 1) * s.dst_row_stride + s.row_elems) *
                     static_cast<uint64_t>(s.elem_bytes);
  return {s.dst, s.dst + n};
}

bool IsNoOp(const CopySpec& s) {
  return s.src == s.dst && (s.num_rows == 1 || s.src_row_stride == s.dst_row_stride);
}

}  // namespace

bool IsConvStateTensor(const StateTensorShape& shape) { return shape.name.rfind("conv", 0) == 0; }

absl::StatusOr<CopySpec> ConvCopySpec(const StatePool& pool, int64_t layer, int64_t tensor,
                                      std::span<const BlockId> block_ids, int64_t cur,
                                      int64_t num_accepted, BlockId dst) {
  MS_CHECK_ARG(tensor >= 0 && tensor < pool.num_tensors(), "state tensor ", tensor,
               " out of range");
  const StateTensorShape& shape = pool.shapes()[tensor];
  MS_CHECK_ARG(IsConvStateTensor(shape) && shape.dims.size() == 2, "tensor '", shape.name,
               "' is not a 2-D conv state");
  const int64_t n = static_cast<int64_t>(block_ids.size());
  MS_CHECK_ARG(cur >= 0 && cur < n, "current block index ", cur, " out of range [0, ", n, ")");
  const bool sd = pool.conv_layout() == ConvLayout::kSD;
  const int64_t state_len = sd ? shape.dims[0] : shape.dims[1];
  const int64_t dim = sd ? shape.dims[1] : shape.dims[0];
  MS_CHECK_ARG(num_accepted >= 1 && num_accepted <= state_len, "accepted token count ",
               num_accepted, " out of range [1, ", state_len, "] for conv state '", shape.name,
               "'");
  const BlockId src = block_ids[cur];
  RETURN_IF_ERROR(CheckBlockId(pool, src, "conv copy source"));
  RETURN_IF_ERROR(CheckBlockId(pool, dst, "conv copy destination"));
  ASSIGN_OR_RETURN(void* src_base, pool.BlockAddress(layer, tensor, src));
  ASSIGN_OR_RETURN(void* dst_base, pool.BlockAddress(layer, tensor, dst));
  const int64_t es = DTypeSize(shape.dtype);
  const int64_t shift = num_accepted - 1;
  CopySpec s;
  s.elem_bytes = static_cast<int32_t>(es);
  s.dst = Addr(dst_base);
  if (sd || shift == 0) {
    // SD: rows [shift, state_len) of (state_len, dim) are one run; DS with k = 1: whole block.
    s.src = Addr(src_base) + static_cast<uint64_t>(shift * dim * es);
    s.num_rows = 1;
    s.row_elems = (state_len - shift) * dim;
    s.src_row_stride = s.dst_row_stride = s.row_elems;
  } else {
    // DS (dim, state_len): each of the dim rows moves [shift, state_len) to its start.
    s.src = Addr(src_base) + static_cast<uint64_t>(shift * es);
    s.num_rows = dim;
    s.row_elems = state_len - shift;
    s.src_row_stride = s.dst_row_stride = state_len;
  }
  return s;
}

absl::StatusOr<CopySpec> TemporalCopySpec(const StatePool& pool, int64_t layer, int64_t tensor,
                                          std::span<const BlockId> block_ids, int64_t cur,
                                          int64_t num_accepted, BlockId dst) {
  MS_CHECK_ARG(tensor >= 0 && tensor < pool.num_tensors(), "state tensor ", tensor,
               " out of range");
  const StateTensorShape& shape = pool.shapes()[tensor];
  const int64_t n = static_cast<int64_t>(block_ids.size());
  MS_CHECK_ARG(num_accepted >= 1, "accepted token count ", num_accepted, " must be >= 1");
  MS_CHECK_ARG(cur >= 0 && cur + num_accepted - 1 < n,
               "block index cur + k - 1 = ", cur + num_accepted - 1, " out of range [0, ", n, ")");
  const BlockId src = block_ids[cur + num_accepted - 1];
  RETURN_IF_ERROR(CheckBlockId(pool, src, "state copy source"));
  RETURN_IF_ERROR(CheckBlockId(pool, dst, "state copy destination"));
  ASSIGN_OR_RETURN(void* src_base, pool.BlockAddress(layer, tensor, src));
  ASSIGN_OR_RETURN(void* dst_base, pool.BlockAddress(layer, tensor, dst));
  CopySpec s;
  s.src = Addr(src_base);
  s.dst = Addr(dst_base);
  s.num_rows = 1;
  s.row_elems = shape.numel();
  s.src_row_stride = s.dst_row_stride = s.row_elems;
  s.elem_bytes = static_cast<int32_t>(DTypeSize(shape.dtype));
  return s;
}

absl::StatusOr<std::vector<CopySpec>> BuildStepCopySpecs(const StatePool& pool,
                                                         std::span<const BlockCopy> copies) {
  std::vector<CopySpec> specs;
  specs.reserve(copies.size() * pool.num_layers() * pool.num_tensors());
  for (const BlockCopy& c : copies) {
    for (int64_t l = 0; l < pool.num_layers(); ++l) {
      for (int64_t t = 0; t < pool.num_tensors(); ++t) {
        if (IsConvStateTensor(pool.shapes()[t])) {
          ASSIGN_OR_RETURN(CopySpec s,
                           ConvCopySpec(pool, l, t, c.block_ids, c.cur, c.num_accepted, c.dst));
          specs.push_back(s);
        } else {
          ASSIGN_OR_RETURN(CopySpec s,
                           TemporalCopySpec(pool, l, t, c.block_ids, c.cur, c.num_accepted, c.dst));
          specs.push_back(s);
        }
      }
    }
  }
  return ValidateCopyBatch(specs);
}

absl::StatusOr<std::vector<CopySpec>> ValidateCopyBatch(std::span<const CopySpec> specs) {
  std::vector<CopySpec> out;
  out.reserve(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    const CopySpec& s = specs[i];
    MS_CHECK_ARG(s.num_rows >= 1 && s.row_elems >= 1, "copy spec ", i, ": empty copy (rows ",
                 s.num_rows, ", run ", s.row_elems, ")");
    MS_CHECK_ARG(s.elem_bytes == 1 || s.elem_bytes == 2 || s.elem_bytes == 4 || s.elem_bytes == 8,
                 "copy spec ", i, ": element size ", s.elem_bytes);
    MS_CHECK_ARG(s.src != 0 && s.dst != 0, "copy spec ", i, ": null address");
    if (s.num_rows > 1) {
      MS_CHECK_ARG(s.dst_row_stride >= s.row_elems && s.src_row_stride >= 0, "copy spec ", i,
                   ": destination rows overlap (stride ", s.dst_row_stride, " < run ", s.row_elems,
                   ")");
    }
    if (IsNoOp(s)) continue;
    out.push_back(s);
  }
  // Destination ranges must be pairwise disjoint and disjoint from every source range.
  std::vector<std::pair<Range, size_t>> dsts;
  dsts.reserve(out.size());
  for (size_t i = 0; i < out.size(); ++i) dsts.push_back({DstRange(out[i]), i});
  std::sort(dsts.begin(), dsts.end(),
            [](const auto& a, const auto& b) { return a.first.lo < b.first.lo; });
  for (size_t i = 1; i < dsts.size(); ++i) {
    if (dsts[i].first.lo < dsts[i - 1].first.hi) {
      return absl::InvalidArgumentError(absl::StrCat("copy batch: destinations of specs ",
                                                     dsts[i - 1].second, " and ", dsts[i].second,
                                                     " overlap"));
    }
  }
  for (size_t j = 0; j < out.size(); ++j) {
    const Range r = SrcRange(out[j]);
    // First destination ending after r.lo (destinations are disjoint and sorted, so their
    // ends are sorted too).
    auto it = std::upper_bound(dsts.begin(), dsts.end(), r.lo,
                               [](uint64_t v, const auto& d) { return v < d.first.hi; });
    if (it != dsts.end() && it->first.lo < r.hi) {
      return absl::InvalidArgumentError(
          absl::StrCat("copy batch: source of spec ", j, " overlaps the destination of spec ",
                       it->second, " (a block may not be both copied from and into in one step)"));
    }
  }
  return out;
}

absl::Status ExecuteCopySpecsCpu(std::span<const CopySpec> specs) {
  for (const CopySpec& s : specs) {
    const int64_t es = s.elem_bytes;
    const char* src = reinterpret_cast<const char*>(s.src);
    char* dst = reinterpret_cast<char*>(s.dst);
    for (int64_t r = 0; r < s.num_rows; ++r) {
      std::memcpy(dst + r * s.dst_row_stride * es, src + r * s.src_row_stride * es,
                  static_cast<size_t>(s.row_elems * es));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<CopyExecutor> CopyExecutor::Create(Device device) {
#if !MAMBASERVE_HAS_CUDA
  if (device.is_cuda()) {
    return absl::FailedPreconditionError("CopyExecutor: this build has no CUDA backend");
  }
#endif
  CopyExecutor e;
  e.device_ = device;
  return e;
}

absl::Status CopyExecutor::Run(std::span<const CopySpec> specs, const Stream& stream) {
  ASSIGN_OR_RETURN(std::vector<CopySpec> valid, ValidateCopyBatch(specs));
  if (device_.is_cpu()) return ExecuteCopySpecsCpu(valid);
#if MAMBASERVE_HAS_CUDA
  MS_CHECK_ARG(stream.is_cuda() && stream.device() == device_, "CopyExecutor on ",
               device_.ToString(), " needs a CUDA stream of that device, got ",
               stream.device().ToString());
  if (valid.empty()) return absl::OkStatus();
  using copy_internal::CopyDescriptor;
  std::vector<CopyDescriptor> descs;
  descs.reserve(valid.size());
  int64_t tiles = 0;
  for (const CopySpec& s : valid) {
    CopyDescriptor d;
    d.src = s.src;
    d.dst = s.dst;
    d.num_rows = s.num_rows;
    d.src_row_stride = s.src_row_stride * s.elem_bytes;
    d.dst_row_stride = s.dst_row_stride * s.elem_bytes;
    d.row_bytes = s.row_elems * s.elem_bytes;
    if (d.num_rows == 1) d.src_row_stride = d.dst_row_stride = d.row_bytes;
    d.vec_bytes = 16;
    while (d.vec_bytes > 1 &&
           ((d.src | d.dst | static_cast<uint64_t>(d.row_bytes) |
             static_cast<uint64_t>(d.src_row_stride) | static_cast<uint64_t>(d.dst_row_stride)) &
            static_cast<uint64_t>(d.vec_bytes - 1)) != 0) {
      d.vec_bytes /= 2;
    }
    d.tile_begin = tiles;
    const int64_t vecs = d.num_rows * (d.row_bytes / d.vec_bytes);
    tiles += (vecs + copy_internal::kVectorsPerTile - 1) / copy_internal::kVectorsPerTile;
    descs.push_back(d);
  }
  const int64_t bytes = static_cast<int64_t>(descs.size() * sizeof(CopyDescriptor));
  if (descriptors_.nbytes() < bytes) {
    ASSIGN_OR_RETURN(descriptors_, Buffer::Allocate(device_, std::max<int64_t>(bytes, 4096)));
  }
  // The host copy lives in the executor until the next Run, so the asynchronous upload never
  // reads freed memory; stream order keeps the next step's upload after this launch.
  host_descriptors_.resize(static_cast<size_t>(bytes));
  std::memcpy(host_descriptors_.data(), descs.data(), static_cast<size_t>(bytes));
  RETURN_IF_ERROR(CopyBytes(descriptors_.data(), device_, host_descriptors_.data(), Device::Cpu(),
                            bytes, &stream));
  RETURN_IF_ERROR(copy_internal::LaunchBatchedCopy(
      static_cast<const CopyDescriptor*>(descriptors_.data()), static_cast<int64_t>(descs.size()),
      tiles, device_.index, stream.handle()));
  ++num_launches_;
  return absl::OkStatus();
#else
  (void)stream;
  return absl::FailedPreconditionError("CopyExecutor: this build has no CUDA backend");
#endif
}

}  // namespace mambaserve
